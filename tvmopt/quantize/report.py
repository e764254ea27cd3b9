"""The accuracy report: how far the reduced-precision model is from the fp32 model, and how big.

Both models run in ONNX Runtime (the well-kept reference for the same file any deployment gets)
on the same inputs. Per float output: max and mean absolute difference, cosine similarity per
sample (mean and worst), and for classifier-shaped outputs ([batch, classes]) the share of
samples whose top-1 class agrees. Sizes are the model files on disk (external data included).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .._files import write_atomic
from ..errors import QuantizeError
from .data import Samples

FORMAT = 1


@dataclass(frozen=True)
class OutputAccuracy:
    """One output's distance from fp32 over all samples."""

    name: str
    max_abs_diff: float
    mean_abs_diff: float
    cosine_mean: float
    cosine_min: float
    top1_agreement: float | None = None  # classifier-shaped outputs only (share of samples, 0..1)

    @staticmethod
    def from_json(obj: dict) -> "OutputAccuracy":
        return OutputAccuracy(**{k: obj.get(k) for k in OutputAccuracy.__dataclass_fields__})


@dataclass(frozen=True)
class AccuracyReport:
    """What `quantize` prints and saves next to its output (`<output>.accuracy.json`)."""

    mode: str
    model: str  # the fp32 model
    quantized: str  # the reduced-precision model
    samples: int
    inputs: str  # where the evaluation inputs came from
    outputs: tuple[OutputAccuracy, ...]
    size_before: int  # bytes
    size_after: int
    scheme: dict  # how it was quantized (QuantScheme.to_json())
    evaluated_with: str = "onnxruntime (CPU)"

    @property
    def top1_agreement(self) -> float | None:
        """The worst top-1 agreement over classifier-shaped outputs, or None if there are none."""
        values = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        return min(values) if values else None

    @property
    def cosine_min(self) -> float:
        return min(o.cosine_min for o in self.outputs)

    @property
    def cosine_mean(self) -> float:
        return min(o.cosine_mean for o in self.outputs)

    @property
    def size_ratio(self) -> float:
        return self.size_after / self.size_before if self.size_before else float("nan")

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self), "outputs": [asdict(o) for o in self.outputs]}

    @staticmethod
    def from_json(obj: dict) -> "AccuracyReport":
        if obj.get("format") != FORMAT:
            raise QuantizeError(f"accuracy report of format {obj.get('format')!r}; this tvmopt reads format {FORMAT}")
        fields = {k: obj[k] for k in AccuracyReport.__dataclass_fields__ if k in obj}
        fields["outputs"] = tuple(OutputAccuracy.from_json(o) for o in obj["outputs"])
        return AccuracyReport(**fields)

    def save(self, path: str | os.PathLike) -> Path:
        write_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")
        return Path(path)

    @staticmethod
    def load(path: str | os.PathLike) -> "AccuracyReport":
        return AccuracyReport.from_json(json.loads(Path(path).read_text()))

    def format(self) -> str:
        lines = [f"accuracy of {self.quantized} ({self.mode}) against fp32 {self.model}",
                 f"  {self.samples} samples: {self.inputs}; both run in {self.evaluated_with}"]
        for o in self.outputs:
            top1 = f", top-1 agreement {o.top1_agreement:.1%}" if o.top1_agreement is not None else ""
            lines.append(f"  output {o.name}: max |diff| {o.max_abs_diff:.3g}, mean |diff| {o.mean_abs_diff:.3g}, "
                         f"cosine {o.cosine_mean:.5f} (worst {o.cosine_min:.5f}){top1}")
        lines.append(f"  size: {_mb(self.size_before)} -> {_mb(self.size_after)} "
                     f"({self.size_before / max(self.size_after, 1):.2f}x smaller)")
        return "\n".join(lines)


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def model_size(path: str | os.PathLike) -> int:
    """Bytes of an ONNX model file plus its external data files."""
    import onnx

    path = Path(path)
    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    seen = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and entry.value not in seen:
                seen.add(entry.value)
                data = path.parent / entry.value
                if data.is_file():
                    total += data.stat().st_size
    return total


def compare_outputs(names: Sequence[str], reference: list[list[np.ndarray]],
                    candidate: list[list[np.ndarray]]) -> tuple[OutputAccuracy, ...]:
    """Metrics per output over samples: reference[i][j] is sample i's output j."""
    results = []
    for j, name in enumerate(names):
        ref = [np.asarray(r[j]) for r in reference]
        got = [np.asarray(c[j]) for c in candidate]
        if ref[0].dtype.kind != "f":
            continue  # integer outputs (ids, masks) are not compared
        diffs = [np.abs(a.astype(np.float64) - b.astype(np.float64)) for a, b in zip(got, ref)]
        cosines = [_cosine(a, b) for a, b in zip(got, ref)]
        top1 = None
        if ref[0].ndim == 2 and ref[0].shape[-1] > 1:  # [batch, classes]
            agree = [np.mean(np.argmax(a, -1) == np.argmax(b, -1)) for a, b in zip(got, ref)]
            top1 = float(np.mean(agree))
        results.append(OutputAccuracy(
            name=name,
            max_abs_diff=float(max(d.max(initial=0.0) for d in diffs)),
            mean_abs_diff=float(np.mean([d.mean() for d in diffs])),
            cosine_mean=float(np.mean(cosines)),
            cosine_min=float(np.min(cosines)),
            top1_agreement=top1,
        ))
    return tuple(results)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.dot(a, b) / denom)


def evaluate(fp32_path: str | os.PathLike, quantized_path: str | os.PathLike, samples: Samples, mode: str,
             scheme: dict, threads: int | None = None) -> AccuracyReport:
    """Run both models in ONNX Runtime on `samples` and compare their float outputs."""
    from ..measure.baselines import OrtSession

    reference_session, candidate_session = OrtSession(fp32_path, threads), OrtSession(quantized_path, threads)
    names = [o.name for o in reference_session.session.get_outputs()]
    reference = [reference_session(feed) for feed in samples.feeds]
    candidate = [candidate_session(feed) for feed in samples.feeds]
    return AccuracyReport(
        mode=mode,
        model=str(fp32_path),
        quantized=str(quantized_path),
        samples=len(samples),
        inputs=samples.origin,
        outputs=compare_outputs(names, reference, candidate),
        size_before=model_size(fp32_path),
        size_after=model_size(quantized_path),
        scheme=scheme,
    )

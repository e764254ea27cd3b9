"""The quantize stage: a smaller, faster model (int8, fp16, bf16) plus how much accuracy it costs.

    result = tvmopt.quantize("model.onnx", "model_int8.onnx", mode="int8-dynamic", target="host")
    print(result.report.format())        # also saved as model_int8.accuracy.json

The graph rewrite is ONNX Runtime's quantizer (onnx_int8.py) or precision converter
(precision.py), with a scheme chosen for the target's int8/fp16/bf16 capabilities (scheme.py);
the result is an ordinary ONNX file for tune / compile / run / bench (which also time ONNX Runtime
on the same file). The report (report.py) compares it with the fp32 model on seeded random or
given inputs (data.py).
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import AccuracyError, QuantizeError
from ..targets import TargetSpec, get_target
from .data import Samples, load_samples, onnx_input_specs, random_samples
from .report import AccuracyReport, evaluate
from .scheme import MODES, QuantScheme, choose_scheme
from .source import fp32_onnx

__all__ = ["quantize", "QuantizeResult", "AccuracyReport", "QuantScheme", "MODES", "report_path_for"]


@dataclass(frozen=True)
class QuantizeResult:
    """What `quantize` wrote: the model, its fp32 origin, the scheme, the accuracy report."""

    path: Path
    fp32_path: Path
    scheme: QuantScheme
    report: AccuracyReport
    report_path: Path
    warnings: tuple[str, ...] = ()


def report_path_for(output: str | os.PathLike) -> Path:
    """Where the accuracy report of a quantized model lives: `<name>.accuracy.json` beside it."""
    output = Path(output)
    return output.with_name(output.stem + ".accuracy.json")


def quantize(
    model: Any,
    output: str | os.PathLike,
    *,
    mode: str = "int8-dynamic",
    target: str | TargetSpec = "host",
    calibration: str | os.PathLike | None = None,
    evaluation: str | os.PathLike | None = None,
    samples: int = 64,
    calibration_samples: int = 32,
    min_agreement: float | None = None,
    min_cosine: float | None = None,
    per_channel: bool | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    example_inputs: Sequence[Any] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    seed: int = 0,
) -> QuantizeResult:
    """Quantize an ONNX file or a torch.nn.Module (exported first) into the ONNX file `output`.

    `calibration` / `evaluation`: .npz samples (int8-static calibrates on them; the report runs on
    the evaluation samples), else `calibration_samples` / `samples` seeded random inputs.
    `min_agreement` (top-1, 0..1) and `min_cosine` raise AccuracyError when the report is below.
    """
    output = Path(output)
    if output.suffix != ".onnx":
        raise QuantizeError(f"{output}: the quantized model is an ONNX file; name it *.onnx")
    for name, value in (("min_agreement", min_agreement), ("min_cosine", min_cosine)):
        if value is not None and not 0 < value <= 1:
            raise QuantizeError(f"{name} must be in (0, 1], got {value}")
    if samples < 1 or calibration_samples < 1:
        raise QuantizeError("samples and calibration_samples must be at least 1")
    spec = get_target(target)
    scheme, warnings = choose_scheme(mode, spec, per_channel)
    output.parent.mkdir(parents=True, exist_ok=True)
    src = fp32_onnx(model, output, example_inputs, input_names, output_names)
    if src.resolve() == output.resolve():
        raise QuantizeError(f"{output}: the output would overwrite the fp32 model; choose another name")
    specs = onnx_input_specs(src, dict(input_shapes or {}))
    eval_samples = _samples(evaluation, src, specs, samples, seed)

    tmp = output.with_name(f".{output.name}.tmp")
    try:
        if mode == "int8-dynamic":
            from .onnx_int8 import quantize_dynamic

            quantize_dynamic(src, tmp, scheme)
        elif mode == "int8-static":
            from .onnx_int8 import quantize_static

            quantize_static(src, tmp, scheme, _samples(calibration, src, specs, calibration_samples, seed + 1))
        elif mode == "fp16":
            from .precision import to_fp16

            to_fp16(src, tmp)
        else:
            from .precision import to_bf16_weights

            to_bf16_weights(src, tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    if calibration is not None and mode != "int8-static":
        warnings.append(f"--calibration is used by int8-static only; mode {mode} ignores {calibration}")

    if mode.startswith("int8") and not scheme.reduce_range and _host_saturates():
        warnings.append("the report runs ONNX Runtime on this CPU, whose u8 x s8 int8 kernels (vpmaddubsw) "
                        f"saturate with the 8-bit weights chosen for {spec.name}: it is pessimistic for that target")
    report = evaluate(src, output, eval_samples, mode, scheme.to_json())
    report_path = report.save(report_path_for(output))
    result = QuantizeResult(output, src, scheme, report, report_path, tuple(warnings))
    _check(report, min_agreement, min_cosine, report_path)
    return result


def _host_saturates() -> bool:
    host = get_target("host").supports
    return host.int8_dot == "pmaddubsw" or (host.int8_dot is None and get_target("host").requires.arch == "x86_64")


def _samples(path, src: Path, specs, count: int, seed: int) -> Samples:
    if path is not None:
        return load_samples(path, specs, limit=None)
    return random_samples(src, specs, count, seed)


def _check(report: AccuracyReport, min_agreement: float | None, min_cosine: float | None, report_path: Path) -> None:
    where = f"({report.samples} samples; model written to {report.quantized}, report {report_path})"
    if min_agreement is not None:
        agreement = report.top1_agreement
        if agreement is None:
            raise AccuracyError(f"--min-agreement needs a classifier-shaped output ([batch, classes]); "
                                f"{report.model} has none: use --min-cosine {where}")
        if agreement < min_agreement:
            raise AccuracyError(f"top-1 agreement with fp32 is {agreement:.1%}, below --min-agreement "
                                f"{min_agreement:.1%} {where}")
    if min_cosine is not None and report.cosine_min < min_cosine:
        raise AccuracyError(f"worst-sample cosine similarity with fp32 is {report.cosine_min:.5f}, below "
                            f"--min-cosine {min_cosine} {where}")


class _VerbPackage(types.ModuleType):
    """The package shares its name with the verb: once any `tvmopt.quantize.*` module is imported,
    Python binds `tvmopt.quantize` to this package, so the package itself calls the verb."""

    def __call__(self, *args: Any, **kwargs: Any) -> QuantizeResult:
        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _VerbPackage

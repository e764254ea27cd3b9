"""load(): open an artifact for production use and run it through a validated Predictor.

Needs only TVM's runtime. Refuses artifacts built for another ISA, a CPU lacking the target's
features, a missing GPU, or another TVM version, with a message that says which.
"""

from __future__ import annotations

import os
import statistics
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from . import _tvm
from .artifact import Artifact, read_artifact
from .errors import ArtifactError, InputSpecError
from .model import TensorSpec
from .targets import compatibility_problem, host_fingerprint


@dataclass(frozen=True)
class Latency:
    """Per-run latencies of one benchmark, in milliseconds."""

    runs_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.runs_ms, 90))

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.runs_ms)


class Predictor:
    """Runs a compiled artifact: `predictor(x)` or `predictor(input_ids=..., mask=...)`.

    Returns a list of numpy arrays, one per model output (like onnxruntime's run(None, ...)).
    Each calling thread gets its own VM over the shared library, so calls from several threads
    are safe.
    """

    def __init__(self, artifact: Artifact, device_id: int = 0):
        self.artifact = artifact
        self.inputs: tuple[TensorSpec, ...] = artifact.inputs
        self.outputs: tuple[TensorSpec, ...] = artifact.outputs
        self._device_type = "cuda" if artifact.manifest["target"].get("device") == "cuda" else "cpu"
        self._device_id = device_id
        try:
            self._lib, self.device, vm = _tvm.load_vm(str(artifact.library_path), self._device_type, device_id)
        except Exception as err:  # noqa: BLE001
            raise ArtifactError(f"{artifact.path}: cannot load its library: {str(err).strip().splitlines()[-1]}") from err
        self._local = threading.local()
        self._local.vm = vm

    # ----------------------------------------------------------------- running

    def __call__(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        arrays = self._bind(args, kwargs)
        return self._run(arrays)

    def predict_batch(self, batch: Iterable[Any], progress: bool = True) -> list[list[np.ndarray]]:
        """Run many inputs (each a dict of name->array, a tuple, or one array) with a progress bar."""
        from tqdm import tqdm

        items = list(batch) if not hasattr(batch, "__len__") else batch
        results = []
        for item in tqdm(items, desc="predict", unit="input", disable=not progress):
            if isinstance(item, dict):
                results.append(self(**item))
            elif isinstance(item, (tuple, list)):
                results.append(self(*item))
            else:
                results.append(self(item))
        return results

    def benchmark(self, inputs: dict[str, np.ndarray] | None = None, repeat: int = 50, warmup: int = 3) -> Latency:
        """Time `repeat` runs (after `warmup`) with TVM's time_evaluator; random inputs if none."""
        arrays = self._bind((), inputs) if inputs else self._bind((), self.random_inputs())
        vm = self._vm()
        tensors = [self._tensor(a) for a in arrays]
        for _ in range(warmup):
            vm["main"](*tensors)
        timer = vm.time_evaluator("main", self.device, number=1, repeat=repeat)
        return Latency(tuple(float(x) * 1e3 for x in timer(*tensors).results))

    def bound_call(self, inputs: dict[str, np.ndarray]):
        """A no-argument callable running the model on `inputs` already on the device (timing)."""
        vm = self._vm()
        tensors = [self._tensor(a) for a in self._bind((), inputs)]
        return lambda: vm["main"](*tensors)

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs of the right shape and dtype: normal floats, small non-negative ints, masks of 1s."""
        return random_inputs(self.inputs, seed)

    # ----------------------------------------------------------------- internals

    def _vm(self):
        vm = getattr(self._local, "vm", None)
        if vm is None:
            vm = self._local.vm = _tvm.new_vm(self._lib, self.device)
        return vm

    def _tensor(self, array: np.ndarray):
        import tvm

        return tvm.runtime.tensor(array, self.device)

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        result = self._vm()["main"](*[self._tensor(a) for a in arrays])
        return _flatten(result)

    def _bind(self, args: Sequence[Any], kwargs: dict[str, Any] | None) -> list[np.ndarray]:
        return bind_inputs(self.inputs, args, kwargs)

    def signature(self) -> str:
        return signature(self.inputs)


def random_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the right shape and dtype: normal floats, small non-negative ints, masks of 1s."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        if not spec.is_static:
            raise InputSpecError(
                f"input '{spec.name}' has dynamic shape {spec.shape_str()}; pass inputs explicitly"
            )
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            out[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
        elif dtype.kind == "b":
            out[spec.name] = np.ones(spec.shape, dtype)
        elif "mask" in spec.name.lower():
            out[spec.name] = np.ones(spec.shape, dtype)
        else:
            out[spec.name] = rng.integers(0, 100, spec.shape).astype(dtype)
    return out


def bind_inputs(specs: Sequence[TensorSpec], args: Sequence[Any], kwargs: dict[str, Any] | None) -> list[np.ndarray]:
    """Match positional/keyword inputs to `specs`, check names, shapes and dtypes; one array per spec."""
    kwargs = dict(kwargs or {})
    names = [s.name for s in specs]
    if len(args) > len(names):
        raise InputSpecError(f"model takes {len(names)} input(s) ({', '.join(names)}), got {len(args)} positional")
    values = dict(zip(names, args))
    for key in kwargs:
        if key not in names:
            raise InputSpecError(f"unknown input '{key}'; the model's inputs are: {', '.join(names)}")
        if key in values:
            raise InputSpecError(f"input '{key}' given both positionally and by name")
    values.update(kwargs)
    missing = [n for n in names if n not in values]
    if missing:
        raise InputSpecError(f"missing input(s): {', '.join(missing)} (expected {signature(specs)})")
    return [_check(spec, values[spec.name]) for spec in specs]


def _check(spec: TensorSpec, value: Any) -> np.ndarray:
    array = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)
    if str(array.dtype) != spec.dtype:
        safe = np.can_cast(array.dtype, spec.dtype, casting="same_kind") and array.dtype.kind == np.dtype(spec.dtype).kind
        if not safe:
            raise InputSpecError(f"input '{spec.name}': dtype {array.dtype}, expected {spec.dtype}")
        array = array.astype(spec.dtype)
    if len(array.shape) != len(spec.shape) or any(
        isinstance(want, int) and want != got for want, got in zip(spec.shape, array.shape)
    ):
        raise InputSpecError(
            f"input '{spec.name}': shape {'x'.join(map(str, array.shape)) or 'scalar'}, expected {spec.shape_str()}"
        )
    return np.ascontiguousarray(array)


def signature(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name}: {s.dtype}[{s.shape_str()}]" for s in specs)


def _flatten(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    out: list[np.ndarray] = []
    for item in result:
        out.extend(_flatten(item))
    return out


def load(path: str | os.PathLike, *, check_compatibility: bool = True) -> Predictor:
    """Open an artifact directory; refuse it if this machine or TVM cannot run it."""
    artifact = read_artifact(path)
    if check_compatibility:
        problem = compatibility_problem(artifact.manifest["target"].get("requires", {}), host_fingerprint())
        if problem:
            hint = ""
            if artifact.manifest["target"].get("requires", {}).get("arch") == "aarch64":
                hint = " (run it on the device, via `tvmopt run --rpc-tracker ...`, or here with `tvmopt run --emulate`)"
            raise ArtifactError(f"{artifact.path}: target {artifact.target_name}: {problem}{hint}")
        built_with = artifact.manifest["tvm_version"]
        if built_with != _tvm.TVM_VERSION:
            raise ArtifactError(
                f"{artifact.path}: built with TVM {built_with}, this runtime is TVM {_tvm.TVM_VERSION}; "
                "recompile it with this TVM"
            )
    return Predictor(artifact)

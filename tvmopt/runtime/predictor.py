"""Predictor: runs a loaded artifact, validating inputs; one VM per calling thread."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ArtifactError, UsageError
from ..specs import TensorSpec, signature
from . import tvm_runtime
from .artifact import Artifact
from .inputs import bind_inputs, random_inputs


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
    are safe. An input array of another dtype than the model's is refused unless `cast_inputs`.
    """

    def __init__(self, artifact: Artifact, device_id: int = 0, cast_inputs: bool = False):
        self.artifact = artifact
        self.cast_inputs = cast_inputs
        self.inputs: tuple[TensorSpec, ...] = artifact.inputs
        self.outputs: tuple[TensorSpec, ...] = artifact.outputs
        try:
            self.device = tvm_runtime.device(artifact.manifest.target.device_type, device_id)
            self._library = tvm_runtime.load_library(artifact.library_path)
            vm = tvm_runtime.VM(self._library, self.device)
        except Exception as err:  # noqa: BLE001 - TVM raises several kinds
            lines = str(err).strip().splitlines()
            raise ArtifactError(f"{artifact.path}: cannot load its library: {lines[-1] if lines else err}") from err
        self._local = threading.local()
        self._local.vm = vm

    # ----------------------------------------------------------------- running

    def __call__(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        return self.run_arrays(bind_inputs(self.inputs, args, kwargs, self.cast_inputs))

    def run_arrays(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on arrays already checked against `inputs` (in their order)."""
        tensors = [tvm_runtime.to_device(a, self.device) for a in arrays]
        return tvm_runtime.flatten(self._vm().function("main")(*tensors))

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
        """Time `repeat` runs (after `warmup`) with TVM's C++ time evaluator; random inputs if none.

        The runs are timed in chunks of about 0.2 s: Python handles Ctrl-C only between calls into
        TVM, and one call timing 10^7 runs would ignore it for minutes.
        """
        if repeat < 1:
            raise UsageError(f"--repeat must be at least 1, got {repeat}")
        arrays = bind_inputs(self.inputs, (), inputs or self.random_inputs(), self.cast_inputs)
        vm = self._vm()
        tensors = [tvm_runtime.to_device(a, self.device) for a in arrays]
        main = vm.function("main")
        for _ in range(warmup):
            main(*tensors)
        seconds: list[float] = []
        chunk = 1
        while len(seconds) < repeat:
            n = min(chunk, repeat - len(seconds))
            started = time.perf_counter()
            seconds += vm.time("main", tensors, number=1, repeat=n)
            spent = time.perf_counter() - started
            chunk = max(1, min(n * 10, int(n * 0.2 / spent))) if spent > 0 else n * 10
        return Latency(tuple(s * 1e3 for s in seconds))

    def bound_call(self, inputs: dict[str, np.ndarray]):
        """A no-argument callable running the model on `inputs` already on the device (timing)."""
        main = self._vm().function("main")
        tensors = [tvm_runtime.to_device(a, self.device) for a in bind_inputs(self.inputs, (), inputs, self.cast_inputs)]
        return lambda: main(*tensors)

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs of the right shape and dtype: normal floats, small non-negative ints, masks of 1s."""
        return random_inputs(self.inputs, seed)

    def signature(self) -> str:
        return signature(self.inputs)

    # ----------------------------------------------------------------- internals

    def _vm(self) -> tvm_runtime.VM:
        vm = getattr(self._local, "vm", None)
        if vm is None:
            vm = self._local.vm = tvm_runtime.VM(self._library, self.device)
        return vm

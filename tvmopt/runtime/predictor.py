"""Predictor: runs a loaded artifact, validating inputs; one VM per calling thread."""

from __future__ import annotations

import functools
import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .. import ctrl_c, threads
from ..errors import ArtifactError, InputSpecError, UsageError
from ..specs import TensorSpec, signature
from . import batching, tvm_runtime
from .adaptive_threads import PerShapeTuners, ThreadCountTuner, candidate_counts
from .artifact import Artifact
from .inputs import StaticBinder, bind_inputs, random_inputs, warm_up_inputs


ADAPTIVE_THREADS_ENV = "TVMOPT_ADAPTIVE_THREADS"


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

    `adaptive_threads` (CPU): each calling thread's TVM pool runs the model on the thread count
    that has been fastest lately, probed now and then (adaptive_threads.py); small models gain
    where the cost of crossing cores changes. Default: on, unless the user fixed the count
    (TVM_NUM_THREADS / OMP_NUM_THREADS) or set TVMOPT_ADAPTIVE_THREADS=0.
    """

    def __init__(self, artifact: Artifact, device_id: int = 0, cast_inputs: bool = False,
                 adaptive_threads: bool | None = None):
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
        self._cpu = tvm_runtime.is_cpu(self.device)
        self._static_binder = StaticBinder(self.inputs)
        if adaptive_threads is None:
            adaptive_threads = (self._cpu and not threads.fixed_by_user()
                                and os.environ.get(ADAPTIVE_THREADS_ENV, "1") != "0")
        self.adaptive_threads = adaptive_threads
        buckets = artifact.manifest.batch_buckets
        self._planner = batching.BucketPlanner(buckets) if buckets is not None else None

    # ----------------------------------------------------------------- running

    def __call__(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        arrays = self._static_binder(args, kwargs)
        if arrays is None:
            arrays = bind_inputs(self.inputs, args, kwargs, self.cast_inputs)
        return self.run_arrays(arrays)

    def run_arrays(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run on arrays already checked against `inputs` (in their order). A bucketed artifact
        runs the batch on the compiled batch sizes that its timed calls show cheapest (padding
        where that pays) and slices the outputs back."""
        if self._planner is not None:
            return batching.run_bucketed(self._run_function, self._planner, self.inputs, arrays)
        return self._run_function("main", arrays)

    @property
    def planner(self) -> batching.BucketPlanner | None:
        """How a bucketed artifact splits batches over its batch sizes (`costs()`, `plan(rows)`);
        None without buckets."""
        return self._planner

    def run_many(self, requests: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        """Run several bound inputs; merged into one batch along the batch dim where the model has
        one (the path `predict_batch`, `tvmopt serve` and `tvmopt predict` share)."""
        if self.batch_dim is None:
            return [self.run_arrays(r) for r in requests]
        return batching.run_merged(self.run_arrays, requests)

    @functools.cached_property
    def batch_dim(self) -> str | None:
        """The symbolic dim all inputs and outputs have at axis 0, if any (requests merge along it)."""
        return batching.batch_dim(self.inputs, self.outputs)

    @property
    def max_batch_size(self) -> int:
        """Rows one run takes by default: the largest compiled bucket; 1 without buckets."""
        buckets = self.artifact.manifest.batch_buckets
        return buckets.largest if buckets is not None else 1

    def predict_batch(self, batch: Iterable[Any], progress: bool = True,
                      batch_size: int | None = None) -> list[list[np.ndarray]]:
        """Run many inputs (each a dict of name->array, a tuple, or one array) with a progress bar.

        Inputs are merged into batches of up to `batch_size` rows (default `max_batch_size`) where
        the model has a batch dim; each input gets its own outputs back.
        """
        from tqdm import tqdm

        bound = [self._bind(item) for item in batch]
        rows = [r[0].shape[0] if self.batch_dim and r else 1 for r in bound]
        results: list[list[np.ndarray]] = []
        with tqdm(total=len(bound), desc="predict", unit="input", disable=not progress) as bar:
            for group in batching.group_by_rows(rows, batch_size or self.max_batch_size):
                results.extend(self.run_many([bound[i] for i in group]))
                bar.update(len(group))
        return results

    def benchmark(self, inputs: dict[str, np.ndarray] | None = None, repeat: int = 50, warmup: int = 3) -> Latency:
        """Time `repeat` runs (after `warmup`) with TVM's C++ time evaluator; random inputs if none.

        The runs are timed in chunks of about 0.2 s: Python handles Ctrl-C only between calls into
        TVM, and one call timing 10^7 runs would ignore it for minutes.
        """
        if repeat < 1:
            raise UsageError(f"--repeat must be at least 1, got {repeat}")
        name, arrays = self._entry(bind_inputs(self.inputs, (), inputs or self.random_inputs(), self.cast_inputs))
        vm = self._vm()
        tensors = [tvm_runtime.to_device(a, self.device) for a in arrays]
        main = vm.function(name)
        self._full_pool()
        for _ in range(warmup):
            main(*tensors)
        seconds: list[float] = []
        chunk = 1
        while len(seconds) < repeat:
            ctrl_c.check()  # a Ctrl-C whose KeyboardInterrupt got lost still ends the loop
            n = min(chunk, repeat - len(seconds))
            started = time.perf_counter()
            seconds += vm.time(name, tensors, number=1, repeat=n)
            spent = time.perf_counter() - started
            chunk = max(1, min(n * 10, int(n * 0.2 / spent))) if spent > 0 else n * 10
        return Latency(tuple(s * 1e3 for s in seconds))

    def bound_call(self, inputs: dict[str, np.ndarray]):
        """A no-argument callable running the model on `inputs` already on the device, outputs left
        there (timing kernels, e.g. two builds against each other; against another engine, time
        the full call, numpy in and out)."""
        name, arrays = self._entry(bind_inputs(self.inputs, (), inputs, self.cast_inputs))
        main = self._vm().function(name)
        tensors = [tvm_runtime.to_device(a, self.device) for a in arrays]
        self._full_pool()  # kernels timed on every thread, whatever adaptive calls chose
        return lambda: main(*tensors)

    def random_inputs(self, seed: int = 0, rows: int | None = None) -> dict[str, np.ndarray]:
        """Inputs of the right shape and dtype: normal floats, small non-negative ints, masks of 1s.

        A bucketed artifact gets `rows` rows (default: its smallest batch size)."""
        buckets = self.artifact.manifest.batch_buckets
        if buckets is not None:
            return random_inputs(batching.with_rows(self.inputs, buckets.dim, rows or buckets.sizes[0]), seed)
        return random_inputs(self.inputs, seed)

    def warm_up(self, calls: int = 8, seconds: float = 1.0) -> bool:
        """Run every compiled batch size `calls` times (fewer, but at least 3, once one size has
        taken `seconds`), so that one-time costs stay out of the first real calls and a bucketed
        artifact splits batches by measured costs from the start. The MLP's first calls took
        1.7, 0.7, 0.8, 0.5, 0.4 ms, then 0.25 from the sixth on. Inputs: warm_up_inputs (integers
        0); a symbolic batch dim gets 1 row. False when other dims are symbolic (no inputs)."""
        buckets = self.artifact.manifest.batch_buckets
        dim = buckets.dim if buckets else self.batch_dim
        sizes: Sequence[int | None] = buckets.sizes if buckets else ([1] if dim else [None])
        try:
            batches = [(size, warm_up_inputs(batching.with_rows(self.inputs, dim, size) if size else self.inputs))
                       for size in sizes]
        except InputSpecError:
            return False
        for size, inputs in batches:
            arrays = [inputs[s.name] for s in self.inputs]
            deadline = time.perf_counter() + seconds
            for call in range(calls):
                if call >= 3 and time.perf_counter() > deadline:
                    break
                if buckets is None:
                    self.run_arrays(arrays)
                    continue
                began = time.perf_counter()  # this bucket itself, whatever the planner would pick
                self._run_function(buckets.function(size), arrays)
                self._planner.record(size, time.perf_counter() - began)
        return True

    def signature(self) -> str:
        return signature(self.inputs)

    # ----------------------------------------------------------------- internals

    def _run_function(self, name: str, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        calls = self._local.__dict__.setdefault("calls", {})
        entry = calls.get(name)
        if entry is None:
            entry = calls[name] = self._staged(name)
        call, tuner = entry
        if tuner is not None:
            return tuner(call, arrays)
        self._full_pool()  # another predictor in this thread may have resized the pool
        return call(arrays)

    def _staged(self, name: str) -> tuple[tvm_runtime.StagedCall, ThreadCountTuner | PerShapeTuners | None]:
        """The calling thread's staged call of VM function `name`, with its thread-count tuner
        (one per input shapes where the model has symbolic dims)."""
        call = tvm_runtime.StagedCall(self._vm().function(name), self.device)
        size = self._full_pool()
        if not self.adaptive_threads or size < 2:
            return call, None
        make = functools.partial(ThreadCountTuner, candidate_counts(size), tvm_runtime.thread_pool())
        buckets = self.artifact.manifest.batch_buckets
        batch_fixed = buckets is not None and name in buckets.functions  # a bucket's batch dim is static
        static = all(isinstance(d, int) for spec in self.inputs for d in spec.shape[1 if batch_fixed else 0:])
        return call, make() if static else PerShapeTuners(make)

    def _full_pool(self) -> int:
        """The calling thread's TVM pool back at its full size (CPU); returns that size."""
        if not self._cpu:  # a GPU's kernels use no host thread pool
            return 0
        pool = tvm_runtime.thread_pool()
        pool.use(pool.size)
        return pool.size

    def _entry(self, arrays: list[np.ndarray]) -> tuple[str, list[np.ndarray]]:
        """The VM function that runs `arrays` as one call (timing), and the arrays padded for it."""
        buckets = self.artifact.manifest.batch_buckets
        if buckets is None:
            return "main", arrays
        rows = batching.rows_of(self.inputs, arrays, buckets.dim)
        if rows > buckets.largest:
            raise InputSpecError(f"{rows} rows: one timed call runs at most the largest batch size, {buckets.largest}")
        size = buckets.fit(rows)
        return buckets.function(size), [batching.pad_rows(a, size) for a in arrays]

    def _bind(self, item: Any) -> list[np.ndarray]:
        if isinstance(item, dict):
            return bind_inputs(self.inputs, (), item, self.cast_inputs)
        if isinstance(item, (tuple, list)):
            return bind_inputs(self.inputs, item, None, self.cast_inputs)
        return bind_inputs(self.inputs, (item,), None, self.cast_inputs)

    def _vm(self) -> tvm_runtime.VM:
        vm = getattr(self._local, "vm", None)
        if vm is None:
            vm = self._local.vm = tvm_runtime.VM(self._library, self.device)
        return vm

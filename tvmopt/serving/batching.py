"""Dynamic batching: concurrent requests for one model merged along the batch dim, run once, split.

Each model has one queue and one thread that runs it (a CPU model already uses every core; two
runs at once would only compete). A model whose full batch runs in under `inline_max_s` (2 ms by
default, timed at warm-up) runs on the event loop's own thread instead: the hand-off to a runner
thread and back cost about 0.1 ms per batch here, as much as the MLP's whole run, and a loop
blocked for under 2 ms delays other requests by no more than that.

A batch closes when it holds `max_batch_size` rows, or when the oldest request has waited
`max_queue_delay` (0: take what is queued now, so batches form by themselves while the model is
busy). The run itself is the runtime's: Predictor.run_many, which runs the batch on the
artifact's batch buckets (padding where that is cheaper) and slices the outputs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import InputSpecError
from ..runtime.batching import with_rows
from ..runtime.inputs import warm_up_inputs
from .metrics import Metrics
from .models import ServedModel, warm_up_model

INLINE_MAX_S = 0.002  # default: a full batch faster than this runs on the event loop's thread


@dataclass
class _Pending:
    arrays: list[np.ndarray]
    rows: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """The queue and the runner thread of one model."""

    def __init__(self, model: ServedModel, max_batch_size: int, max_queue_delay_s: float, metrics: Metrics,
                 inline_max_s: float = INLINE_MAX_S):
        self.model = model
        # Without a batch dim nothing can be merged: one request per run.
        self.max_batch_size = max(1, max_batch_size) if model.batch_dim is not None else 1
        self.max_queue_delay_s = max(0.0, max_queue_delay_s)
        self.metrics = metrics
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{model.name}")
        self._task: asyncio.Task | None = None
        self.inline_max_s = inline_max_s
        self.inline = False  # batches run on the event loop's thread (warm_up sets it for fast models)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def warm_up(self) -> str:
        """The model's warm-up, then a timed full batch that decides where batches run; returns a
        line saying which. The thread that will run them is the one warmed: TVM's thread pool and
        the Predictor's VM and input tensors are per calling thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, warm_up_model, self.model)
        batch = self._full_batch()
        seconds = None
        if batch is not None:
            seconds = await loop.run_in_executor(self._executor, _fastest_run, self.model, batch,
                                                 10 * self.inline_max_s)
        if seconds is None:
            return f"{self.model.name}: batches run on a thread of their own (no full batch could be timed)"
        if seconds < self.inline_max_s:
            warm_up_model(self.model)  # before the server listens: blocking the loop here delays no request
            self.inline = True
        where = "the event loop's thread" if self.inline else "a thread of their own"
        return (f"{self.model.name}: a {self.max_batch_size}-row batch takes {seconds * 1e3:.2f} ms; "
                f"batches run on {where}")

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    async def infer(self, arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
        """Queue one request; its outputs once its batch ran (or the exception its own run raised)."""
        pending = _Pending(arrays, rows, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._queued_rows += rows
        self._wakeup.set()
        return await pending.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.max_queue_delay_s and self._queued_rows < self.max_batch_size:
                await self._wait_for_more()
            batch = self._take()
            started = time.perf_counter()
            if self.inline:
                results = self._run([p.arrays for p in batch])
            else:
                results = await loop.run_in_executor(self._executor, self._run, [p.arrays for p in batch])
            seconds = time.perf_counter() - started
            self.metrics.batch(self.model.name, sum(p.rows for p in batch), len(batch),
                               [started - p.arrived for p in batch], seconds)
            for pending, result in zip(batch, results):
                if pending.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    async def _wait_for_more(self) -> None:
        deadline = self._queue[0].arrived + self.max_queue_delay_s
        while self._queued_rows < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        """The oldest requests whose rows fit in one batch (always at least one)."""
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
            rows += self._queue[0].rows
            batch.append(self._queue.popleft())
        self._queued_rows -= rows
        return batch

    def _full_batch(self) -> list[np.ndarray] | None:
        """Warm-up inputs with `max_batch_size` rows (one record without a batch dim); None where
        other dims are symbolic."""
        specs = self.model.inputs
        if self.model.batch_dim is not None:
            specs = with_rows(specs, self.model.batch_dim, self.max_batch_size)
        try:
            inputs = warm_up_inputs(specs)
        except InputSpecError:
            return None
        return [inputs[s.name] for s in self.model.inputs]

    def _run(self, requests: Sequence[list[np.ndarray]]) -> list[list[np.ndarray] | BaseException]:
        """Run a batch; if it fails, run its requests one by one so that a request that breaks the
        model fails alone and the others still get their answers."""
        try:
            return list(self.model.run_many(requests))
        except Exception as err:  # noqa: BLE001 - whatever the model raised goes to its request
            if len(requests) == 1:
                return [err]
        results: list[list[np.ndarray] | BaseException] = []
        for request in requests:
            try:
                results.extend(self.model.run_many([request]))
            except Exception as err:  # noqa: BLE001
                results.append(err)
        return results


def _fastest_run(model: ServedModel, arrays: list[np.ndarray], enough_s: float, runs: int = 3) -> float | None:
    """The fastest of up to `runs` timed runs of one batch, in seconds (stopping once one took over
    `enough_s`: a slow model's start-up is not made slower); None if the model fails on it."""
    best = None
    for _ in range(runs):
        started = time.perf_counter()
        try:
            model.run_many([arrays])
        except Exception:  # noqa: BLE001 - warm-up inputs the model refuses: keep the runner thread
            return None
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
        if best > enough_s:
            break
    return best

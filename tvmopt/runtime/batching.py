"""Batches along the batch dimension: split a batch into the compiled buckets that run it
cheapest (padding where that pays) and slice back, merge requests and split their results.

One path for every caller that runs more than one record at a time: Predictor.run_arrays and
predict_batch, `tvmopt serve`'s dynamic batcher and `tvmopt predict`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from ..errors import InputSpecError
from ..specs import BatchBuckets, TensorSpec

RunFunction = Callable[[str, Sequence[np.ndarray]], list[np.ndarray]]


def batch_dim(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str | None:
    """The symbolic dim that every input and every output has at axis 0, or None.

    Only then can requests be stacked along axis 0 and each output be split back by rows.
    """
    specs = [*inputs, *outputs]
    if not specs or any(not s.shape or isinstance(s.shape[0], int) for s in specs):
        return None
    names = {s.shape[0] for s in specs}
    return str(names.pop()) if len(names) == 1 else None


def rows_of(specs: Sequence[TensorSpec], arrays: Sequence[np.ndarray], dim: str) -> int:
    """Rows of a batch (the size of axis 0, which every input must agree on)."""
    rows = {int(a.shape[0]) for a in arrays}
    if len(rows) > 1:
        sizes = ", ".join(f"'{s.name}' {a.shape[0]}" for s, a in zip(specs, arrays))
        raise InputSpecError(f"inputs disagree on the batch dim '{dim}' (axis 0): {sizes}")
    count = rows.pop() if rows else 0
    if count < 1:
        raise InputSpecError(f"empty batch: the batch dim '{dim}' (axis 0) is 0")
    return count


def with_rows(specs: Sequence[TensorSpec], dim: str, rows: int) -> tuple[TensorSpec, ...]:
    """`specs` with the batch dim fixed to `rows` (for random inputs of a bucketed artifact)."""
    return tuple(replace(s, shape=(rows, *s.shape[1:])) if s.shape and s.shape[0] == dim else s for s in specs)


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` grown to `rows` along axis 0 by repeating its last row (always valid model input,
    unlike zeros for an index or a mask)."""
    missing = rows - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


class BucketPlanner:
    """Splits a batch into the bucket runs that cost least, from each bucket's timed calls.

    Padding to the next bucket is not always cheapest: bert4 compiled with buckets 1,4,16 ran 5
    rows in 158 ms padded to 16 and in 48 ms as 4+1, and its 16 rows cost more as one call
    (168 ms) than as sixteen (150 ms). A bucket's cost is the fastest of its recent calls (its
    first call, a cold start, not counted; the fastest, because load and cold caches only ever
    add time); an untimed bucket's is scaled by rows from the nearest timed one, or is its rows
    plus a quarter row per call when none is timed yet. The last EXPLORE_BURST batches of every
    EXPLORE_EVERY run padded to the next bucket whatever the plan says, so that a bucket the plans
    stopped using is timed again: a warm-up's cold 16-row call (1.3 ms against 0.5 warm on the MLP)
    otherwise kept 16-row batches on four 4-row calls for good. In a burst, not one batch at a
    time: each bucket has its own packed copy of the weights, and a bucket's first call after the
    others ran reads them from memory (the MLP's 4-row bucket on a 2-core Xeon: 282-343 us in
    single explored calls, 159-190 us run in a row), so single calls never showed it warm.
    """

    TRUSTED_AFTER = 2  # timed calls before a bucket's own figure counts
    WINDOW = 8  # recent calls the fastest is taken over
    REPLAN_EVERY = 16  # timed calls between re-plans (a plan lookup is a list index)
    EXPLORE_EVERY = 64  # batches per exploration cycle
    EXPLORE_BURST = 3  # the cycle's last batches, run padded to the next bucket one after another

    def __init__(self, buckets: BatchBuckets):
        self.buckets = buckets
        self._samples: dict[int, deque[float]] = {s: deque(maxlen=self.WINDOW) for s in buckets.sizes}
        self._calls = dict.fromkeys(buckets.sizes, 0)
        self._timed = 0
        self._planned = 0
        self._plans: list[tuple[int, ...]] | None = None
        self._lock = threading.Lock()

    def record(self, size: int, seconds: float) -> None:
        """One finished call of bucket `size`."""
        self._calls[size] += 1
        if self._calls[size] == 1:
            return
        samples = self._samples[size]
        samples.append(seconds)
        self._timed += 1
        if len(samples) == self.TRUSTED_AFTER or self._timed % self.REPLAN_EVERY == 0:
            self._plans = None

    @property
    def timed(self) -> tuple[int, ...]:
        """The buckets whose cost is their own measured time (the others' is scaled)."""
        return tuple(s for s, q in self._samples.items() if len(q) >= self.TRUSTED_AFTER)

    def costs(self) -> dict[int, float]:
        """Estimated cost of one call per bucket (seconds once any bucket is timed, else rows)."""
        timed = {s: min(self._samples[s]) for s in self.timed}
        if not timed:
            return {s: s + 0.25 for s in self.buckets.sizes}
        costs = {}
        for size in self.buckets.sizes:
            near = min(timed, key=lambda t: abs(math.log(t / size)))
            costs[size] = timed[size] if size in timed else timed[near] * size / near
        return costs

    def plan(self, rows: int) -> list[int]:
        """Bucket sizes to run in order for `rows` rows; only the last one may be padded."""
        self._planned += 1
        exploring = (self._planned - 1) % self.EXPLORE_EVERY >= self.EXPLORE_EVERY - self.EXPLORE_BURST
        if exploring and rows <= self.buckets.largest:
            return [self.buckets.fit(rows)]
        plans = self._plans
        if plans is None:
            with self._lock:
                plans = self._plans = self._plans or self._make_plans()
        largest = self.buckets.largest
        if rows <= largest:
            return list(plans[rows])
        # Beyond the largest bucket: runs of the cheapest bucket per row, the rest as planned.
        costs = self.costs()
        best = min(reversed(self.buckets.sizes), key=lambda s: costs[s] / s)
        full = (rows - largest + best - 1) // best
        return [best] * full + list(plans[rows - full * best])

    def _make_plans(self) -> list[tuple[int, ...]]:
        """The cheapest plan for every row count up to the largest bucket (ties: fewer calls)."""
        costs = self.costs()
        sizes = sorted(self.buckets.sizes, reverse=True)
        total = [0.0] * (self.buckets.largest + 1)
        plans: list[tuple[int, ...]] = [()] * (self.buckets.largest + 1)
        for rows in range(1, self.buckets.largest + 1):
            best_cost, best_plan = math.inf, ()
            for size in sizes:
                cost = costs[size] + total[max(rows - size, 0)]
                if cost < best_cost * (1 - 1e-9):
                    best_cost, best_plan = cost, (size, *plans[max(rows - size, 0)])
            total[rows], plans[rows] = best_cost, best_plan
        return plans


def run_bucketed(run: RunFunction, planner: BucketPlanner, specs: Sequence[TensorSpec],
                 arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a batch of any size on the planner's buckets, split as it finds cheapest (each run
    padded to its bucket where needed, its outputs sliced to the real rows, then joined). Every
    run's time goes back to the planner."""
    buckets = planner.buckets
    total = rows_of(specs, arrays, buckets.dim)
    pieces: list[list[np.ndarray]] = []
    start = 0
    for size in planner.plan(total):
        chunk = list(arrays) if start == 0 and size >= total else [a[start:start + size] for a in arrays]
        rows = chunk[0].shape[0]
        began = time.perf_counter()
        outputs = run(buckets.function(size), [pad_rows(a, size) for a in chunk])
        planner.record(size, time.perf_counter() - began)
        pieces.append([o[:rows] if rows < size else o for o in outputs])
        start += size
    if len(pieces) == 1:
        return pieces[0]
    return [np.concatenate(parts) for parts in zip(*pieces)]


def run_merged(run: Callable[[list[np.ndarray]], list[np.ndarray]],
               requests: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """Stack requests (each a list of input arrays, batch dim first) into one batch, run it once,
    and split every output back by each request's rows."""
    if len(requests) == 1:
        return [run(list(requests[0]))]
    merged = [np.concatenate(parts) for parts in zip(*requests)]
    outputs = run(merged)
    results, start = [], 0
    for request in requests:  # plain slices: np.split cost 8-13 us for four requests
        stop = start + request[0].shape[0]
        results.append([o[start:stop] for o in outputs])
        start = stop
    return results


def group_by_rows(counts: Sequence[int], max_rows: int) -> list[range]:
    """Consecutive groups of requests whose rows add up to at most `max_rows` (a bigger request
    forms a group of its own)."""
    groups: list[range] = []
    start, rows = 0, 0
    for i, count in enumerate(counts):
        if i > start and rows + count > max_rows:
            groups.append(range(start, i))
            start, rows = i, 0
        rows += count
    if counts:
        groups.append(range(start, len(counts)))
    return groups

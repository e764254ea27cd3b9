"""Batches along the batch dimension: pad to a compiled bucket and slice back, merge requests and
split their results.

One path for every caller that runs more than one record at a time: Predictor.run_arrays and
predict_batch, `tvmopt serve`'s dynamic batcher and `tvmopt predict`.
"""

from __future__ import annotations

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


def run_bucketed(run: RunFunction, buckets: BatchBuckets, specs: Sequence[TensorSpec],
                 arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a batch of any size on the compiled buckets: chunks of at most the largest bucket, each
    padded to the smallest bucket that holds it; outputs sliced to the real rows and joined."""
    total = rows_of(specs, arrays, buckets.dim)
    pieces: list[list[np.ndarray]] = []
    for start in range(0, total, buckets.largest):
        chunk = [a[start:start + buckets.largest] for a in arrays]
        rows = chunk[0].shape[0]
        size = buckets.fit(rows)
        outputs = run(buckets.function(size), [pad_rows(a, size) for a in chunk])
        pieces.append([o[:rows] if rows < size else o for o in outputs])
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
    bounds = np.cumsum([r[0].shape[0] for r in requests])[:-1]
    split = [np.split(o, bounds) for o in outputs]
    return [[parts[i] for parts in split] for i in range(len(requests))]


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

"""Input records of a batch-prediction job: .npz / .npy files, a directory of them, or Parquet.

A record is one slice along axis 0: an .npz holds one array per model input, records stacked on
axis 0; an .npy holds the one input's records; a Parquet file holds one column per input, a cell
per record (a number, or a nested list of the record's shape). Records are numbered 0..N-1 over
the files in name order, so a job can read any range of them (chunks, resume, Ray workers).
A record that cannot be read as the model's input is reported by number, not raised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, require
from ..specs import TensorSpec

SUFFIXES = (".npz", ".npy", ".parquet")


@dataclass(frozen=True)
class SourceFile:
    """One input file: which records of the job it holds."""

    path: Path
    first: int  # job-wide number of its first record
    records: int

    def to_json(self) -> dict:
        stat = self.path.stat()
        return {"path": str(self.path), "records": self.records, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass(frozen=True)
class RecordBatch:
    """Records [start, stop) read for the model: arrays per input (rows = the good records, in
    order), their job-wide numbers, and the records that could not be read, with why."""

    arrays: list[np.ndarray]
    index: np.ndarray
    bad: dict[int, str]


class RecordSource:
    """The records of a job, over one file or a directory of files."""

    def __init__(self, path: str | os.PathLike, inputs: Sequence[TensorSpec]):
        self.path = Path(path)
        self.inputs = tuple(inputs)
        for spec in self.inputs:
            if not spec.shape or (isinstance(spec.shape[0], int) and spec.shape[0] != 1):
                raise DataError(f"input '{spec.name}' has shape {spec.shape_str()}; batch prediction needs a batch "
                                "dim at axis 0 (dynamic, or fixed to 1)")
        files, first = [], 0
        for file in _list_files(self.path):
            count = self._count(file)
            files.append(SourceFile(file, first, count))
            first += count
        self.files: tuple[SourceFile, ...] = tuple(files)
        self.total = first

    def fingerprint(self) -> list[dict]:
        """What the job's inputs were (names, sizes, times): a resumed job must see the same."""
        return [f.to_json() for f in self.files]

    def read(self, start: int, stop: int) -> RecordBatch:
        """Records [start, stop) of the job."""
        parts: list[tuple[list[np.ndarray], np.ndarray]] = []
        bad: dict[int, str] = {}
        for file in self.files:
            lo, hi = max(start, file.first), min(stop, file.first + file.records)
            if lo >= hi:
                continue
            arrays, good, problems = self._read_file(file, lo - file.first, hi - file.first)
            bad.update({file.first + row: f"{file.path.name} row {row}: {why}" for row, why in problems.items()})
            if len(good):
                parts.append((arrays, good + file.first))
        if not parts:
            return RecordBatch([np.empty((0,) + _static(s.shape[1:]), s.dtype) for s in self.inputs],
                               np.empty(0, np.int64), bad)
        if len(parts) == 1:
            return RecordBatch(parts[0][0], parts[0][1], bad)
        try:
            arrays = [np.concatenate([p[0][i] for p in parts]) for i in range(len(self.inputs))]
        except ValueError:  # symbolic non-batch dims differ between files: keep the files apart
            raise DataError(f"{self.path}: records of different shapes in one chunk; use a --chunk-size that "
                            "keeps files apart, or one shape per input") from None
        return RecordBatch(arrays, np.concatenate([p[1] for p in parts]), bad)

    # ------------------------------------------------------------------ per format

    def _count(self, file: Path) -> int:
        if file.suffix == ".parquet":
            pq = require("pyarrow.parquet", "parquet")
            try:
                parquet = pq.ParquetFile(file)
            except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
                raise DataError(f"{file}: not a readable Parquet file ({err})") from err
            names = parquet.schema_arrow.names
            missing = [s.name for s in self.inputs if s.name not in names]
            if missing:
                raise DataError(f"{file}: no column for input(s) {', '.join(missing)} (columns: {', '.join(names)})")
            return parquet.metadata.num_rows
        arrays = _arrays(file, self.inputs)
        counts = {name: (a.shape[0] if a.ndim else 0) for name, a in arrays.items()}
        if len(set(counts.values())) > 1:
            raise DataError(f"{file}: inputs hold different numbers of records: "
                            + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return next(iter(counts.values()))

    def _read_file(self, file: SourceFile, lo: int, hi: int) -> tuple[list[np.ndarray], np.ndarray, dict[int, str]]:
        if file.path.suffix == ".parquet":
            return _read_parquet(file.path, self.inputs, lo, hi)
        arrays = _arrays(file.path, self.inputs)
        rows = np.arange(lo, hi)
        out = []
        for spec in self.inputs:
            array = arrays[spec.name]
            problem = _shape_problem(spec, array.shape[1:]) or _dtype_problem(spec, array.dtype)
            if problem:  # every record of the file has the same problem
                return [], np.empty(0, np.int64), {int(r): problem for r in rows}
            out.append(np.asarray(array[lo:hi]).astype(spec.dtype, copy=False))
        return out, rows, {}


def _list_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{path}: holds no {', '.join(SUFFIXES)} files")
        return files
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: expected a {', '.join(SUFFIXES)} file or a directory of them")
    return [path]


def _arrays(path: Path, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    return _numpy_arrays(path, tuple(s.name for s in inputs), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _numpy_arrays(path: Path, names: tuple[str, ...], mtime_ns: int) -> dict[str, np.ndarray]:
    """The file's array per input name (.npy memory-mapped; an .npz is read once per file)."""
    try:
        if path.suffix == ".npy":
            if len(names) != 1:
                raise DataError(f"{path}: an .npy file holds one array, the model takes {len(names)} inputs "
                                f"({', '.join(names)}); use an .npz with one array per input")
            return {names[0]: np.load(path, mmap_mode="r", allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            missing = [n for n in names if n not in data.files]
            if missing:
                raise DataError(f"{path}: no array for input(s) {', '.join(missing)} (arrays: "
                                f"{', '.join(data.files) or 'none'})")
            return {n: data[n] for n in names}
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable {path.suffix} file ({err})") from err


def _read_parquet(path: Path, inputs: Sequence[TensorSpec], lo: int, hi: int):
    pq = require("pyarrow.parquet", "parquet")
    parquet = pq.ParquetFile(path)
    groups, first, offset = [], 0, None
    for g in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(g).num_rows
        if first < hi and first + rows > lo:
            groups.append(g)
            offset = lo - first if offset is None else offset
        first += rows
    table = parquet.read_row_groups(groups, columns=[s.name for s in inputs]).slice(offset or 0, hi - lo)
    bad: dict[int, str] = {}
    columns = []
    for spec in inputs:
        values, problems = _column(table.column(spec.name).combine_chunks(), spec)
        columns.append(values)
        for row, why in problems.items():
            bad.setdefault(lo + row, why)
    good = np.array([r for r in range(lo, hi) if r not in bad], np.int64)
    arrays = []
    for spec, values in zip(inputs, columns):
        if isinstance(values, np.ndarray):
            arrays.append(values[good - lo] if bad else values)
        else:
            arrays.append(np.stack([values[r - lo] for r in good]) if len(good) else
                          np.empty((0,) + _static(spec.shape[1:]), spec.dtype))
    return arrays, good, bad


def _column(column, spec: TensorSpec):
    """A Parquet column as records of `spec` (without its batch dim): one array when every cell is
    well formed, else a list of per-row arrays; plus {row: problem}."""
    shape = spec.shape[1:]
    if all(isinstance(d, int) for d in shape) and column.null_count == 0:
        values = _flatten(column, shape)
        if values is not None and not _dtype_problem(spec, values.dtype):
            return values.reshape((len(column), *shape)).astype(spec.dtype, copy=False), {}
    rows: list = []
    problems: dict[int, str] = {}
    for row, cell in enumerate(column.to_pylist()):
        try:
            array = np.asarray(cell)
        except ValueError:
            array = None
        if cell is None or array is None or array.dtype == object:
            problems[row] = f"input '{spec.name}': {'null' if cell is None else 'ragged or non-numeric'} value"
            rows.append(None)
            continue
        problem = _shape_problem(spec, array.shape) or _dtype_problem(spec, array.dtype)
        if problem:
            problems[row] = problem
        rows.append(None if problem else array.astype(spec.dtype, copy=False))
    return rows, problems


def _flatten(column, shape: tuple[int, ...]) -> np.ndarray | None:
    """All values of a column of nested lists whose every level has the expected length, or None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column
    for size in shape:
        if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
                or pa.types.is_fixed_size_list(values.type)):
            return None
        lengths = pc.list_value_length(values)
        if lengths.null_count or pc.any(pc.not_equal(lengths, size)).as_py():
            return None
        values = values.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type)):
        return None
    if values.null_count:
        return None
    return values.to_numpy(zero_copy_only=False)


def _shape_problem(spec: TensorSpec, record_shape: tuple[int, ...]) -> str | None:
    want = spec.shape[1:]
    if len(record_shape) != len(want) or any(isinstance(w, int) and w != g for w, g in zip(want, record_shape)):
        got = "x".join(map(str, record_shape)) or "scalar"
        expected = "x".join(str(d) for d in want) or "scalar"
        return f"input '{spec.name}': record shape {got}, expected {expected}"
    return None


def _dtype_problem(spec: TensorSpec, dtype: np.dtype) -> str | None:
    want = np.dtype(spec.dtype)
    if dtype == want or (np.can_cast(dtype, want, casting="same_kind") and dtype.kind == want.kind):
        return None
    return f"input '{spec.name}': dtype {dtype}, expected {spec.dtype}"


def _static(shape: tuple) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else 0 for d in shape)

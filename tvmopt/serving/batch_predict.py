"""`tvmopt predict`: push records from files through an artifact, in chunks that survive a kill.

OUT/job.json says what the job is (artifact, input files, chunk size). OUT/part-NNNNNN.npz holds
one chunk's outputs: one array per model output, `_index` (the record numbers, in order) and
`_errors` (JSON: the records that could not be predicted, and why). A chunk file appears in one
rename, so a killed job leaves only whole chunks, and the same command run again skips them.
The same chunks run here or on Ray Data (ray_job.py), so either can resume the other.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import ctrl_c
from ..errors import DataError, InputSpecError, last_line
from ..runtime.inputs import bind_inputs
from .data import RecordSource

JOB = "job.json"
JOB_FORMAT = "tvmopt-predict/1"
ON_ERROR = ("skip", "fail")


@dataclass(frozen=True)
class RecordError:
    """A record that was not predicted: its number in the job and why."""

    index: int
    message: str

    def to_json(self) -> dict:
        return {"index": self.index, "error": self.message}

    @staticmethod
    def from_json(obj: dict) -> "RecordError":
        return RecordError(int(obj["index"]), str(obj["error"]))


@dataclass(frozen=True)
class PredictJob:
    """job.json: what a job's chunks were computed from. A resumed job must match it."""

    artifact: str
    library_sha256: str
    input: str
    files: tuple[dict, ...]  # path, records, bytes, mtime_ns of every input file
    records: int
    chunk_size: int
    outputs: tuple[str, ...]

    @property
    def chunks(self) -> int:
        return -(-self.records // self.chunk_size)

    def chunk_range(self, chunk: int) -> tuple[int, int]:
        return chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.records)

    def to_json(self) -> dict:
        return {"format": JOB_FORMAT, "artifact": self.artifact, "library_sha256": self.library_sha256,
                "input": self.input, "files": list(self.files), "records": self.records,
                "chunk_size": self.chunk_size, "outputs": list(self.outputs)}

    @staticmethod
    def from_json(obj: dict) -> "PredictJob":
        if obj.get("format") != JOB_FORMAT:
            raise ValueError(f"format {obj.get('format')!r}")
        return PredictJob(str(obj["artifact"]), str(obj["library_sha256"]), str(obj["input"]),
                          tuple(obj["files"]), int(obj["records"]), int(obj["chunk_size"]), tuple(obj["outputs"]))

    def differs_from(self, other: "PredictJob") -> str | None:
        """What makes `other` another job, or None."""
        if self.library_sha256 != other.library_sha256:
            return "the artifact's library changed"
        if [(f["path"], f["bytes"], f["mtime_ns"]) for f in self.files] != \
                [(f["path"], f["bytes"], f["mtime_ns"]) for f in other.files]:
            return "the input files changed"
        if self.chunk_size != other.chunk_size:
            return f"the chunk size was {other.chunk_size}"
        return None


@dataclass(frozen=True)
class ChunkResult:
    chunk: int
    records: int
    ok: int
    errors: tuple[RecordError, ...] = ()


@dataclass(frozen=True)
class PredictResult:
    """What a job did: records predicted, records that failed (with why), chunks already done."""

    output: Path
    records: int
    ok: int
    errors: list[RecordError] = field(default_factory=list)
    chunks: int = 0
    resumed_chunks: int = 0  # done by an earlier run, skipped
    seconds: float = 0.0
    where: str = "this machine"


def chunk_path(output: Path, chunk: int) -> Path:
    return output / f"part-{chunk:06d}.npz"


def predict(artifact: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike, *,
            batch_size: int | None = None, chunk_size: int = 4096, on_error: str = "fail", progress: bool = True,
            overwrite: bool = False, ray: str | None = None, ray_actors: int | None = None) -> PredictResult:
    """Predict every record of `input` (.npz/.npy/Parquet file or directory) into chunk files in
    `output`; resumes a killed job. `on_error="skip"` reports bad records and goes on; "fail"
    stops at the first. `ray` ("local", or a cluster address) runs the chunks on Ray Data."""
    if on_error not in ON_ERROR:
        raise DataError(f"--on-error {on_error!r}: expected skip or fail")
    if chunk_size < 1 or (batch_size is not None and batch_size < 1):
        raise DataError("--chunk-size and --batch-size must be at least 1")
    from ..runtime import check_runs_here, read_artifact

    art = read_artifact(artifact)
    if ray is None:
        check_runs_here(art)  # on Ray, the workers' machines must run it, not necessarily this one
    source = RecordSource(input, art.inputs)
    assert art.manifest.library is not None
    job = PredictJob(str(Path(artifact).resolve()), art.manifest.library.sha256, str(Path(input).resolve()),
                     tuple(source.fingerprint()), source.total, chunk_size, tuple(s.name for s in art.outputs))
    out = Path(output)
    _prepare(out, job, overwrite)
    pending = [c for c in range(job.chunks) if not chunk_path(out, c).exists()]
    done_before = job.chunks - len(pending)
    started = time.monotonic()
    bar = _bar(job, out, progress)
    try:
        if ray is not None:
            from .ray_job import run_on_ray

            run_on_ray(job, pending, out, batch_size, on_error, ray, ray_actors, bar)
            where = f"Ray ({ray})"
        else:
            from ..runtime import Predictor

            predictor = Predictor(art)
            for chunk in pending:
                ctrl_c.check()  # a Ctrl-C whose KeyboardInterrupt got lost still ends the job
                result = run_chunk(predictor, source, job, out, chunk, batch_size, on_error)
                if bar is not None:
                    bar.update(result.records)
            where = "this machine"
    finally:
        if bar is not None:
            bar.close()
    results = [read_chunk_result(out, c) for c in range(job.chunks)]
    errors = [e for r in results for e in r.errors]
    return PredictResult(out, job.records, sum(r.ok for r in results), errors, job.chunks, done_before,
                         round(time.monotonic() - started, 2), where)


def run_chunk(predictor, source: RecordSource, job: PredictJob, out: Path, chunk: int, batch_size: int | None,
              on_error: str) -> ChunkResult:
    """Predict one chunk and publish its file (the step local and Ray jobs share)."""
    start, stop = job.chunk_range(chunk)
    batch = source.read(start, stop)
    errors = [RecordError(i, why) for i, why in sorted(batch.bad.items())]
    _fail_on(errors, on_error)
    step = (batch_size or default_batch_size(predictor)) if predictor.batch_dim else 1
    parts: list[list[np.ndarray]] = []
    index: list[np.ndarray] = []
    for lo in range(0, len(batch.index), step):
        arrays = [a[lo:lo + step] for a in batch.arrays]
        numbers = batch.index[lo:lo + step]
        try:
            parts.append(_run(predictor, arrays))
            index.append(numbers)
            continue
        except Exception as err:  # noqa: BLE001 - find the records that fail, run the others
            if len(numbers) == 1:
                errors.append(RecordError(int(numbers[0]), _describe(err)))
                _fail_on(errors[-1:], on_error)
                continue
        for row, number in enumerate(numbers):
            try:
                parts.append(_run(predictor, [a[row:row + 1] for a in arrays]))
                index.append(numbers[row:row + 1])
            except Exception as err:  # noqa: BLE001
                errors.append(RecordError(int(number), _describe(err)))
                _fail_on(errors[-1:], on_error)
    outputs = {spec.name: (np.concatenate([p[i] for p in parts]) if parts else
                           np.empty((0,) + tuple(d if isinstance(d, int) else 0 for d in spec.shape[1:]), spec.dtype))
               for i, spec in enumerate(predictor.outputs)}
    errors.sort(key=lambda e: e.index)
    _write_chunk(out, chunk, outputs, np.concatenate(index) if index else np.empty(0, np.int64), errors)
    return ChunkResult(chunk, stop - start, sum(len(i) for i in index), tuple(errors))


def default_batch_size(predictor) -> int:
    """Rows per run: the largest compiled batch bucket; 32 for a dynamic batch dim without buckets."""
    buckets = predictor.artifact.manifest.batch_buckets
    return buckets.largest if buckets is not None else 32


def read_chunk_result(out: Path, chunk: int) -> ChunkResult:
    with np.load(chunk_path(out, chunk), allow_pickle=False) as data:
        errors = tuple(RecordError.from_json(e) for e in json.loads(str(data["_errors"])))
        ok = int(data["_index"].shape[0])
    return ChunkResult(chunk, ok + len(errors), ok, errors)


def read_outputs(output: str | os.PathLike) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All outputs of a finished job, in record order: {output name: array}, and the record numbers
    they belong to (records that failed are absent)."""
    out = Path(output)
    try:
        job = PredictJob.from_json(json.loads((out / JOB).read_text()))
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{out}: not the output of `tvmopt predict` ({err})") from err
    missing = [c for c in range(job.chunks) if not chunk_path(out, c).exists()]
    if missing:
        raise DataError(f"{out}: the job is not finished ({len(missing)} of {job.chunks} chunks missing); "
                        "run the same `tvmopt predict` command again to finish it")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in job.outputs}
    index = []
    for chunk in range(job.chunks):
        with np.load(chunk_path(out, chunk), allow_pickle=False) as data:
            for name in job.outputs:
                parts[name].append(data[name])
            index.append(data["_index"])
    return {name: np.concatenate(p) for name, p in parts.items()}, np.concatenate(index)


# --------------------------------------------------------------------------- internals


def _run(predictor, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return predictor.run_arrays(bind_inputs(predictor.inputs, arrays, None))


def _describe(err: Exception) -> str:
    if isinstance(err, InputSpecError):
        return str(err)
    return f"the model failed: {last_line(err)}"


def _fail_on(errors: Sequence[RecordError], on_error: str) -> None:
    if errors and on_error == "fail":
        first = errors[0]
        raise DataError(f"record {first.index}: {first.message} (--on-error skip reports bad records and goes on; "
                        "finished chunks are kept)")


def _prepare(out: Path, job: PredictJob, overwrite: bool) -> None:
    """Create `out`, or check that it holds this same job (resume); clear stale partial files."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    job_file = out / JOB
    if job_file.exists():
        try:
            previous = PredictJob.from_json(json.loads(job_file.read_text()))
            why = job.differs_from(previous)
        except (ValueError, KeyError, TypeError) as err:
            why = f"its {JOB} is unreadable ({err})"
        if why and not overwrite:
            raise DataError(f"{out}: holds the outputs of another job ({why}); pass --overwrite to start over, "
                            "or use another --output")
        if why:
            for stale in out.glob("part-*.npz"):
                stale.unlink()
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not the output of `tvmopt predict`; use an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    for partial in out.glob(".part-*"):
        partial.unlink()
    _write_atomic(job_file, (json.dumps(job.to_json(), indent=2) + "\n").encode())


def _write_chunk(out: Path, chunk: int, outputs: dict[str, np.ndarray], index: np.ndarray,
                 errors: Sequence[RecordError]) -> None:
    final = chunk_path(out, chunk)
    tmp = out / f".{final.name}.tmp-{os.getpid()}.npz"
    np.savez(tmp, **outputs, _index=index.astype(np.int64), _errors=np.array(json.dumps([e.to_json() for e in errors])))
    with open(tmp, "rb") as stream:
        os.fsync(stream.fileno())
    os.replace(tmp, final)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _bar(job: PredictJob, out: Path, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    done = sum(job.chunk_range(c)[1] - job.chunk_range(c)[0] for c in range(job.chunks)
               if chunk_path(out, c).exists())
    return tqdm(total=job.records, initial=done, desc="predict", unit="rec", unit_scale=True, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, smoothing=0.1)

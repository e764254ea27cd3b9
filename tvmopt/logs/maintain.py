"""Maintain tuning logs: merge logs, prune to the K best records per workload (atomically), and
export / import one portable file per target ("tvmopt-log/1") so records travel between machines."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import tvm_ffi

from .._compat import TVM_VERSION, ms
from .._files import ScratchDir, exchange_dirs, make_dirs, write_atomic
from ..errors import LogError
from .sessions import latest, read_sessions
from .store import (BINDINGS_FILE, RECORD_FILE, SESSIONS_DIR, WORKLOAD_FILE, LogDatabase, binding_line, dumps, log_lock,
                    open_log, record_json)
from .workload import record_seconds, valid_run_seconds, workload_hash

if TYPE_CHECKING:
    import tvm

EXPORT_FORMAT = "tvmopt-log/1"

__all__ = ["merge", "prune", "export_log", "import_log", "EXPORT_FORMAT", "MergeReport", "PruneReport",
           "ExportReport"]


@dataclass(frozen=True)
class MergeReport:
    log: str
    records_added: int
    duplicates_skipped: int
    records: int
    workloads: int
    target: str = ""
    sessions_added: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PruneReport:
    log: str
    records_before: int
    records_after: int
    workloads_before: int
    workloads_after: int
    top_k: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExportReport:
    file: str
    target: str
    workloads: int
    records: int
    sessions: int

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- merge


def merge(sources: list[str | os.PathLike], dest: str | os.PathLike) -> MergeReport:
    """Add every record of `sources` to the log `dest` (created if missing); duplicates are skipped.

    Records keep their own target and run times; `dest` stays a valid MetaSchedule log, written
    through the same locked, fsynced appends as a tuning session (so a merge into a log that is
    being tuned is safe). Session records are copied beside it.
    """
    readers = [open_log(source) for source in sources]  # every source checked before dest is touched
    target = LogDatabase(Path(dest))
    added = 0
    for source, database in zip(sources, readers):
        before = len(target)
        for record in database.get_all_tuning_records():
            target.commit_tuning_record(record)
        added += len(target) - before
        for session in Path(source, SESSIONS_DIR).glob("*.json"):
            copy = Path(dest, SESSIONS_DIR, session.name)
            if not copy.exists():
                write_atomic(copy, session.read_text())
    return MergeReport(str(dest), added, target.duplicates_skipped, len(target), target.num_workloads)


# --------------------------------------------------------------------------- prune


def _write_log(directory: Path, kept: list[tuple[object, list]]) -> None:
    """Write (workload, records) pairs as MetaSchedule's two JSON-lines files and their bindings, fsynced."""
    lines: dict[str, list[str]] = {WORKLOAD_FILE: [], RECORD_FILE: [], BINDINGS_FILE: []}
    for index, (workload, records) in enumerate(kept):
        lines[WORKLOAD_FILE].append(dumps(workload.as_json()))
        digest = workload_hash(workload.mod)
        for record in records:
            line = dumps([index, record_json(record)])
            lines[RECORD_FILE].append(line)
            lines[BINDINGS_FILE].append(binding_line(line, digest))
    for name, content in lines.items():
        with open(directory / name, "w") as stream:
            stream.write("".join(line + "\n" for line in content))
            stream.flush()
            os.fsync(stream.fileno())


def prune(log_dir: str | os.PathLike, top_k: int, output: str | os.PathLike | None = None,
          keep_only: "Sequence[tvm.IRModule] | None" = None) -> PruneReport:
    """Keep the `top_k` fastest valid records of each workload (failures dropped); write them to
    `output` (a new log directory) or replace `log_dir` in one atomic swap. With `keep_only` (the
    tasks of the models the log serves, tuning.task_modules), workloads equal to none of them are
    dropped too: the records a changed compiler no longer asks for.

    Pruning makes later tuning re-measure dropped candidates, but keeps the log small and fast to load.
    """
    if top_k < 1:
        raise LogError(f"--top-k must be at least 1, got {top_k}")
    source = Path(log_dir)
    dest = Path(output) if output else source
    if output and dest.exists() and any(dest.iterdir()):
        raise LogError(f"{dest}: already exists and is not empty; prune writes a new log "
                       "(or omit -o to prune in place)")
    open_log(source)  # a clear error if it is not a log
    live = [s.file for s in read_sessions(source)[0] if s.is_alive() and s.pid != os.getpid()]
    if not output and live:
        raise LogError(f"{source}: a tuning session is still running on it ({live[0]}); "
                       "prune after it ends, or prune into a new log with -o")
    make_dirs(dest.parent, LogError, "choose another -o")
    scratch = ScratchDir(f".{dest.name}.prune-", dest.parent)
    tmp = scratch.path
    try:
        with log_lock(source) if not output else contextlib.nullcontext():
            database = LogDatabase(source, readonly=True)
            kept, before = [], len(database)
            for mod in database.workload_modules():
                if keep_only is not None and not any(tvm_ffi.structural_equal(mod, task) for task in keep_only):
                    continue
                timed = [(record_seconds(r.run_secs), r) for r in database.get_all_records_of(mod)
                         if valid_run_seconds(r.run_secs)]
                timed.sort(key=lambda pair: pair[0])
                if timed:
                    kept.append((database.commit_workload(mod), [r for _, r in timed[:top_k]]))
            _write_log(tmp, kept)
            if (source / SESSIONS_DIR).is_dir():
                shutil.copytree(source / SESSIONS_DIR, tmp / SESSIONS_DIR)
            os.chmod(tmp, source.stat().st_mode & 0o7777)
            if output:
                if dest.exists():
                    dest.rmdir()  # checked empty above
                os.replace(tmp, dest)
            else:
                exchange_dirs(tmp, source)  # tmp now holds the old log
        after = sum(len(records) for _, records in kept)
        return PruneReport(str(dest), before, after, database.num_workloads, len(kept), top_k)
    finally:
        scratch.release()  # gone already if it became the output; else the old log or a failed attempt


# --------------------------------------------------------------------------- export / import


def export_log(log_dir: str | os.PathLike, path: str | os.PathLike) -> ExportReport:
    """Write one target's log (workloads, every record, session records) as one portable JSON file."""
    source = Path(log_dir)
    database = open_log(source)
    runs, _ = read_sessions(source)
    newest = latest(runs)
    workloads, records = [], []
    for index, mod in enumerate(database.workload_modules()):
        workload = database.commit_workload(mod)
        workloads.append(workload.as_json())
        records += [[index, record_json(record)] for record in database.get_all_records_of(mod)]
    data = {"format": EXPORT_FORMAT, "target": newest.target if newest else source.name,
            "target_dict": newest.target_dict if newest else None, "tvm_version": TVM_VERSION,
            "workloads": workloads, "records": records,
            "sessions": [s.to_json() | {"file": s.file} for s in runs]}
    write_atomic(path, dumps(data) + "\n")
    return ExportReport(str(path), data["target"], len(workloads), len(records), len(runs))


def _read_export(path: Path) -> dict:
    expected = (f"expected a JSON object with format '{EXPORT_FORMAT}', target, workloads and records, "
                "as written by `tvmopt logs export`")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise LogError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise LogError(f"{path}: cannot read it ({err}); {expected}") from err
    except ValueError as err:
        raise LogError(f"{path}: not valid JSON ({err}); {expected}") from err
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise LogError(f"{path}: not a tvmopt log export (format {found!r}); {expected}")
    target = data.get("target")
    if not isinstance(target, str) or not target or "/" in target or target.startswith("."):
        raise LogError(f"{path}: bad target name {target!r}; {expected}")
    if not isinstance(data.get("workloads"), list) or not isinstance(data.get("records"), list):
        raise LogError(f"{path}: 'workloads' and 'records' must be lists; {expected}")
    return data


def import_log(path: str | os.PathLike, log_root: str | os.PathLike = "tuning_logs") -> MergeReport:
    """Merge an exported file into `log_root`/<target> (created if missing); records already there are skipped."""
    source = Path(path)
    data = _read_export(source)
    try:
        workloads = [ms.database.Workload.from_json(w) for w in data["workloads"]]
        records = [ms.database.TuningRecord.from_json(r, workloads[int(i)]) for i, r in data["records"]]
    except Exception as err:  # noqa: BLE001 - TVM raises several kinds on bad JSON forms
        raise LogError(f"{source}: a workload or record is not in MetaSchedule's JSON form "
                       f"({type(err).__name__}); the file is corrupt or from an incompatible TVM") from err
    dest = Path(log_root) / data["target"]
    database = LogDatabase(dest)
    before = len(database)
    for record in records:
        database.commit_tuning_record(record)
    copied = 0
    for session in data.get("sessions") or []:
        if not isinstance(session, dict) or "file" not in session:
            continue
        name = Path(str(session["file"])).name
        target = dest / SESSIONS_DIR / name
        if name.endswith(".json") and not target.exists():
            write_atomic(target, json.dumps({k: v for k, v in session.items() if k != "file"}, indent=2) + "\n")
            copied += 1
    return MergeReport(str(dest), len(database) - before, database.duplicates_skipped, len(database),
                       database.num_workloads, target=data["target"], sessions_added=copied)

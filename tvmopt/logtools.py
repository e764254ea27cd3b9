"""Maintain tuning logs: prune to the K best records per workload (atomically), and export / import
one portable file per target ("tvmopt-log/1") so records travel between machines."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from ._tvm import TVM_VERSION, ms, valid_run_seconds
from .errors import TvmoptError
from .logs import _open, sessions
from .tuning.database import LOCK_FILE, RECORD_FILE, WORKLOAD_FILE, LogDatabase

EXPORT_FORMAT = "tvmopt-log/1"

__all__ = ["prune", "export_log", "import_log", "EXPORT_FORMAT"]


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _mean_secs(record) -> float | None:
    """Mean run time of a valid record, None for a failed one."""
    secs = valid_run_seconds(record.run_secs)
    return sum(secs) / len(secs) if secs else None


# --------------------------------------------------------------------------- prune


def _write_log(directory: Path, kept: list[tuple[object, list]]) -> None:
    """Write (workload, records) pairs as MetaSchedule's two JSON-lines files, fsynced."""
    lines = {WORKLOAD_FILE: [], RECORD_FILE: []}
    for index, (workload, records) in enumerate(kept):
        lines[WORKLOAD_FILE].append(_dumps(workload.as_json()))
        lines[RECORD_FILE] += [_dumps([index, record.as_json()]) for record in records]
    for name, content in lines.items():
        with open(directory / name, "w") as stream:
            stream.write("".join(line + "\n" for line in content))
            stream.flush()
            os.fsync(stream.fileno())


def _live_sessions(log_dir: Path) -> list[str]:
    """Session files of this log whose tuning process is still running on this machine."""
    live = []
    for session in sessions(log_dir):
        pid = session.get("pid")
        if session.get("status") == "running" and isinstance(pid, int) and pid != os.getpid():
            try:
                os.kill(pid, 0)
                live.append(session["file"])
            except ProcessLookupError:
                pass
            except PermissionError:
                live.append(session["file"])
    return live


@contextlib.contextmanager
def _log_lock(log_dir: Path):
    """The lock tuning sessions take for each append: nobody appends while we read and swap."""
    with open(log_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _swap_dirs(new: Path, old: Path) -> None:
    """Exchange two directories atomically (Linux renameat2 RENAME_EXCHANGE), else by two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        if libc.renameat2(at_fdcwd, bytes(new), at_fdcwd, bytes(old), rename_exchange) == 0:
            return
    except (AttributeError, OSError):
        pass
    aside = old.with_name(f".{old.name}.pruned-{os.getpid()}")
    os.rename(old, aside)
    os.rename(new, old)
    os.rename(aside, new)


def prune(log_dir: str | os.PathLike, top_k: int, output: str | os.PathLike | None = None) -> dict:
    """Keep the `top_k` fastest valid records of each workload (failures dropped); write them to
    `output` (a new log directory) or replace `log_dir` in one atomic swap.

    Pruning makes later tuning re-measure dropped candidates, but keeps the log small and fast to load.
    """
    if top_k < 1:
        raise TvmoptError(f"--top-k must be at least 1, got {top_k}")
    source = Path(log_dir)
    dest = Path(output) if output else source
    if output and dest.exists() and any(dest.iterdir()):
        raise TvmoptError(f"{dest}: already exists and is not empty; prune writes a new log "
                          "(or omit -o to prune in place)")
    if not output and _live_sessions(source):
        raise TvmoptError(f"{source}: a tuning session is still running on it ({_live_sessions(source)[0]}); "
                          "prune after it ends, or prune into a new log with -o")
    _open(source)  # a clear error if it is not a log
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.prune-"))
    try:
        with _log_lock(source) if not output else contextlib.nullcontext():
            database = LogDatabase(source, readonly=True)
            kept, before = [], len(database)
            for mod in database.workload_modules():
                timed = [(t, r) for r in database.get_all_records_of(mod) if (t := _mean_secs(r)) is not None]
                timed.sort(key=lambda pair: pair[0])
                if timed:
                    kept.append((database.commit_workload(mod), [r for _, r in timed[:top_k]]))
            _write_log(tmp, kept)
            if (source / "sessions").is_dir():
                shutil.copytree(source / "sessions", tmp / "sessions")
            os.chmod(tmp, source.stat().st_mode & 0o7777)
            if output:
                if dest.exists():
                    dest.rmdir()  # checked empty above
                os.replace(tmp, dest)
            else:
                _swap_dirs(tmp, source)  # tmp now holds the old log
        after = sum(len(records) for _, records in kept)
        return {"log": str(dest), "records_before": before, "records_after": after,
                "workloads_before": database.num_workloads, "workloads_after": len(kept), "top_k": top_k}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- export / import


def export_log(log_dir: str | os.PathLike, path: str | os.PathLike) -> dict:
    """Write one target's log (workloads, every record, session records) as one portable JSON file."""
    source = Path(log_dir)
    database = _open(source)
    runs = [s for s in sessions(source) if s.get("status") != "unreadable"]
    with_target = [s for s in runs if "target" in s]
    latest = max(with_target, key=lambda s: s.get("started", "")) if with_target else {}
    workloads, records = [], []
    for index, mod in enumerate(database.workload_modules()):
        workload = database.commit_workload(mod)
        workloads.append(workload.as_json())
        records += [[index, record.as_json()] for record in database.get_all_records_of(mod)]
    data = {"format": EXPORT_FORMAT, "target": latest.get("target", source.name),
            "target_dict": latest.get("target_dict"), "tvm_version": TVM_VERSION,
            "workloads": workloads, "records": records, "sessions": runs}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(_dumps(data) + "\n")
    os.replace(tmp, out)
    return {"file": str(out), "target": data["target"], "workloads": len(workloads), "records": len(records),
            "sessions": len(runs)}


def _read_export(path: Path) -> dict:
    expected = (f"expected a JSON object with format '{EXPORT_FORMAT}', target, workloads and records, "
                "as written by `tvmopt logs export`")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise TvmoptError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise TvmoptError(f"{path}: cannot read it ({err}); {expected}") from err
    except ValueError as err:
        raise TvmoptError(f"{path}: not valid JSON ({err}); {expected}") from err
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise TvmoptError(f"{path}: not a tvmopt log export (format {found!r}); {expected}")
    target = data.get("target")
    if not isinstance(target, str) or not target or "/" in target or target.startswith("."):
        raise TvmoptError(f"{path}: bad target name {target!r}; {expected}")
    if not isinstance(data.get("workloads"), list) or not isinstance(data.get("records"), list):
        raise TvmoptError(f"{path}: 'workloads' and 'records' must be lists; {expected}")
    return data


def import_log(path: str | os.PathLike, log_root: str | os.PathLike = "tuning_logs") -> dict:
    """Merge an exported file into `log_root`/<target> (created if missing); records already there are skipped."""
    source = Path(path)
    data = _read_export(source)
    try:
        workloads = [ms.database.Workload.from_json(w) for w in data["workloads"]]
        records = [ms.database.TuningRecord.from_json(r, workloads[int(i)]) for i, r in data["records"]]
    except Exception as err:  # noqa: BLE001 - TVM raises several kinds on bad JSON forms
        raise TvmoptError(f"{source}: a workload or record is not in MetaSchedule's JSON form "
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
        target = dest / "sessions" / name
        if name.endswith(".json") and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps({k: v for k, v in session.items() if k != "file"}, indent=2) + "\n")
            copied += 1
    return {"log": str(dest), "target": data["target"], "records_added": len(database) - before,
            "duplicates_skipped": database.duplicates_skipped, "records": len(database),
            "workloads": database.num_workloads, "sessions_added": copied}

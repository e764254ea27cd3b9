"""The tuning log on disk: MetaSchedule's two JSON-lines files, written so no measurement is lost.

Same on-disk format as MetaSchedule's JSONDatabase (database_workload.json: one workload per
line; database_tuning_record.json: `[workload_index, record]` per measured candidate), so a
log stays readable by stock TVM. What this module adds:
- every record is appended and fsync'd the moment it is committed;
- writers hold `log_lock` (an exclusive flock on `<log>/.lock`) for each append and first read
  what other sessions appended, so workload indices stay consistent across concurrent sessions;
  maintenance that rewrites a log (prune) takes the same lock;
- a truncated or corrupt line (a writer killed mid-line) is skipped with a warning; a writer
  holding the lock cuts a torn last line off before appending, so stock TVM can read the file;
- a candidate whose trace is already in the log is not written twice.
Queries are served by an in-memory MetaSchedule MemoryDatabase.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import tvm

from .._compat import derived_object, ms
from ..errors import LogError
from .workload import record_seconds, valid_run_seconds, workload_hash

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
LOCK_FILE = ".lock"
SESSIONS_DIR = "sessions"

log = logging.getLogger("tvmopt.logs")


def dumps(obj) -> str:
    """One JSON line, compact as MetaSchedule writes them."""
    return json.dumps(obj, separators=(",", ":"))


def is_log(path: str | os.PathLike) -> bool:
    return (Path(path) / WORKLOAD_FILE).is_file()


@contextlib.contextmanager
def log_lock(log_dir: str | os.PathLike) -> Iterator[None]:
    """The log's writer lock: every append and every rewrite of `log_dir` happens inside it."""
    with open(Path(log_dir) / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record_json(record) -> list:
    """A TuningRecord as MetaSchedule's (C++) JSONDatabase writes it.

    Workaround: MetaSchedule's Python TuningRecord.as_json cannot encode the IndexMap that a
    TransformLayout instruction carries (its _json_de_tvm raises "Not supported type"), and every
    record whose weights MetaSchedule's RewriteLayout re-laid-out has one. The C++ JSONDumps
    (database_utils.cc) writes an IndexMap as its JSON-graph string, which trace replay parses
    back; this does the same, so stock TVM reads these lines too.
    """
    import tvm_ffi

    return _plain(tvm_ffi.get_global_func("s_tir.meta_schedule.TuningRecordAsJSON")(record))


def _plain(obj):
    import tvm_ffi

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tvm.tirx.IntImm):
        return bool(obj.value) if str(obj.ty) == "bool" else int(obj.value)  # 0.27: .ty, not .dtype
    if isinstance(obj, tvm.tirx.FloatImm):
        return float(obj.value)
    if isinstance(obj, tvm_ffi.Array) or isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, tvm_ffi.Map) or isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if type(obj).__name__ == "IndexMap":
        return tvm_ffi.serialization.to_json_graph_str(obj, {"tvm_version": tvm.__version__})
    raise TypeError(f"cannot write {type(obj).__name__} into a tuning record")


def trace_key(record_json: list) -> str:
    """Identity of a measured candidate: its schedule trace with all sampling decisions."""
    return dumps(record_json[0])


class _LineReader:
    """Reads complete JSON lines appended to a file since the last call."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.lineno = 0

    def read_new(self, can_repair: bool, warn) -> Iterator[tuple[int, object]]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        end = data.rfind(b"\n") + 1
        complete, tail = data[:end], data[end:]
        for raw in complete.splitlines():
            self.lineno += 1
            if not raw.strip():
                continue
            try:
                yield self.lineno - 1, json.loads(raw)
            except ValueError:
                warn(f"{self.path.name} line {self.lineno}: corrupt JSON, skipped")
                yield self.lineno - 1, None
        self.offset += end
        if tail.strip():
            # A torn last line: its writer died mid-write (writers hold the lock while writing).
            if can_repair:
                warn(f"{self.path.name} line {self.lineno + 1}: truncated last line removed (an earlier session "
                     "was killed mid-write)")
                with open(self.path, "r+b") as stream:
                    stream.truncate(self.offset)
            else:
                warn(f"{self.path.name} line {self.lineno + 1}: truncated last line skipped")

    def append(self, line: str) -> int:
        with open(self.path, "ab") as stream:
            stream.write(line.encode() + b"\n")
            stream.flush()
            os.fsync(stream.fileno())
        self.offset = self.path.stat().st_size
        self.lineno += 1
        return self.lineno - 1


def open_log(log_dir: str | os.PathLike) -> "LogDatabase":
    """A read-only view of an existing log, or LogError naming the directory."""
    path = Path(log_dir)
    if not is_log(path):
        raise LogError(f"{path}: not a tuning log (no {WORKLOAD_FILE}); logs live in tuning_logs/<target>/")
    return LogDatabase(path, readonly=True)


@derived_object
class LogDatabase(ms.database.PyDatabase):
    """A MetaSchedule database over one target's log directory (see module docstring)."""

    def __init__(self, log_dir: str | os.PathLike, readonly: bool = False):
        super().__init__()
        self.dir = Path(log_dir)
        self.readonly = readonly
        if not readonly:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.warnings: list[str] = []
        self.duplicates_skipped = 0
        self._mem = ms.database.MemoryDatabase(module_equality="structural")
        self._workloads = _LineReader(self.dir / WORKLOAD_FILE)
        self._records = _LineReader(self.dir / RECORD_FILE)
        self._by_index: dict[int, object] = {}  # workload line -> Workload in self._mem (None: bad line)
        self._canonical: list[tuple[int, object]] = []  # (first line index, Workload) per distinct workload
        self._traces: dict[int, set[str]] = {}  # canonical index -> trace keys measured
        self._valid: dict[int, int] = {}  # canonical index -> number of valid records
        with self._locked():
            self._refresh()

    # ----------------------------------------------------------------- file side

    @contextlib.contextmanager
    def _locked(self):
        if self.readonly:
            yield
            return
        with log_lock(self.dir):
            yield

    def _warn(self, message: str) -> None:
        message = f"{self.dir}: {message}"
        self.warnings.append(message)
        log.warning(message)

    def _canonical_index(self, workload) -> int | None:
        for index, known in self._canonical:
            if known.same_as(workload):
                return index
        return None

    def _refresh(self) -> None:
        """Load lines appended since the last refresh (by this or any other session)."""
        repair = not self.readonly
        for index, obj in self._workloads.read_new(repair, self._warn):
            workload = None
            if obj is not None:
                try:
                    parsed = ms.database.Workload.from_json(obj)
                    workload = self._mem.commit_workload(parsed.mod)
                except Exception as err:  # noqa: BLE001 - a bad line must never crash a session
                    self._warn(f"{WORKLOAD_FILE} line {index + 1}: unreadable workload ({type(err).__name__}), skipped")
            self._by_index[index] = workload
            if workload is not None and self._canonical_index(workload) is None:
                self._canonical.append((index, workload))
        for lineno, obj in self._records.read_new(repair, self._warn):
            if obj is None:
                continue
            try:
                workload_index, record_json = obj
                workload = self._by_index[int(workload_index)]
                if workload is None:
                    continue
                record = ms.database.TuningRecord.from_json(record_json, workload)
            except Exception as err:  # noqa: BLE001
                self._warn(f"{RECORD_FILE} line {lineno + 1}: unreadable record ({type(err).__name__}), skipped")
                continue
            self._remember(workload, record_json, record)

    def _remember(self, workload, record_json, record) -> bool:
        canonical = self._canonical_index(workload)
        key = trace_key(record_json)
        seen = self._traces.setdefault(canonical, set())
        if key in seen:
            return False
        seen.add(key)
        if valid_run_seconds(record_json[1] if len(record_json) > 1 else None):
            self._valid[canonical] = self._valid.get(canonical, 0) + 1
        self._mem.commit_tuning_record(record)
        return True

    # ----------------------------------------------------------------- queries for tvmopt

    def trials_for(self, mod: tvm.IRModule) -> int:
        """Candidates of this workload already measured in the log (failed ones included)."""
        if not self._mem.has_workload(mod):
            return 0
        canonical = self._canonical_index(self._mem.commit_workload(mod))
        return len(self._traces.get(canonical, ()))

    def valid_trials_for(self, mod: tvm.IRModule) -> int:
        if not self._mem.has_workload(mod):
            return 0
        return self._valid.get(self._canonical_index(self._mem.commit_workload(mod)), 0)

    def best_record(self, mod: tvm.IRModule):
        """The record ApplyDatabase would apply for this workload (fastest valid), or None."""
        if not self._mem.has_workload(mod):
            return None
        top = self._mem.get_top_k(self._mem.commit_workload(mod), 1)
        return top[0] if top and valid_run_seconds(top[0].run_secs) else None

    def best_seconds(self, mod: tvm.IRModule) -> float | None:
        """Run time of the best valid record for this workload, or None."""
        best = self.best_record(mod)
        return record_seconds(best.run_secs) if best is not None else None

    def get_all_records_of(self, mod: tvm.IRModule) -> list:
        """Every record of this workload, failed ones included."""
        if not self._mem.has_workload(mod):
            return []
        workload = self._mem.commit_workload(mod)
        return [r for r in self._mem.get_all_tuning_records() if r.workload.same_as(workload)]

    def measured_hashes(self, mods: list[tvm.IRModule]) -> set[int]:
        """Hashes of the scheduled modules this log already measured for these workloads."""
        from .workload import record_hash

        return {record_hash(record) for mod in mods for record in self.get_all_records_of(mod)}

    def workload_modules(self) -> list[tvm.IRModule]:
        """The distinct workloads in the log, in the order they were first logged."""
        return [workload.mod for _, workload in self._canonical]

    def workloads_by_hash(self) -> dict[str, tvm.IRModule]:
        """Workload hash -> workload module, in log order."""
        return {workload_hash(mod): mod for mod in self.workload_modules()}

    @property
    def num_workloads(self) -> int:
        return len(self._canonical)

    def add_fallback(self, other: "LogDatabase") -> list[str]:
        """Adopt, in memory only, the records of workloads this log lacks from `other` (e.g. a
        shipped reference log of a compatible target); returns the adopted workloads' hashes."""
        if not self.readonly:
            raise ValueError("fallback records are only for read-only (compile-time) databases")
        adopted = []
        for mod in other.workload_modules():
            if self._mem.has_workload(mod):
                continue
            workload = self._mem.commit_workload(mod)
            self._canonical.append((-1 - len(self._canonical), workload))  # not a line of this log
            for record in other.get_all_records_of(mod):
                copy = ms.database.TuningRecord(record.trace, workload, record.run_secs, record.target,
                                                record.args_info)
                self._remember(workload, record_json(copy), copy)
            adopted.append(workload_hash(mod))
        return adopted

    # ----------------------------------------------------------------- PyDatabase interface

    def has_workload(self, mod: tvm.IRModule) -> bool:
        return self._mem.has_workload(mod)

    def commit_workload(self, mod: tvm.IRModule):
        if self._mem.has_workload(mod):
            return self._mem.commit_workload(mod)
        if self.readonly:
            return self._mem.commit_workload(mod)
        with self._locked():
            self._refresh()  # another session may have added it meanwhile
            if self._mem.has_workload(mod):
                return self._mem.commit_workload(mod)
            workload = self._mem.commit_workload(mod)
            index = self._workloads.append(dumps(workload.as_json()))
            self._by_index[index] = workload
            self._canonical.append((index, workload))
            return workload

    def commit_tuning_record(self, record) -> None:
        as_json = record_json(record)
        if self.readonly:
            self._remember(record.workload, as_json, record)
            return
        if self._canonical_index(record.workload) is None:
            self.commit_workload(record.workload.mod)
        with self._locked():
            self._refresh()
            workload = self._mem.commit_workload(record.workload.mod)
            canonical = self._canonical_index(workload)
            if trace_key(as_json) in self._traces.get(canonical, ()):
                self.duplicates_skipped += 1
                return
            self._records.append(dumps([canonical, as_json]))
            self._remember(workload, as_json, record)

    def get_top_k(self, workload, top_k: int) -> list:
        return list(self._mem.get_top_k(workload, top_k))

    def get_all_tuning_records(self) -> list:
        return list(self._mem.get_all_tuning_records())

    def __len__(self) -> int:
        return len(self._mem)

"""Tuning log: MetaSchedule's two JSON-lines files, written so that no measurement is lost.

Same on-disk format as MetaSchedule's JSONDatabase (database_workload.json: one workload per
line; database_tuning_record.json: `[workload_index, record]` per measured candidate), so a
log stays readable by stock TVM. What this class adds:
- every record is appended and fsync'd the moment it is committed;
- writers take an exclusive flock on `<log>/.lock` for each append and first read what other
  sessions appended, so workload indices stay consistent across concurrent sessions;
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

from .. import _tvm
from .._tvm import derived_object, ms

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
LOCK_FILE = ".lock"

log = logging.getLogger("tvmopt.tuning")


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _measured_ok(record_json: list) -> bool:
    """A record that ran: MetaSchedule stores 1e10 s for candidates that failed to build/run."""
    run_secs = record_json[1] if len(record_json) > 1 else None
    return bool(run_secs) and any(s is not None and float(s) < 1e9 for s in run_secs)


def trace_key(record_json: list) -> str:
    """Identity of a measured candidate: its schedule trace with all sampling decisions."""
    return _dumps(record_json[0])


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
                warn(f"{self.path.name} line {self.lineno + 1}: truncated last line removed (an earlier session was killed mid-write)")
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
        self._valid: dict[int, int] = {}  # canonical index -> number of valid (finite) records
        with self._locked():
            self._refresh()

    # ----------------------------------------------------------------- file side

    @contextlib.contextmanager
    def _locked(self):
        if self.readonly:
            yield
            return
        with open(self.dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

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
        if _measured_ok(record_json):
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

    def best_seconds(self, mod: tvm.IRModule) -> float | None:
        """Mean run time of the best valid record for this workload, or None."""
        if not self._mem.has_workload(mod):
            return None
        top = self._mem.get_top_k(self._mem.commit_workload(mod), 1)
        if not top:
            return None
        secs = [float(s) for s in top[0].run_secs]
        return sum(secs) / len(secs)

    def get_all_records_of(self, mod: tvm.IRModule) -> list:
        """Every record of this workload, failed ones included."""
        if not self._mem.has_workload(mod):
            return []
        workload = self._mem.commit_workload(mod)
        return [r for r in self._mem.get_all_tuning_records() if r.workload.same_as(workload)]

    def workload_modules(self) -> list[tvm.IRModule]:
        """The distinct workloads in the log, in the order they were first logged."""
        return [workload.mod for _, workload in self._canonical]

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
                self._remember(workload, copy.as_json(), copy)
            adopted.append(_tvm.workload_hash(mod))
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
            index = self._workloads.append(_dumps(workload.as_json()))
            self._by_index[index] = workload
            self._canonical.append((index, workload))
            return workload

    def commit_tuning_record(self, record) -> None:
        record_json = record.as_json()
        if self.readonly:
            self._remember(record.workload, record_json, record)
            return
        if self._canonical_index(record.workload) is None:
            self.commit_workload(record.workload.mod)
        with self._locked():
            self._refresh()
            workload = self._mem.commit_workload(record.workload.mod)
            canonical = self._canonical_index(workload)
            if trace_key(record_json) in self._traces.get(canonical, ()):
                self.duplicates_skipped += 1
                return
            self._records.append(_dumps([canonical, record_json]))
            self._remember(workload, record_json, record)

    def get_top_k(self, workload, top_k: int) -> list:
        return list(self._mem.get_top_k(workload, top_k))

    def get_all_tuning_records(self) -> list:
        return list(self._mem.get_all_tuning_records())

    def __len__(self) -> int:
        return len(self._mem)

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
- a candidate whose trace is already in the log is not written twice;
- every record is bound to its workload: before a record line is appended, `tvmopt_bindings.json`
  gets `[digest of the record line, workload hash]` (stock TVM ignores the file; its record
  parser accepts no extra field). A record whose workload index points at a missing line or
  at another workload than the one it was measured on (the workload file was lost or replaced)
  is never bound to it: readers skip it with a warning, `logs validate` reports it, and a
  writer moves it to `database_tuning_record.unverified.json`. A log written before bindings
  existed is trusted as it is and bound by its next writer.
Queries are served by an in-memory MetaSchedule MemoryDatabase.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import tvm

from .._compat import derived_object, ms
from .._files import make_dirs, write_atomic, write_atomic_bytes
from ..errors import LogError, last_line, path_error
from .workload import block_names, record_seconds, rename_trace_blocks, valid_run_seconds, workload_hash

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
BINDINGS_FILE = "tvmopt_bindings.json"  # [record line digest, workload hash] per record line
UNVERIFIED_FILE = "database_tuning_record.unverified.json"  # records set aside, kept for inspection
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
    try:
        lock = open(Path(log_dir) / LOCK_FILE, "a")
    except OSError as err:
        raise path_error(err, "write to the tuning log", log_dir, LogError) from err
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _some(numbers: list[int]) -> str:
    """At most five of `numbers`, sorted, for a warning."""
    unique = sorted(set(numbers))
    return ", ".join(map(str, unique[:5])) + (", ..." if len(unique) > 5 else "")


def _record_from_json(as_json, workload):
    """A record of the log as MetaSchedule's TuningRecord.

    Workaround: TVM resolves a tensorized trace's intrinsic by name while parsing it ("TensorIntrin
    'dot_8x4_u8s8_avx2' is not registered"), and intrinsics are registered only by importing them.
    A process that reads a log holding int8 records without having tuned or compiled int8 in it
    (an fp32 compile sharing the log, `tvmopt logs show`) registers its target's set and retries.
    """
    try:
        return ms.database.TuningRecord.from_json(as_json, workload)
    except Exception as err:  # noqa: BLE001 - TVM raises a bare error
        if "TensorIntrin" not in str(err) or "not registered" not in str(err):
            raise
    from ..compiler.passes import register_tensor_intrinsics  # the compiler owns the intrinsics

    register_tensor_intrinsics(tvm.target.Target(as_json[2]))
    return ms.database.TuningRecord.from_json(as_json, workload)


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


def line_digest(line: str | bytes) -> str:
    """What a binding names a record line by: a hash of the line's exact bytes."""
    return hashlib.sha256(line.encode() if isinstance(line, str) else line).hexdigest()[:32]


def binding_line(record_line: str, workload: str) -> str:
    """The bindings-file line that ties `record_line` to the workload with hash `workload`."""
    return dumps([line_digest(record_line), workload])


class _LineReader:
    """Reads complete JSON lines appended to a file since the last call."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.lineno = 0
        self.inode: int | None = None

    def read_new(self, can_repair: bool, warn) -> Iterator[tuple[int, object, bytes]]:
        """(line index, parsed JSON or None if corrupt, raw bytes) of each complete new line."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as stream:
            info = os.fstat(stream.fileno())
            if info.st_ino != self.inode or info.st_size < self.offset:
                # Rewritten (records set aside, a prune) since the last read: read it all again;
                # callers skip what they already hold.
                self.inode, self.offset, self.lineno = info.st_ino, 0, 0
            stream.seek(self.offset)
            data = stream.read()
        end = data.rfind(b"\n") + 1
        complete, tail = data[:end], data[end:]
        for raw in complete.splitlines():
            self.lineno += 1
            if not raw.strip():
                continue
            try:
                yield self.lineno - 1, json.loads(raw), raw
            except ValueError:
                warn(f"{self.path.name} line {self.lineno}: corrupt JSON, skipped")
                yield self.lineno - 1, None, raw
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
        """Append one line and fsync it; on failure (disk full, quota) the file is cut back to what it
        held, so no torn line is left for stock TVM to choke on."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.lseek(fd, 0, os.SEEK_END)
                try:
                    data = memoryview(line.encode() + b"\n")
                    while data:
                        data = data[os.write(fd, data):]
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
                info = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise path_error(err, "append to the tuning log", self.path, LogError) from err
        if self.inode is None:
            self.inode = info.st_ino
        self.offset = info.st_size
        self.lineno += 1
        return self.lineno - 1

    def replace_lines(self, lines: list[bytes]) -> None:
        """Rewrite the file with `lines` (temp file + fsync + rename); callers hold the log lock."""
        write_atomic_bytes(self.path, b"".join(line + b"\n" for line in lines))
        info = self.path.stat()
        self.inode, self.offset, self.lineno = info.st_ino, info.st_size, len(lines)


def open_log(log_dir: str | os.PathLike, best_only: bool = False) -> "LogDatabase":
    """A read-only view of an existing log, or LogError naming the directory (best_only: each
    workload's best record and the trial counts, much faster; see LogDatabase)."""
    path = Path(log_dir)
    if not is_log(path):
        raise LogError(f"{path}: not a tuning log (no {WORKLOAD_FILE}); logs live in tuning_logs/<target>/")
    return LogDatabase(path, readonly=True, best_only=best_only)


@derived_object
class LogDatabase(ms.database.PyDatabase):
    """A MetaSchedule database over one target's log directory (see module docstring)."""

    def __init__(self, log_dir: str | os.PathLike, readonly: bool = False, best_only: bool = False):
        super().__init__()
        self.dir = Path(log_dir)
        self.readonly = readonly
        # Read-only and best only: of each workload's records only the fastest valid one becomes a
        # TuningRecord (all are still counted). Parsing a record replays its trace on the workload,
        # ~11 ms each: 20 s for the 1,700 records of the shipped x86-avx2 log, 1 s for its 72 best.
        self.best_only = best_only
        if best_only and not readonly:
            raise ValueError("best_only is for read-only (compile-time) databases")
        if not readonly:
            make_dirs(self.dir, LogError, "choose another --log-dir")
        self.warnings: list[str] = []
        self.duplicates_skipped = 0
        self.set_aside = 0  # records this writer moved to UNVERIFIED_FILE
        self.records_written = 0  # records this instance appended
        # The first error writing the log (disk full...): MetaSchedule calls commit_* from C++,
        # which turns the exception into a bare RuntimeError; the session reports this one instead.
        self.write_error: LogError | None = None
        self._mem = ms.database.MemoryDatabase(module_equality="structural")
        self._workloads = _LineReader(self.dir / WORKLOAD_FILE)
        self._records = _LineReader(self.dir / RECORD_FILE)
        self._bindings = _LineReader(self.dir / BINDINGS_FILE)
        self._by_index: dict[int, object] = {}  # workload line -> Workload in self._mem (None: bad line)
        self._hash_by_index: dict[int, str] = {}  # workload line -> its workload hash
        self._canonical: list[tuple[int, object]] = []  # (first line index, Workload) per distinct workload
        self._traces: dict[int, set[str]] = {}  # canonical index -> trace keys measured
        self._valid: dict[int, int] = {}  # canonical index -> number of valid records
        self._bound: dict[str, set[str]] = {}  # record line digest -> workload hash(es) it was written for
        self._unverified: list[tuple[int, bytes]] = []  # record lines not bound to their workload
        self._unbound: list[str] = []  # binding lines for the records of a log without bindings
        # A workload equal to a logged one but naming its blocks otherwise (see block_names): its
        # traces are translated to the logged names when written and back when read.
        self._logged_names: dict[int, tuple[str, ...]] = {}  # canonical index -> its block names
        self._to_logged: dict[int, dict[str, str]] = {}  # canonical index -> {session name: logged}
        self._from_logged: dict[int, tuple[dict[str, str], tvm.IRModule]] = {}  # and back, with the module
        self._translated: dict[tuple, object] = {}  # (canonical, names, trace key) -> record for the session
        self._last_names: tuple[tvm.IRModule | None, tuple[str, ...]] = (None, ())
        self._source_names: tuple = (None, None, {})  # (a merged record's workload, canonical, names)
        with self._locked():
            self._refresh()
            if not readonly:
                self._settle()

    # ----------------------------------------------------------------- file side

    @contextlib.contextmanager
    def _write_errors_kept(self):
        try:
            yield
        except LogError as err:
            self.write_error = self.write_error or err
            raise

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
        for index, obj, _ in self._workloads.read_new(repair, self._warn):
            workload = None
            if obj is not None:
                try:
                    parsed = ms.database.Workload.from_json(obj)
                    workload = self._mem.commit_workload(parsed.mod)
                    self._hash_by_index[index] = workload_hash(workload.mod)
                except Exception as err:  # noqa: BLE001 - a bad line must never crash a session
                    self._warn(f"{WORKLOAD_FILE} line {index + 1}: unreadable workload ({type(err).__name__}), skipped")
            self._by_index[index] = workload
            if workload is not None and self._canonical_index(workload) is None:
                self._canonical.append((index, workload))
        new = [(lineno, obj, raw) for lineno, obj, raw in self._records.read_new(repair, self._warn) if obj is not None]
        bound = self._read_bindings()  # after the records: a binding is written before its record
        unverified: dict[str, list[int]] = {}  # why -> workload lines of the records
        unreadable: dict[str, list[int]] = {}  # why -> record lines
        best: dict[int, list] = {}  # best_only: canonical workload -> its (line, workload, record json)
        for lineno, obj, raw in new:
            try:
                workload_index, as_json = obj
                index = int(workload_index)
            except (TypeError, ValueError) as err:
                unreadable.setdefault(type(err).__name__, []).append(lineno + 1)
                continue
            problem = self._binding_problem(index, raw, bound)
            if problem:
                unverified.setdefault(problem, []).append(index + 1)
                self._unverified.append((lineno, raw))
                continue
            workload = self._by_index[index]
            if workload is None:
                continue  # its workload line is corrupt (reported above)
            if self.best_only:
                self._count(workload, as_json)
                best.setdefault(self._canonical_index(workload), []).append((lineno, workload, as_json))
                continue
            try:
                record = _record_from_json(as_json, workload)
            except Exception as err:  # noqa: BLE001 - a bad line must never crash a session
                unreadable.setdefault(f"{type(err).__name__}: {last_line(err, 200)}", []).append(lineno + 1)
                continue
            if not bound:
                self._unbound.append(dumps([line_digest(raw), self._hash_by_index[index]]))
            self._remember(workload, as_json, record)
        for candidates in best.values():
            self._commit_fastest(candidates, unreadable)
        for why, lines in unreadable.items():  # one warning per cause, not one per line
            self._warn(f"{RECORD_FILE}: {len(lines)} unreadable record(s) (line(s) {_some(lines)}; {why}), skipped")
        for problem, lines in unverified.items():
            self._warn(f"{RECORD_FILE}: {len(lines)} record(s) for workload line(s) {_some(lines)} {problem}; not used" +
                       ("" if self.readonly else f", moved to {UNVERIFIED_FILE}"))

    def _read_bindings(self) -> bool:
        """Read new binding lines; whether the log keeps bindings at all (logs written before them have none)."""
        for _, obj, _ in self._bindings.read_new(not self.readonly, self._warn):
            if isinstance(obj, list) and len(obj) == 2:
                self._bound.setdefault(str(obj[0]), set()).add(str(obj[1]))
        return self._bindings.path.exists()

    def _binding_problem(self, index: int, raw: bytes, bound: bool) -> str | None:
        """Why the record line `raw` cannot be tied to workload line `index`, or None."""
        if index not in self._by_index:
            return (f"cannot be verified: {WORKLOAD_FILE} has no such line (it was lost or cut short after the "
                    "records were written)")
        if not bound or self._by_index[index] is None:
            return None  # a log from before bindings: trusted as it is
        written_for = self._bound.get(line_digest(raw))
        if written_for is None:
            return f"cannot be verified: they have no line in {BINDINGS_FILE} (not written by tvmopt, or edited)"
        if self._hash_by_index[index] not in written_for:
            return (f"were measured on another workload than that line now holds ({WORKLOAD_FILE} was replaced or "
                    "rewritten after the records were written)")
        return None

    def _settle(self) -> None:
        """A writer, under the lock: move unverifiable records aside, and bind an unbound log's records."""
        if self._unverified:
            drop = {lineno for lineno, _ in self._unverified}
            lines = self._records.path.read_bytes().splitlines()
            try:
                with open(self.dir / UNVERIFIED_FILE, "ab") as aside:
                    aside.write(b"".join(raw + b"\n" for _, raw in self._unverified))
                    aside.flush()
                    os.fsync(aside.fileno())
                self._records.replace_lines([line for i, line in enumerate(lines) if i not in drop])
            except OSError as err:
                raise path_error(err, "set aside unverifiable records", self.dir, LogError) from err
            self.set_aside = len(self._unverified)
            self._unverified = []
        if not self._bindings.path.exists():
            try:
                write_atomic(self._bindings.path, "".join(line + "\n" for line in self._unbound))
            except OSError as err:
                raise path_error(err, "write to the tuning log", self.dir, LogError) from err
            self._unbound = []
            self._read_bindings()

    def _remember(self, workload, record_json, record) -> bool:
        if not self._count(workload, record_json):
            return False
        self._mem.commit_tuning_record(record)
        return True

    def _count(self, workload, record_json) -> bool:
        """Count a measured candidate of `workload`; False if the log already had its trace."""
        canonical = self._canonical_index(workload)
        key = trace_key(record_json)
        seen = self._traces.setdefault(canonical, set())
        if key in seen:
            return False
        seen.add(key)
        if valid_run_seconds(record_json[1] if len(record_json) > 1 else None):
            self._valid[canonical] = self._valid.get(canonical, 0) + 1
        return True

    def _commit_fastest(self, candidates: list, unreadable: dict[str, list[int]]) -> None:
        """best_only: commit the fastest valid record among one workload's (the next if it does not parse)."""
        timed = []
        for lineno, workload, as_json in candidates:
            secs = valid_run_seconds(as_json[1] if len(as_json) > 1 else None)
            if secs:
                timed.append((record_seconds(secs), lineno, workload, as_json))
        for _, lineno, workload, as_json in sorted(timed, key=lambda t: (t[0], t[1])):
            try:
                self._mem.commit_tuning_record(_record_from_json(as_json, workload))
                return
            except Exception as err:  # noqa: BLE001 - a bad line must never crash a session
                unreadable.setdefault(f"{type(err).__name__}: {last_line(err, 200)}", []).append(lineno + 1)

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
        workload = self._commit_workload(mod)
        self._note_block_names(mod, workload)
        return workload

    def _commit_workload(self, mod: tvm.IRModule):
        if self._mem.has_workload(mod):
            return self._mem.commit_workload(mod)
        if self.readonly:
            return self._mem.commit_workload(mod)
        with self._write_errors_kept(), self._locked():
            self._refresh()  # another session may have added it meanwhile
            if self._mem.has_workload(mod):
                return self._mem.commit_workload(mod)
            workload = self._mem.commit_workload(mod)
            index = self._workloads.append(dumps(workload.as_json()))
            self._by_index[index] = workload
            self._hash_by_index[index] = workload_hash(workload.mod)
            self._canonical.append((index, workload))
            return workload

    def commit_tuning_record(self, record) -> None:
        as_json = record_json(record)
        if self.readonly:
            self._remember(record.workload, as_json, record)
            return
        if self._canonical_index(record.workload) is None:
            self._commit_workload(record.workload.mod)
        with self._write_errors_kept(), self._locked():
            self._refresh()
            workload = self._mem.commit_workload(record.workload.mod)
            canonical = self._canonical_index(workload)
            names = self._names_for(record.workload, workload, canonical)
            if names:  # the record's module names the blocks otherwise: write the log's names
                as_json = [rename_trace_blocks(as_json[0], names), *as_json[1:]]
                try:
                    record = _record_from_json(as_json, workload)
                except Exception as err:  # noqa: BLE001 - never write a line that cannot be read back
                    self._warn(f"a record of workload line {canonical + 1} does not replay under the log's block "
                               f"names ({type(err).__name__}), not written")
                    return
            if trace_key(as_json) in self._traces.get(canonical, ()):
                self.duplicates_skipped += 1
                return
            line = dumps([canonical, as_json])
            binding = binding_line(line, self._hash_by_index[canonical])
            self._bindings.append(binding)  # first: a record line on disk always has its binding
            self._bound.setdefault(line_digest(line), set()).add(self._hash_by_index[canonical])
            self._records.append(line)
            self.records_written += 1
            self._remember(workload, as_json, record)

    def get_top_k(self, workload, top_k: int) -> list:
        records = list(self._mem.get_top_k(workload, top_k))
        canonical = self._canonical_index(workload)
        if canonical not in self._from_logged:
            return records
        translated = (self._for_session(canonical, record) for record in records)
        return [record for record in translated if record is not None]

    # ----------------------------------------------------------------- block names

    def _note_block_names(self, mod: tvm.IRModule, workload) -> None:
        """Remember how `mod` (a task's module) names the blocks of the logged workload it equals.

        Workaround: MetaSchedule's structural equality ignores block names, so a session tuning
        bert4's layer norm as `lv9_sum` gets the workload logged as `lv8_sum`: its records were
        written with traces the logged workload cannot replay (unreadable lines), and the logged
        traces failed to replay on its module ("Trace replay failed")."""
        canonical = self._canonical_index(workload)
        if canonical is None:
            return
        last_mod, mine = self._last_names  # MetaSchedule commits a task's module once per batch
        if last_mod is None or not last_mod.same_as(mod):
            mine = block_names(mod)
            self._last_names = (mod, mine)
        to_logged = self._renaming(mine, canonical, workload)
        if not to_logged:
            self._to_logged.pop(canonical, None)
            self._from_logged.pop(canonical, None)
            return
        self._to_logged[canonical] = to_logged
        self._from_logged[canonical] = ({b: a for a, b in to_logged.items()}, mod)

    def _renaming(self, names: tuple[str, ...], canonical: int, logged) -> dict[str, str]:
        """{name: the logged workload's name} for the block names that differ (block for block:
        structurally equal workloads have the same blocks in the same order)."""
        if canonical not in self._logged_names:
            self._logged_names[canonical] = block_names(logged.mod)
        ours = self._logged_names[canonical]
        if len(names) != len(ours):
            return {}
        return {theirs: our for theirs, our in zip(names, ours) if theirs != our}

    def _names_for(self, given, logged, canonical: int) -> dict[str, str]:
        """How a record's trace names map to the log's: from its own workload where it brings one
        (a merged or imported log's), else as the session's module named them (commit_workload)."""
        if given.same_as(logged):
            return self._to_logged.get(canonical, {})
        last = self._source_names
        if last[0] is not None and last[0].same_as(given) and last[1] == canonical:
            return last[2]
        names = self._renaming(block_names(given.mod), canonical, logged)
        self._source_names = (given, canonical, names)
        return names

    def _for_session(self, canonical: int, record):
        """A logged record with its trace renamed for the session's module; None if it does not replay there."""
        names, mod = self._from_logged[canonical]
        as_json = record_json(record)
        key = (canonical, frozenset(names.items()), trace_key(as_json))
        if key not in self._translated:
            try:
                self._translated[key] = _record_from_json([rename_trace_blocks(as_json[0], names), *as_json[1:]],
                                                          ms.database.Workload(mod))
            except Exception:  # noqa: BLE001 - left out, as MetaSchedule leaves out a trace that fails
                self._translated[key] = None
        return self._translated[key]

    def get_all_tuning_records(self) -> list:
        return list(self._mem.get_all_tuning_records())

    def __len__(self) -> int:
        return len(self._mem)

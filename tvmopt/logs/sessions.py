"""Session records: one JSON file per tuning run, beside the log, saying what produced it.

Written atomically at start and after every measured batch, so a killed session's file still
says how far it got. It carries everything that changes a result: model and its hash, target,
budget, the machine's fingerprint, TVM version, per-task trials and best latency.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._files import pid_alive, write_atomic
from ..machine import Machine
from .store import SESSIONS_DIR
from .workload import gflops

FORMAT = "tvmopt-session/1"


@dataclass
class TaskSummary:
    """One tuning task of a session: its workload, weight in the model, trials and best time."""

    name: str
    workload_hash: str
    weight: int
    flops: float
    trials_before: int  # candidates of this workload already in the log when the session began
    trials_run: int = 0  # measured in this session
    best_us: float | None = None  # best valid latency in the log (any session)

    @property
    def gflops(self) -> float | None:
        return gflops(self.flops, self.best_us * 1e-6 if self.best_us else None)

    def to_json(self) -> dict:
        return {"name": self.name, "workload_hash": self.workload_hash, "weight": self.weight, "flops": self.flops,
                "trials_before": self.trials_before, "trials_run": self.trials_run, "best_us": self.best_us}

    @staticmethod
    def from_json(obj: dict) -> "TaskSummary":
        return TaskSummary(str(obj["name"]), str(obj["workload_hash"]), int(obj.get("weight", 1)),
                           float(obj.get("flops", 0.0)), int(obj.get("trials_before", 0)),
                           int(obj.get("trials_run", 0)), obj.get("best_us"))


@dataclass(frozen=True)
class TransferInfo:
    """Logs whose records warm-started the cost model, and how many records were used."""

    logs: tuple[str, ...]
    records: int


@dataclass
class SessionRecord:
    """One tuning run (format tvmopt-session/1)."""

    model: str
    model_sha256: str
    target: str  # the log's name (registry name, or host-<cpu>-<cores>c)
    target_dict: dict  # the TVM target dict it tuned for
    budget: dict  # the Budget's fields, as written (tuning/budget.py)
    machine: Machine
    tasks: list[TaskSummary]
    measured_on: str = "local"  # or the RPC device, KEY@TRACKER_HOST:PORT
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    # running | finished | timeout | interrupted | failed (an error stopped it) | stale (its process
    # died without saying so, e.g. kill -9: its counts are those of its last measured batch)
    status: str = "running"
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)  # where `pid` lives
    pid_started: float = field(default_factory=lambda: process_started(os.getpid()))  # tells a reused pid
    wall_s: float = 0.0
    trials_run: int = 0
    estimated_ms: float | None = None
    untuned_tasks: list[str] = field(default_factory=list)
    # [wall s, trials run, estimated ms or null] after each measured batch: the tuning curve
    history: list[list] = field(default_factory=list)
    transfer: TransferInfo | None = None
    optimizations: dict | None = None  # the compiler's GraphOptions it tuned with, as written
    seeded: dict[str, str] = field(default_factory=dict)  # task -> logged kernel its first trial came from
    file: str = ""  # the file it was read from (not written)

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "model": self.model, "model_sha256": self.model_sha256, "target": self.target,
            "target_dict": self.target_dict, "budget": self.budget, "machine": self.machine.to_json(),
            "tasks": [t.to_json() for t in self.tasks], "measured_on": self.measured_on, "started": self.started,
            "status": self.status, "pid": self.pid, "host": self.host, "pid_started": self.pid_started,
            "wall_s": self.wall_s, "trials_run": self.trials_run,
            "estimated_ms": self.estimated_ms, "untuned_tasks": self.untuned_tasks, "history": self.history,
            "transfer": {"logs": list(self.transfer.logs), "records": self.transfer.records} if self.transfer else None,
            "optimizations": self.optimizations, "seeded": self.seeded,
        }

    @staticmethod
    def from_json(obj: dict, file: str = "") -> "SessionRecord":
        transfer = obj.get("transfer")
        return SessionRecord(
            model=str(obj.get("model", "?")), model_sha256=str(obj.get("model_sha256", "")),
            target=str(obj.get("target", "")), target_dict=dict(obj.get("target_dict") or {}),
            budget=dict(obj.get("budget") or {}), machine=Machine.from_json(obj.get("machine") or {}),
            tasks=[TaskSummary.from_json(t) for t in obj.get("tasks") or []],
            measured_on=str(obj.get("measured_on", "local")), started=str(obj.get("started", "")),
            status=str(obj.get("status", "?")), pid=int(obj.get("pid", 0) or 0), host=str(obj.get("host", "")),
            pid_started=float(obj.get("pid_started", 0.0) or 0.0),
            wall_s=float(obj.get("wall_s", 0.0) or 0.0), trials_run=int(obj.get("trials_run", 0) or 0),
            estimated_ms=obj.get("estimated_ms"), untuned_tasks=list(obj.get("untuned_tasks") or []),
            history=list(obj.get("history") or []),
            transfer=TransferInfo(tuple(transfer.get("logs") or ()), int(transfer.get("records", 0)))
            if transfer else None,
            optimizations=obj.get("optimizations"), seeded=dict(obj.get("seeded") or {}),
            file=file,
        )

    def is_alive(self) -> bool:
        """Whether the process that runs this session may still run it (True when that cannot be
        told from here: a session of another host sharing the log directory)."""
        if self.status != "running" or self.pid <= 0:
            return False
        if self.host and self.host != socket.gethostname():
            return True
        if not pid_alive(self.pid):
            return False
        started = process_started(self.pid)
        return not (self.pid_started and started and abs(started - self.pid_started) > 1.0)  # else a reused pid


def save_session(path: Path, record: SessionRecord) -> None:
    write_atomic(path, json.dumps(record.to_json(), indent=2) + "\n")


def new_session_path(log_dir: Path, model_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_name)[:40]
    return log_dir / SESSIONS_DIR / f"{stamp}-{safe}-{os.getpid()}.json"


def read_sessions(log_dir: str | os.PathLike) -> tuple[list[SessionRecord], list[str]]:
    """The log's session records (oldest first) and the names of unreadable session files.

    A session still "running" whose process is gone shows as "stale" (mark_stale writes that down).
    """
    records, unreadable = [], []
    for path in sorted(Path(log_dir, SESSIONS_DIR).glob("*.json")):
        try:
            record = SessionRecord.from_json(json.loads(path.read_text()), path.name)
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            unreadable.append(path.name)
            continue
        if record.status == "running" and not record.is_alive():
            record.status = "stale"
        records.append(record)
    records.sort(key=lambda s: s.started)
    return records, unreadable


def mark_stale(log_dir: str | os.PathLike) -> int:
    """Write "stale" into the session files whose process died while "running"; how many there were."""
    count = 0
    for record in read_sessions(log_dir)[0]:
        path = Path(log_dir, SESSIONS_DIR, record.file)
        if record.status != "stale":
            continue
        try:
            on_disk = json.loads(path.read_text())
            if on_disk.get("status") == "running":
                write_atomic(path, json.dumps(on_disk | {"status": "stale"}, indent=2) + "\n")
                count += 1
        except (OSError, ValueError):
            continue
    return count


def process_started(pid: int) -> float:
    """When process `pid` started (seconds since the epoch), or 0.0 if unknown."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - no such process, no psutil, no permission
        return 0.0


def task_names(sessions: list[SessionRecord]) -> dict[str, str]:
    """Workload hash -> task name, from the sessions that tuned it (the log itself has no names)."""
    return {t.workload_hash: t.name for s in sessions for t in s.tasks}


def latest(sessions: list[SessionRecord]) -> SessionRecord | None:
    """The most recently started session with a target."""
    with_target = [s for s in sessions if s.target_dict]
    return max(with_target, key=lambda s: s.started) if with_target else None


def machines(sessions: list[SessionRecord]) -> list[Machine]:
    """The distinct machines the sessions measured on."""
    out: list[Machine] = []
    for session in sessions:
        if session.machine.arch != "unknown" and session.machine not in out:
            out.append(session.machine)
    return out

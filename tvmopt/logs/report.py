"""Read a target's tuning log for people: what it holds (`logs show`) and whether it is sound
(`logs validate`). Task names come from the session records written beside the log."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..machine import Machine
from .sessions import SessionRecord, machines, read_sessions, task_names
from .store import RECORD_FILE, UNVERIFIED_FILE, WORKLOAD_FILE, open_log
from .workload import estimate_flops, gflops, workload_hash


@dataclass(frozen=True)
class WorkloadRow:
    name: str
    workload_hash: str
    flops: float
    trials: int
    valid_trials: int
    best_us: float | None

    @property
    def gflops(self) -> float | None:
        return gflops(self.flops, self.best_us * 1e-6 if self.best_us else None)

    def to_json(self) -> dict:
        return {"name": self.name, "workload_hash": self.workload_hash, "flops": self.flops, "trials": self.trials,
                "valid_trials": self.valid_trials, "best_us": self.best_us, "gflops": self.gflops}


@dataclass(frozen=True)
class LogReport:
    """`logs show`: every workload of the log, the sessions that tuned them and their machines."""

    log: str
    workloads: list[WorkloadRow]
    sessions: list[SessionRecord]
    machines: list[Machine]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"log": self.log, "workloads": [w.to_json() for w in self.workloads],
                "sessions": [s.to_json() | {"file": s.file} for s in self.sessions],
                "machines": [m.to_json() for m in self.machines], "warnings": self.warnings}


@dataclass(frozen=True)
class ValidationReport:
    """`logs validate`: line counts and every problem found (bad lines are skipped, never fatal),
    including records that cannot be verified against their workload (store.py: bindings)."""

    log: str
    workload_lines: int
    record_lines: int
    records_loaded: int
    problems: list[str]
    set_aside: int = 0  # records moved to UNVERIFIED_FILE earlier (not part of the log any more)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"log": self.log, "workload_lines": self.workload_lines, "record_lines": self.record_lines,
                "records_loaded": self.records_loaded, "problems": self.problems, "set_aside": self.set_aside}


def show(log_dir: str | os.PathLike) -> LogReport:
    """Workloads with their best latency and trials, the sessions, and the machines they ran on."""
    database = open_log(log_dir, best_only=True)  # `logs validate` is the one that parses every record
    runs, unreadable = read_sessions(log_dir)
    names = task_names(runs)
    rows = []
    for mod in database.workload_modules():
        digest = workload_hash(mod)
        best = database.best_seconds(mod)
        rows.append(WorkloadRow(names.get(digest, "?"), digest, estimate_flops(mod), database.trials_for(mod),
                                database.valid_trials_for(mod), round(best * 1e6, 3) if best else None))
    warnings = database.warnings + [f"{log_dir}: session file {name} is unreadable" for name in unreadable]
    return LogReport(str(log_dir), rows, runs, machines(runs), warnings)


def validate(log_dir: str | os.PathLike) -> ValidationReport:
    """Line counts and every problem found; corrupt lines are reported and skipped, never fatal."""
    database = open_log(log_dir)
    path = Path(log_dir)

    def count(name: str) -> int:
        file = path / name
        return sum(1 for line in file.read_text(errors="replace").splitlines() if line.strip()) if file.exists() else 0

    _, unreadable = read_sessions(path)
    problems = database.warnings + [f"{path}: session file {name} is unreadable" for name in unreadable]
    return ValidationReport(str(path), count(WORKLOAD_FILE), count(RECORD_FILE), len(database), problems,
                            count(UNVERIFIED_FILE))

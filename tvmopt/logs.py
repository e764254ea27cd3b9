"""Read a target's tuning log for people: what it holds (`logs show`) and whether it is sound
(`logs validate`). Task names come from the session records written beside the log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import _tvm
from .errors import TvmoptError
from .tuning.database import RECORD_FILE, WORKLOAD_FILE, LogDatabase


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
        return self.flops / self.best_us / 1e3 if self.best_us else None


def _open(log_dir: str | Path) -> LogDatabase:
    path = Path(log_dir)
    if not (path / WORKLOAD_FILE).exists():
        raise TvmoptError(f"{path}: not a tuning log (no {WORKLOAD_FILE}); logs live in tuning_logs/<target>/")
    return LogDatabase(path, readonly=True)


def sessions(log_dir: str | Path) -> list[dict]:
    out = []
    for path in sorted(Path(log_dir, "sessions").glob("*.json")):
        try:
            out.append(json.loads(path.read_text()) | {"file": path.name})
        except (OSError, ValueError):
            out.append({"file": path.name, "status": "unreadable"})
    return out


def show(log_dir: str | Path) -> dict:
    """Workloads with their best latency and trials, the sessions, and the machines they ran on."""
    database = _open(log_dir)
    runs = sessions(log_dir)
    names = {t["workload_hash"]: t["name"] for s in runs for t in s.get("tasks", [])}
    rows = []
    for mod in database.workload_modules():
        digest = _tvm.workload_hash(mod)
        best = database.best_seconds(mod)
        rows.append(WorkloadRow(names.get(digest, "?"), digest, _tvm.estimate_flops(mod), database.trials_for(mod),
                                database.valid_trials_for(mod), round(best * 1e6, 3) if best else None))
    machines = {json.dumps(s["machine"], sort_keys=True): s["machine"] for s in runs if "machine" in s}
    return {"log": str(log_dir), "workloads": rows, "sessions": runs, "machines": list(machines.values()),
            "warnings": database.warnings}


def validate(log_dir: str | Path) -> dict:
    """Line counts and every problem found; corrupt lines are reported and skipped, never fatal."""
    database = _open(log_dir)
    path = Path(log_dir)
    count = lambda f: sum(1 for line in (path / f).read_text(errors="replace").splitlines() if line.strip())  # noqa: E731
    records = count(RECORD_FILE) if (path / RECORD_FILE).exists() else 0
    return {"log": str(path), "workload_lines": count(WORKLOAD_FILE), "record_lines": records,
            "records_loaded": len(database), "problems": database.warnings}


def merge(sources: list[str | Path], dest: str | Path) -> dict:
    """Add every record of `sources` to the log `dest` (created if missing); duplicates are skipped.

    Records keep their own target and run times; `dest` stays a valid MetaSchedule log, written
    through the same locked, fsynced appends as a tuning session (so a merge into a log that is
    being tuned is safe). Session records are copied beside it.
    """
    target = LogDatabase(Path(dest))
    added = 0
    for source in sources:
        database = _open(source)
        before = len(target)
        for record in database.get_all_tuning_records():
            target.commit_tuning_record(record)
        added += len(target) - before
        for session in Path(source, "sessions").glob("*.json"):
            copy = Path(dest, "sessions", session.name)
            if not copy.exists():
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_bytes(session.read_bytes())
    return {"log": str(dest), "records_added": added, "duplicates_skipped": target.duplicates_skipped,
            "records": len(target), "workloads": target.num_workloads}

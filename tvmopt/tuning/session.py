"""Session record: one JSON file per tuning run, beside the log, saying what produced it.

Written atomically at start and after every measured batch, so a killed session's file still
says how far it got. It carries everything that changes a result: model and its hash, target,
budget, the machine's fingerprint, TVM version, per-task trials and best latency.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class TaskSummary:
    name: str
    workload_hash: str
    weight: int
    flops: float
    trials_before: int  # candidates of this workload already in the log when the session began
    trials_run: int = 0  # measured in this session
    best_us: float | None = None  # best valid latency in the log (any session)

    @property
    def gflops(self) -> float | None:
        return self.flops / self.best_us / 1e3 if self.best_us else None


@dataclass
class SessionRecord:
    model: str
    model_sha256: str
    target: str
    target_dict: dict
    budget: dict
    machine: dict
    tasks: list[TaskSummary]
    measured_on: str = "local"  # or the RPC device, KEY@TRACKER_HOST:PORT
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    status: str = "running"  # running | finished | timeout | interrupted; "running" + dead pid = killed
    pid: int = field(default_factory=os.getpid)
    wall_s: float = 0.0
    trials_run: int = 0
    estimated_ms: float | None = None
    untuned_tasks: list[str] = field(default_factory=list)
    # [wall s, trials run, estimated ms or null] after each measured batch: the tuning curve
    history: list[list] = field(default_factory=list)
    transfer: dict | None = None  # logs whose records warm-started the cost model, and how many

    def to_json(self) -> dict:
        data = asdict(self)
        data["format"] = "tvmopt-session/1"
        return data


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory + rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_session(path: Path, record: SessionRecord) -> None:
    write_atomic(path, json.dumps(record.to_json(), indent=2) + "\n")


def new_session_path(log_dir: Path, model_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_name)[:40]
    return log_dir / "sessions" / f"{stamp}-{safe}-{os.getpid()}.json"

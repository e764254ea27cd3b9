"""The tuning log, and the one owner of its on-disk format.

store (MetaSchedule's two JSON-lines files, lock, appends), workload (hash, valid run, GFLOP/s),
sessions (one record per tuning run), report (show / validate), maintain (merge / prune /
export / import) and compare (across targets and machines).
"""

from __future__ import annotations

from pathlib import Path

from .store import LogDatabase, is_log, open_log

__all__ = ["LogDatabase", "open_log", "is_log", "DEFAULT_LOG_ROOT", "log_dir_for"]

DEFAULT_LOG_ROOT = "tuning_logs"


def log_dir_for(target, log_root: "str | Path" = DEFAULT_LOG_ROOT) -> Path:
    """The log directory of a TargetSpec under `log_root` (tuning_logs/<target log name>)."""
    return Path(log_root) / target.log_name

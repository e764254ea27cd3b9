"""The tuning stage: tune() runs a MetaSchedule session (XGBoost cost model) into the target's log.

One module per role: session (the driver), budget (presets), progress + scheduler (which task
next, plugged into MetaSchedule's loop), builder, runner, search, cost_model, measure.
"""

from __future__ import annotations

from .budget import PRESETS, Budget, make_budget
from .session import TuningLog, task_modules, tune

__all__ = ["tune", "task_modules", "TuningLog", "Budget", "PRESETS", "make_budget"]

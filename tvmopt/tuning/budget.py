"""Budget presets (smoke / quick / full) instead of magic trial counts.

A preset fixes trials per task, batch size, the evolutionary search's effort and the runner's
measurement repeats; CLI flags override single fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import TuningError


@dataclass(frozen=True)
class Budget:
    name: str
    trials_per_task: int  # measured candidates per task, counted across sessions (resume)
    batch_size: int  # candidates built and measured per round
    population: int  # evolutionary search population
    genetic_iters: int
    init_min_unmeasured: int
    number: int  # runner: runs averaged per repeat
    repeat: int  # runner: repeats (median of these is the candidate's latency)
    min_repeat_ms: int
    max_trials: int | None = None  # cap over all tasks in this session
    timeout_s: float | None = None  # stop the session after this wall time

    def describe(self) -> str:
        cap = f", at most {self.max_trials} trials" if self.max_trials else ""
        limit = f", stop after {self.timeout_s / 60:.1f} min" if self.timeout_s else ""
        return f"{self.name}: {self.trials_per_task} trials/task{cap}{limit}"


PRESETS = {
    # CI and tests: seconds per task, numbers only roughly right.
    "smoke": Budget("smoke", 4, 4, 64, 1, 16, number=1, repeat=1, min_repeat_ms=0),
    # The demo and a first look: a few minutes for a small model.
    "quick": Budget("quick", 24, 8, 256, 2, 32, number=1, repeat=3, min_repeat_ms=5),
    # Serious tuning. Batches of 16 (not 32) so that every task has a record early and the
    # latency-share scheduler steers the rest. MetaSchedule's default search (population 512,
    # 4 genetic iterations) spent 67% of a ResNet-18 session in the evolutionary search; 256 x 2
    # took trials/min from 64 to 99 (benchmarks/profile_tuning.py, RESULTS.md). 3 repeats of
    # >= 10 ms keep measurement near a sixth of the time.
    "full": Budget("full", 200, 16, 256, 2, 50, number=1, repeat=3, min_repeat_ms=10),
}


def make_budget(
    preset: str = "quick",
    *,
    trials: int | None = None,
    trials_per_task: int | None = None,
    timeout_s: float | None = None,
) -> Budget:
    if preset not in PRESETS:
        raise TuningError(f"unknown budget '{preset}'; choose one of {', '.join(PRESETS)}")
    budget = PRESETS[preset]
    for label, value in (("--trials", trials), ("--trials-per-task", trials_per_task)):
        if value is not None and not value > 0:
            raise TuningError(f"{label} must be positive, got {value}")
    if timeout_s is not None and not (0 < timeout_s < float("inf")):  # the CLI's --timeout is in minutes
        raise TuningError(f"--timeout must be a positive number of minutes, got {timeout_s / 60:g} "
                          "(leave it out for no time limit)")
    if trials_per_task is not None:
        budget = replace(budget, trials_per_task=trials_per_task)
    if trials is not None:
        budget = replace(budget, max_trials=trials)
    if timeout_s is not None:
        budget = replace(budget, timeout_s=timeout_s)
    return budget

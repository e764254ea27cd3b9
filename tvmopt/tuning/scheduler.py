"""Task scheduling and progress for a tuning session, plugged into MetaSchedule's loop.

Stock schedulers join a task's measurements only when they next visit that task, so a
session killed in its first round (one visit per task) had written nothing (TVM_NOTES: 0
records after 20 minutes). `CommitEachBatch` joins every batch before choosing the next one,
so records reach the log as soon as they are measured. On a small machine this also keeps
builds from running beside timed runs, which would skew the measurements.

Which task gets the next batch: after one batch each, a task without a valid record first
(it would fall back to an untuned kernel, the 26x-slower failure in TVM_NOTES), then the task
holding the largest share of the model's estimated latency (weight x best), halved for every
batch in a row that did not improve it; a task that stopped improving is retired early.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

from .._tvm import ALREADY_MEASURED, derived_object, ms
from .session import TaskSummary


class SessionProgress:
    """Trials and best latency per task, shared by the scheduler and the progress callback."""

    def __init__(self, tasks: list[TaskSummary], quotas: list[int], bar=None, on_batch: Callable | None = None):
        self.tasks = tasks
        self.quotas = quotas
        self.bar = bar
        self.on_batch = on_batch
        self.trials_run = 0
        self.errors = 0
        self.skipped = [0] * len(tasks)  # candidates already in the log, not measured again
        self.batches = [0] * len(tasks)  # batches joined this session
        self.stale = [0] * len(tasks)  # batches in a row that did not improve the task's best by 1%

    def attempts(self, task_id: int) -> int:
        return self.tasks[task_id].trials_run + self.skipped[task_id]

    def record(self, task_id: int, builder_results, runner_results) -> None:
        task = self.tasks[task_id]
        before = task.best_us
        measured = 0
        for built, result in zip(builder_results, runner_results):
            if built.error_msg == ALREADY_MEASURED:
                self.skipped[task_id] += 1
                continue
            measured += 1
            task.trials_run += 1
            self.trials_run += 1
            secs = [float(s) for s in (result.run_secs or [])]
            if result.error_msg is not None or not secs or min(secs) >= 1e9:
                self.errors += 1
                continue
            us = statistics.median(secs) * 1e6
            if task.best_us is None or us < task.best_us:
                task.best_us = us
        self.batches[task_id] += 1
        improved = task.best_us is not None and (before is None or task.best_us < 0.99 * before)
        self.stale[task_id] = 0 if improved else self.stale[task_id] + 1
        if self.bar is not None:
            self.bar.update(measured)
            self.bar.set_postfix_str(self.postfix(task_id), refresh=True)
        if self.on_batch is not None:
            self.on_batch()

    def priority(self, task_id: int) -> float:
        """The task's share of the model's estimated latency, discounted while it is not improving."""
        task = self.tasks[task_id]
        return task.weight * (task.best_us or 0.0) * 0.5 ** self.stale[task_id]

    def estimated_ms(self) -> float | None:
        if any(t.best_us is None for t in self.tasks):
            return None
        return sum(t.best_us * t.weight for t in self.tasks) / 1e3

    def postfix(self, task_id: int) -> str:
        task = self.tasks[task_id]
        best = f"{task.best_us:.1f}us" if task.best_us else "n/a"
        est = self.estimated_ms()
        untuned = sum(t.best_us is None for t in self.tasks)
        model = f"{est:.3f}ms" if est is not None else f"n/a ({untuned} task(s) without record)"
        return f"task {task_id} {task.name[:28]} best {best} | est. model {model}"


@derived_object
class ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Feeds each joined batch to SessionProgress (runs after AddToDatabase has written it)."""

    def __init__(self, progress: SessionProgress):
        super().__init__()
        self.progress = progress

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.progress.record(task_id, builder_results, runner_results)


@derived_object
class AddNewToDatabase(ms.measure_callback.PyMeasureCallback):
    """MetaSchedule's AddToDatabase, minus candidates the builder skipped as already measured
    (stock AddToDatabase would log them again as failures with run time 1e10)."""

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        database = task_scheduler.database_
        ctx = task_scheduler.tasks_[task_id].ctx
        workload = database.commit_workload(ctx.mod)
        for candidate, built, result in zip(measure_candidates, builder_results, runner_results):
            if built.error_msg == ALREADY_MEASURED:
                continue
            run_secs = result.run_secs if result.run_secs is not None else [1e10]
            database.commit_tuning_record(
                ms.database.TuningRecord(candidate.sch.trace, workload, run_secs, ctx.target, candidate.args_info)
            )


def choose_task(progress: SessionProgress, live: list[int]) -> int:
    """The next task to get a batch, among `live`: each task once first, then tasks still without a
    valid record (least tried first), then the largest discounted share of the model's latency."""
    first_visit = [i for i in live if progress.batches[i] == 0]
    if first_visit:
        return first_visit[0]
    recordless = [i for i in live if progress.tasks[i].best_us is None]
    if recordless:
        return min(recordless, key=lambda i: progress.batches[i])
    return max(live, key=progress.priority)


@derived_object
class CommitEachBatch(ms.task_scheduler.PyTaskScheduler):
    """Latency-share task scheduler with quotas, early stopping and a deadline; joins every batch at once."""

    # A task without any valid record may use this many times its quota before it is given up.
    RECORDLESS_EXTRA = 3
    # Batches in a row without a 1% gain after which a task is retired (its quota goes to others).
    PATIENCE = 5

    def __init__(self, progress: SessionProgress, deadline: float | None, max_trials: int | None = None):
        super().__init__()
        self.progress = progress
        self.deadline = deadline
        self.max_trials = max_trials
        self.timed_out = False

    def next_task_id(self) -> int:
        scheduler = self._outer()
        tasks = scheduler.tasks_
        for task_id, task in enumerate(tasks):
            if not task.is_terminated and task.runner_futures is not None:
                self.join_running_task(task_id)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
            return -1
        if self.max_trials is not None and self.progress.trials_run >= self.max_trials:
            return -1
        live = [i for i, task in enumerate(tasks) if not task.is_terminated and self._keep(i)]
        for i, task in enumerate(tasks):
            if not task.is_terminated and i not in live:
                scheduler.terminate_task(i)
        if not live:
            return -1
        return choose_task(self.progress, live)

    def _keep(self, i: int) -> bool:
        """Whether task i may get another batch: within its quota, still improving."""
        progress = self.progress
        quota = progress.quotas[i]
        if progress.tasks[i].best_us is None:
            quota *= self.RECORDLESS_EXTRA  # no task left behind: keep trying before giving up
        if progress.tasks[i].trials_run >= quota or progress.attempts(i) >= 2 * quota:
            return False
        # retired: stopped improving (its remaining quota goes to the other tasks)
        return not (progress.stale[i] >= self.PATIENCE and progress.tasks[i].best_us is not None)

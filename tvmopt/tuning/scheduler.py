"""tvmopt's policy plugged into MetaSchedule's tuning loop: a task scheduler and measure callbacks.

Stock schedulers join a task's measurements only when they next visit that task, so a session
killed in its first round (one visit per task) had written nothing (TVM_NOTES: 0 records after
20 minutes). `CommitEachBatch` joins every batch before choosing the next one, so records reach
the log as soon as they are measured. On a small machine this also keeps builds from running
beside timed runs, which would skew the measurements. The choice itself is progress.choose_task.
"""

from __future__ import annotations

import time

from .._compat import derived_object, ms
from .builder import ALREADY_MEASURED, NOT_MEASURED
from .progress import SessionProgress, choose_task


def _not_measured(built, result, progress: SessionProgress) -> bool:
    """A candidate that was never measured: neither a trial nor a record (a failure is both)."""
    if built.error_msg == NOT_MEASURED or result.error_msg == NOT_MEASURED:
        return True
    # After Ctrl-C a candidate whose run failed may have lost its worker to the same signal.
    return progress.interrupted and result.error_msg is not None


@derived_object
class ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Feeds each joined batch to SessionProgress (runs after AddNewToDatabase has written it)."""

    def __init__(self, progress: SessionProgress):
        super().__init__()
        self.progress = progress

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        # An exception would reach MetaSchedule's C++ loop and come out as a bare RuntimeError.
        try:
            measured, skipped = [], 0
            for built, result in zip(builder_results, runner_results):
                if built.error_msg == ALREADY_MEASURED:
                    skipped += 1
                elif not _not_measured(built, result, self.progress):
                    measured.append(None if result.error_msg is not None else result.run_secs)
            self.progress.record(task_id, measured, skipped)
        except Exception as err:  # noqa: BLE001 - e.g. the session file cannot be written: disk full
            self.progress.failure = self.progress.failure or err


@derived_object
class AddNewToDatabase(ms.measure_callback.PyMeasureCallback):
    """MetaSchedule's AddToDatabase, minus candidates the builder skipped as already measured
    (stock AddToDatabase would log them again as failures with run time 1e10) or never measured
    (Ctrl-C, the session's --trials cap)."""

    def __init__(self, database, contexts: list, progress: SessionProgress):
        super().__init__()
        self.database = database
        self.contexts = contexts
        self.progress = progress

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        if self.progress.failure is not None:
            return
        try:
            ctx = self.contexts[task_id]
            workload = self.database.commit_workload(ctx.mod)
            for candidate, built, result in zip(measure_candidates, builder_results, runner_results):
                if built.error_msg == ALREADY_MEASURED or _not_measured(built, result, self.progress):
                    continue
                run_secs = result.run_secs if result.run_secs is not None else [1e10]  # MetaSchedule's "failed"
                self.database.commit_tuning_record(
                    ms.database.TuningRecord(candidate.sch.trace, workload, run_secs, ctx.target, candidate.args_info)
                )
        except Exception as err:  # noqa: BLE001 - disk full, log unwritable: end the session, keep the log
            self.progress.failure = err


@derived_object
class UpdateCostModel(ms.measure_callback.PyMeasureCallback):
    """MetaSchedule's UpdateCostModel, skipped once the session is stopping: retraining XGBoost on
    the last batch takes seconds a Ctrl-C would wait for, for a model nobody will use."""

    def __init__(self, progress: SessionProgress):
        super().__init__()
        self.progress = progress
        self.inner = ms.measure_callback.UpdateCostModel()

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        if not self.progress.stopping:
            self.inner.apply(task_scheduler, task_id, measure_candidates, builder_results, runner_results)


@derived_object
class CommitEachBatch(ms.task_scheduler.PyTaskScheduler):
    """Latency-share task scheduler with quotas, early stopping and a deadline; joins every batch at once."""

    def __init__(self, progress: SessionProgress, deadline: float | None, max_trials: int | None = None):
        super().__init__()
        self.progress = progress
        self.deadline = deadline
        self.max_trials = max_trials

    def next_task_id(self) -> int:
        # MetaSchedule keeps per-task state (is_terminated, runner_futures) on the C++ TaskScheduler,
        # reachable from a PyTaskScheduler only through `_outer()`, as TVM's own
        # PyTaskScheduler.join_running_task reaches it. Returning a terminated task fails an ICHECK.
        tasks = self._outer().tasks_
        for task_id, task in enumerate(tasks):
            if not task.is_terminated and task.runner_futures is not None:
                self.join_running_task(task_id)
        progress = self.progress
        if progress.stopping:
            return -1
        if self.deadline is not None and time.monotonic() >= self.deadline:
            progress.timed_out = True
            return -1
        if self.max_trials is not None and progress.trials_run >= self.max_trials:
            return -1
        live = [i for i, task in enumerate(tasks) if not task.is_terminated and progress.may_continue(i)]
        return choose_task(progress, live) if live else -1

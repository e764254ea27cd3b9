"""Where a session stands, task by task, and which task gets the next batch (pure policy).

After one batch each, a task without a valid record goes first (it would fall back to an
untuned kernel, the 26x-slower failure in TVM_NOTES), then the task holding the largest share
of the model's estimated latency (weight x best), halved for every batch in a row that did not
improve it; a task that stopped improving is retired early.
"""

from __future__ import annotations

from typing import Callable

from ..logs.sessions import TaskSummary
from ..logs.workload import record_seconds, valid_run_seconds


class SessionProgress:
    """Trials and best latency per task, shared by the scheduler and the progress callback."""

    # A task without any valid record may use this many times its quota before it is given up.
    RECORDLESS_EXTRA = 3
    # Batches in a row without a 1% gain after which a task is retired (its quota goes to others).
    PATIENCE = 5
    # A batch of at most this many candidates and no gain: the search finds nothing it has not
    # measured (a template's enumerated space is used up). MetaSchedule spends ~10 s
    # per such batch looking for unmeasured ones; on ResNet-18 that was 7 of 10 minutes.
    EXHAUSTED_AT = 2

    def __init__(self, tasks: list[TaskSummary], quotas: list[int], bar=None, on_batch: Callable | None = None):
        self.tasks = tasks
        self.quotas = quotas
        self.bar = bar
        self.on_batch = on_batch
        self.trials_run = 0
        self.errors = 0
        self.timed_out = False
        self.interrupted = False  # Ctrl-C: stop at the next safe point
        self.failure: Exception | None = None  # an error inside MetaSchedule's callbacks (e.g. disk full)
        self.max_trials: int | None = None  # this session's cap over all tasks (--trials)
        self.skipped = [0] * len(tasks)  # candidates already in the log, not measured again
        self.batches = [0] * len(tasks)  # batches joined this session
        self.stale = [0] * len(tasks)  # batches in a row that did not improve the task's best by 1%
        self.exhausted = [False] * len(tasks)  # the search found (almost) nothing new to measure

    @property
    def stopping(self) -> bool:
        """Whether the session must end now: interrupted, or an error it cannot tune past."""
        return self.interrupted or self.failure is not None

    def trials_left(self) -> int | None:
        """How many more candidates this session may measure (None: no session cap)."""
        return None if self.max_trials is None else max(0, self.max_trials - self.trials_run)

    def attempts(self, task_id: int) -> int:
        return self.tasks[task_id].trials_run + self.skipped[task_id]

    def record(self, task_id: int, run_secs_per_candidate: list, skipped: int) -> None:
        """One joined batch of a task: the measured candidates' run times (None for a failure)
        and how many candidates were skipped as already in the log."""
        task = self.tasks[task_id]
        before = task.best_us
        self.skipped[task_id] += skipped
        for run_secs in run_secs_per_candidate:
            task.trials_run += 1
            self.trials_run += 1
            secs = valid_run_seconds(run_secs)
            if secs is None:
                self.errors += 1
                continue
            us = record_seconds(secs) * 1e6
            if task.best_us is None or us < task.best_us:
                task.best_us = us
        self.batches[task_id] += 1
        improved = task.best_us is not None and (before is None or task.best_us < 0.99 * before)
        self.stale[task_id] = 0 if improved else self.stale[task_id] + 1
        # Counting skipped ones too: a resumed session's search may re-propose what earlier
        # sessions logged (it only remembers its own), which says nothing about the space.
        proposed = len(run_secs_per_candidate) + skipped
        if not improved and task.best_us is not None and proposed <= self.EXHAUSTED_AT:
            self.exhausted[task_id] = True
        if self.bar is not None:
            self.bar.update(len(run_secs_per_candidate))
            self.bar.set_postfix_str(self.postfix(task_id), refresh=True)
        if self.on_batch is not None:
            self.on_batch()

    def may_continue(self, task_id: int) -> bool:
        """Whether a task may get another batch: within its quota, still improving, still finding
        new candidates."""
        task, quota = self.tasks[task_id], self.quotas[task_id]
        if task.best_us is None:
            quota *= self.RECORDLESS_EXTRA  # no task left behind: keep trying before giving up
        if task.trials_run >= quota or self.attempts(task_id) >= 2 * quota or self.exhausted[task_id]:
            return False
        return not (self.stale[task_id] >= self.PATIENCE and task.best_us is not None)

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

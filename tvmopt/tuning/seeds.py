"""A task the log has never measured starts from a tuned schedule: its first trial is the best
schedule of the most similar kernel in the target's log or a compatible reference log (the same
layer in the shipped x86-avx2 log, another model's conv+bias+ReLU), fitted to its shapes
(compiler/transfer.py).

MetaSchedule's evolutionary search starts each round from a task's best measured records and
random samples of its space; a task without records starts from random samples only, and a
session of a few trials per task measures schedules far from tuned ones. A seed is measured by
the session's own builder and runner and logged as a real record of the task, so the search
evolves from it and the cost model learns from it; it counts as one of the task's trials.
Kernels without a reduction block (layout changes, reshapes, element-wise) get no seed: their
spaces hold a few schedules the first batch covers, and a borrowed one only widens what a later
session finds new to measure there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from .._compat import ms
from ..compiler.transfer import TunedKernel, block_names, fit_schedule, postprocs_for
from ..native_output import captured
from .builder import ALREADY_MEASURED, NOT_MEASURED
from .progress import SessionProgress


def plant_seeds(contexts: Sequence, task_ids: Sequence[int], donors: Sequence[TunedKernel], builder, runner,
                database, progress: SessionProgress) -> dict[str, str]:
    """Measure and log a borrowed schedule for each of `task_ids` (indices into `contexts`) that a
    donor fits; returns {task name: donor name} of the seeds measured."""
    seeds = []
    postprocs: list = []
    for task_id in task_ids:
        ctx = contexts[task_id]
        if not block_names(ctx.mod["main"])[1]:
            continue  # no reduction (a layout change, a reshape): a space of a few schedules, little time
        postprocs = postprocs or postprocs_for(ctx.mod, ctx.target)
        with captured():
            found = fit_schedule(ctx.task_name, ctx.mod, donors, ctx.target, postprocs, build=False)
        if found is not None:
            seeds.append((task_id, *found))
    if not seeds or progress.stopping:
        return {}
    built = builder.build([ms.builder.BuilderInput(sch.mod, contexts[t].target) for t, sch, _ in seeds])
    args = [ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True) for _, sch, _ in seeds]
    to_run = [i for i, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, _device_type(contexts[seeds[i][0]].target),
                                                args[i]) for i in to_run])
    results = dict(zip(to_run, (f.result() for f in futures)))
    planted: dict[str, str] = {}
    for i, (task_id, sch, donor) in enumerate(seeds):
        error = built[i].error_msg or results[i].error_msg
        if error in (ALREADY_MEASURED, NOT_MEASURED) or progress.stopping:
            continue
        run_secs = results[i].run_secs if i in results and results[i].error_msg is None else None
        ctx = contexts[task_id]
        database.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, database.commit_workload(ctx.mod), run_secs or [1e10], ctx.target, args[i]))
        progress.record(task_id, [run_secs], 0)
        if run_secs is not None:
            planted[ctx.task_name] = donor
    for b in built:
        if b.artifact_path:
            shutil.rmtree(Path(b.artifact_path).parent, ignore_errors=True)
    return planted


def _device_type(target) -> str:
    """'cpu' for an llvm target, 'cuda' for cuda: the device name runners take (MetaSchedule's
    task scheduler passes the target's device type, not its kind)."""
    import tvm

    return tvm.runtime.Device._DEVICE_TYPE_TO_NAME[target.get_target_device_type()]

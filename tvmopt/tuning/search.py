"""The search role: MetaSchedule's evolutionary search, one TuneContext per task."""

from __future__ import annotations

import logging

from .._compat import ms
from .rules import space_generator


def search_strategy(population_size: int, genetic_num_iters: int, init_min_unmeasured: int):
    return ms.search_strategy.EvolutionarySearch(
        population_size=population_size,
        genetic_num_iters=genetic_num_iters,
        init_min_unmeasured=init_min_unmeasured,
    )


def tune_contexts(tasks: list, strategy, num_threads: int, seed: int | None) -> list:
    """One TuneContext per extracted task, all logging to the quiet 'tvmopt.metaschedule' logger.

    Workaround: relax_integration.extracted_tasks_to_tune_contexts builds per-task file
    loggers from a logging config derived from the process's handlers; the second session in
    one process (e.g. under pytest's log capture) crashes there on a handler without a name.
    """
    from tvm.s_tir.meta_schedule.utils import fork_seed

    from .templates import register

    register()  # tvmopt's schedule templates, for blocks the compiler marked
    logger = logging.getLogger("tvmopt.metaschedule")
    return [
        ms.TuneContext(
            mod=task.dispatched[0],
            target=task.target,
            space_generator=space_generator(task.target),  # rules.py: the target's int8 rules
            search_strategy=strategy,
            task_name=task.task_name,
            logger=logger,
            rand_state=rand_state,
            num_threads=num_threads,
        ).clone()
        for task, rand_state in zip(tasks, fork_seed(seed, n=len(tasks)))
    ]

"""tune(): run a MetaSchedule (XGBoost cost model) session for a model on a target.

Records go to tuning_logs/<target log name>/, shared by every model tuned for that target,
so a workload tuned once is reused. Re-running the same command resumes: each task's quota
counts the candidates already in the log, and a candidate already measured is not logged twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .._compat import ms
from ..compiler.passes import extract_tasks, fuse
from ..errors import TuningError
from ..logs import DEFAULT_LOG_ROOT, log_dir_for
from ..logs.sessions import SessionRecord, TaskSummary, TransferInfo, new_session_path, save_session
from ..logs.store import LogDatabase, is_log
from ..logs.workload import estimate_flops, workload_hash
from ..model import Model
from ..targets import TargetSpec, get_target, host_machine
from .budget import Budget, make_budget
from .builder import PersistentBuilder
from .cost_model import warm_cost_model
from .progress import SessionProgress
from .runner import local_runner, rpc_runner
from .scheduler import AddNewToDatabase, CommitEachBatch, ProgressCallback
from .search import search_strategy, tune_contexts

if TYPE_CHECKING:
    from ..runtime.remote import RpcDevice


@dataclass(frozen=True)
class TuningLog:
    """What a session leaves: where its log is, what it measured, what it estimates."""

    log_dir: Path
    session_path: Path
    target: str
    trials_run: int
    tasks: list[TaskSummary]
    estimated_ms: float | None
    wall_s: float
    status: str
    untuned_tasks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def covered_tasks(self) -> list[TaskSummary]:
        """Tasks the log already had (from this or another model): no new trials for them."""
        return [t for t in self.tasks if t.trials_before and t.trials_run == 0 and t.best_us]


def tune(
    model: Model,
    target: str | TargetSpec = "host",
    *,
    budget: str | Budget = "quick",
    log_root: str | os.PathLike = DEFAULT_LOG_ROOT,
    progress: bool = True,
    seed: int | None = None,
    rpc: "RpcDevice | None" = None,
    transfer: Sequence[str | os.PathLike] = (),
    batch_sizes: Sequence[int] | None = None,
) -> TuningLog:
    """Tune every kernel of `model` for `target`; returns the session's TuningLog.

    `rpc` (a tvmopt.runtime.remote.RpcDevice) measures candidates on devices of a TVM RPC tracker
    instead of this machine; candidates are cross-compiled here. `transfer` lists tuning logs
    (other models, other targets) whose records warm-start the XGBoost cost model, so the first
    batches are not picked at random. `batch_sizes` tunes one static copy of the model per batch
    size (compiler/buckets.py), all in this one session and log.
    """
    if batch_sizes:
        from ..compiler.buckets import with_batch_buckets

        model = with_batch_buckets(model, batch_sizes)
    spec = get_target(target)
    plan = budget if isinstance(budget, Budget) else make_budget(budget)
    _check_tunable(model, spec, rpc)
    for path in transfer:
        if not is_log(path):
            raise TuningError(f"transfer log {path}: not a tuning log; give a target's log directory, "
                              "e.g. tuning_logs/x86-avx512")
    if rpc is not None:
        rpc.check_reachable()
    # Measured here, candidates run on this machine's cores; through RPC the device's core count
    # is unknown here, so a target without `num-cores` assumes this machine's.
    tvm_target = spec.tuning_target(len(os.sched_getaffinity(0)))
    extracted = extract_tasks(fuse(model.mod, tvm_target), tvm_target)
    if not extracted:
        raise TuningError(f"model {model.name}: no tunable kernels after fusion")
    log_dir = log_dir_for(spec, log_root)
    database = LogDatabase(log_dir)

    summaries = [
        TaskSummary(
            name=t.task_name,
            workload_hash=workload_hash(t.dispatched[0]),
            weight=int(t.weight),
            flops=estimate_flops(t.dispatched[0]),
            trials_before=database.trials_for(t.dispatched[0]),
            best_us=_us(database.best_seconds(t.dispatched[0])),
        )
        for t in extracted
    ]
    # A global cap (--trials) does not pre-split: the scheduler spends it where the latency is.
    quotas = [max(0, plan.trials_per_task - s.trials_before) for s in summaries]
    session = SessionRecord(
        model=model.name,
        model_sha256=model.sha256,
        target=spec.log_name,
        target_dict=dict(spec.target),
        budget=asdict(plan),
        machine=host_machine(),
        tasks=summaries,
        measured_on=str(rpc) if rpc is not None else "local",
    )
    session_path = new_session_path(log_dir, model.name)
    save_session(session_path, session)

    started = time.monotonic()
    todo = [i for i, q in enumerate(quotas) if q > 0]
    status = "finished"
    planned = sum(quotas[i] for i in todo)
    if plan.max_trials is not None:
        planned = min(planned, plan.max_trials)
    bar = _progress_bar(planned, model.name, spec.log_name) if progress and todo else None
    state = SessionProgress([summaries[i] for i in todo], [quotas[i] for i in todo], bar)

    def checkpoint() -> None:
        session.wall_s = round(time.monotonic() - started, 2)
        session.trials_run = state.trials_run
        session.estimated_ms = _estimate(summaries)
        session.history.append([session.wall_s, session.trials_run, session.estimated_ms])
        save_session(session_path, session)

    state.on_batch = checkpoint
    if todo:
        try:
            cost_model = _cost_model(transfer, tvm_target, session)
            _run_metaschedule([extracted[i] for i in todo], [quotas[i] for i in todo], plan, spec, database,
                              state, started, seed, rpc, cost_model)
            status = "timeout" if state.timed_out else "finished"
        except KeyboardInterrupt:
            session.status = "interrupted"  # every finished batch is already in the log
            checkpoint()
            raise
        finally:
            if bar is not None:
                bar.close()
    for summary, task in zip(summaries, extracted):
        summary.best_us = _us(database.best_seconds(task.dispatched[0]))
    session.status = status
    session.untuned_tasks = [s.name for s in summaries if s.best_us is None]
    checkpoint()
    return TuningLog(
        log_dir=log_dir,
        session_path=session_path,
        target=spec.log_name,
        trials_run=state.trials_run,
        tasks=summaries,
        estimated_ms=session.estimated_ms,
        wall_s=session.wall_s,
        status=status,
        untuned_tasks=session.untuned_tasks,
        warnings=list(database.warnings),
    )


def _cost_model(transfer, tvm_target, session: SessionRecord):
    """"xgb" (a fresh model), or one warm-started from the records of the `transfer` logs."""
    if not transfer:
        return "xgb"
    sources = [LogDatabase(path, readonly=True) for path in transfer]
    model, used = warm_cost_model(sources, tvm_target, max(1, len(os.sched_getaffinity(0))))
    session.transfer = TransferInfo(tuple(str(p) for p in transfer), used)
    return model if used else "xgb"


def _run_metaschedule(tasks, quotas, plan: Budget, spec: TargetSpec, database: LogDatabase,
                      state: SessionProgress, started: float, seed, rpc, cost_model="xgb") -> None:
    cores = max(1, len(os.sched_getaffinity(0)))
    work_dir = tempfile.mkdtemp(prefix="tvmopt-ms-")  # MetaSchedule's verbose per-task logs
    logging.getLogger("tvmopt.metaschedule").setLevel(logging.WARNING)
    measured = database.measured_hashes([task.dispatched[0] for task in tasks])
    builder = PersistentBuilder(max_workers=cores, measured=measured, cross_compiler=spec.cross_compiler)
    if rpc is not None:
        runner = rpc_runner(rpc.host, rpc.port, rpc.key, plan.number, plan.repeat, plan.min_repeat_ms)
    else:
        runner = local_runner(plan.number, plan.repeat, plan.min_repeat_ms)
    try:
        strategy = search_strategy(plan.population, plan.genetic_iters, plan.init_min_unmeasured)
        contexts = tune_contexts(tasks, strategy, cores, seed)
        deadline = started + plan.timeout_s if plan.timeout_s else None
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=[float(t.weight) for t in tasks],
            work_dir=work_dir,
            max_trials_global=sum(quotas) + plan.batch_size * len(quotas),
            max_trials_per_task=max(quotas),
            num_trials_per_iter=min(plan.batch_size, max(quotas)),
            builder=builder,
            runner=runner,
            database=database,
            cost_model=cost_model,
            measure_callbacks=[
                AddNewToDatabase(database, contexts),
                ms.measure_callback.RemoveBuildArtifact(),
                ms.measure_callback.UpdateCostModel(),
                ProgressCallback(state),
            ],
            task_scheduler=CommitEachBatch(state, deadline, plan.max_trials),
        )
    finally:
        builder.shutdown()
        shutil.rmtree(work_dir, ignore_errors=True)


def _check_tunable(model: Model, spec: TargetSpec, rpc) -> None:
    dynamic = model.dynamic_dims()
    if dynamic:
        name, axis, dim = dynamic[0]
        spec_in = next(s for s in model.inputs if s.name == name)
        example = "x".join(str(d) if isinstance(d, int) else "1" for d in spec_in.shape)
        raise TuningError(
            f"model {model.name}: input '{name}' dim {axis} ('{dim}') is dynamic; tuning needs static "
            f"shapes: pass --input-shape {name}:{example} (one per dynamic input)"
        )
    if rpc is not None:
        return
    if spec.device == "cuda":
        from ..runtime import tvm_runtime

        problem = tvm_runtime.gpu_problem(str(spec.requires.gpu or spec.target.get("arch", "")))
        if problem:
            raise TuningError(
                f"target {spec.name}: tuning measures on the GPU, but {problem}; tune on a GPU machine, "
                "or through one registered with an RPC tracker (--rpc-tracker HOST:PORT --rpc-key KEY)"
            )
        return
    problem = spec.requires.problem_on(host_machine())
    if problem:
        raise TuningError(
            f"target {spec.name} cannot be measured on this machine ({problem}); tune on the device "
            "through TVM's RPC tracker: --rpc-tracker HOST:PORT --rpc-key KEY"
        )


def _estimate(tasks: list[TaskSummary]) -> float | None:
    if any(t.best_us is None for t in tasks):
        return None
    return round(sum(t.best_us * t.weight for t in tasks) / 1e3, 6)


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 3)


def _progress_bar(total: int, model: str, target: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"tune {model} on {target}", unit="trial", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)

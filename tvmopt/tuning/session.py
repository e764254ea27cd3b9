"""tune(): run a MetaSchedule (XGBoost cost model) session for a model on a target.

Records go to tuning_logs/<target log name>/, shared by every model tuned for that target,
so a workload tuned once is reused. Re-running the same command resumes: each task's quota
counts the candidates already in the log, and a candidate already measured is not logged twice.
Ctrl-C stops the session at its next safe point (tuning/interrupt.py); an error inside
MetaSchedule's callbacks (a full disk) ends it with every written record kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..threads import default_threads
from .._compat import ms
from ..compiler.options import GraphOptions
from ..compiler.passes import extract_tasks, fuse
from ..errors import LogError, TuningError, TvmoptError, last_line, path_error
from ..logs import DEFAULT_LOG_ROOT, log_dir_for
from ..logs.sessions import SessionRecord, TaskSummary, TransferInfo, mark_stale, new_session_path, save_session
from ..logs.store import LogDatabase, is_log, log_lock
from ..logs.workload import estimate_flops, workload_hash
from ..model import Model
from ..targets import TargetSpec, get_target, host_machine
from .budget import Budget, make_budget
from .builder import PersistentBuilder
from .cost_model import warm_cost_model
from .interrupt import InterruptGuard, TuningInterrupted, kill_children
from .progress import SessionProgress
from .runner import StoppableRunner, local_runner, rpc_runner
from .scheduler import AddNewToDatabase, CommitEachBatch, ProgressCallback, UpdateCostModel
from .search import search_strategy, tune_contexts
from .seeds import plant_seeds

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
    seeded: dict[str, str] = field(default_factory=dict)  # task -> the logged kernel its first trial came from

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
    options: GraphOptions | None = None,
    batch_sizes: Sequence[int] | None = None,
    seed_from_logs: bool = True,
) -> TuningLog:
    """Tune every kernel of `model` for `target`; returns the session's TuningLog.

    `rpc` (a tvmopt.runtime.remote.RpcDevice) measures candidates on devices of a TVM RPC tracker
    instead of this machine; candidates are cross-compiled here. `transfer` lists tuning logs
    (other models, other targets) whose records warm-start the XGBoost cost model, so the first
    batches are not picked at random. `options` (compiler GraphOptions) must match what compile uses.
    `batch_sizes` tunes one static copy of the model per batch size (compiler/buckets.py), all in
    this one session and log. With `seed_from_logs`, a task the log has never measured gets, as its
    first trial, the fitted schedule of the most similar kernel in the target's log or a compatible
    reference log (tuning/seeds.py).
    """
    options = options or GraphOptions()
    model = _with_buckets(model, batch_sizes)
    spec = get_target(target)
    plan = budget if isinstance(budget, Budget) else make_budget(budget)
    _check_tunable(model, spec, rpc)
    for path in transfer:
        if not is_log(path):
            raise TuningError(f"transfer log {path}: not a tuning log; give a target's log directory, "
                              "e.g. tuning_logs/x86-avx512")
    if rpc is not None:
        rpc.check_reachable()
    log_dir = log_dir_for(spec, log_root)
    database = LogDatabase(log_dir)  # first: an unwritable log dir fails before minutes of work
    mark_stale(log_dir)  # sessions killed earlier (kill -9) stop claiming to be running
    tvm_target, extracted = _extract(model, spec, options)
    if not extracted:
        raise TuningError(f"model {model.name}: no tunable kernels after fusion")

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
        optimizations=options.to_json(),
    )
    session_path = new_session_path(log_dir, model.name)
    _save(session_path, session)

    started = time.monotonic()
    todo = [i for i, q in enumerate(quotas) if q > 0]
    status = "finished"
    planned = sum(quotas[i] for i in todo)
    if plan.max_trials is not None:
        planned = min(planned, plan.max_trials)
    bar = _progress_bar(planned, model.name, spec.log_name) if progress and todo else None
    state = SessionProgress([summaries[i] for i in todo], [quotas[i] for i in todo], bar)
    state.max_trials = plan.max_trials

    def checkpoint() -> None:
        session.wall_s = round(time.monotonic() - started, 2)
        session.trials_run = state.trials_run
        session.estimated_ms = _estimate(summaries)
        session.history.append([session.wall_s, session.trials_run, session.estimated_ms])
        _save(session_path, session)

    def stop_soon() -> None:  # first Ctrl-C (from the watcher thread)
        state.interrupted = True
        print("\ntvmopt: stopping at the next safe point (finished measurements are kept); Ctrl-C again to "
              "exit now", file=sys.stderr, flush=True)

    def exit_now() -> None:  # second Ctrl-C, or the first one's grace ran out (watcher thread)
        with contextlib.ExitStack() as held:
            with contextlib.suppress(Exception):
                held.enter_context(log_lock(log_dir))  # waits out an append in progress; held until exit
            session.status = "interrupted"
            session.trials_run = max(state.trials_run, database.records_written)  # the last batch may be uncounted
            with contextlib.suppress(Exception):
                _save(session_path, session)
            print(f"tvmopt: interrupted: {session.trials_run} trials kept in {log_dir} (session {session_path.name}); "
                  "run the same command to resume", file=sys.stderr, flush=True)
            kill_children()
            os._exit(130)  # still holding the log lock: no record is cut in half

    state.on_batch = checkpoint
    seeded: dict[str, str] = {}
    if todo:
        try:
            with InterruptGuard(stop_soon, exit_now):
                cost_model = _cost_model(transfer, tvm_target, session)
                fresh = [k for k, i in enumerate(todo) if summaries[i].trials_before == 0]
                donors = _seed_donors(spec, log_root) if seed_from_logs and fresh else []
                seeded = _run_metaschedule([extracted[i] for i in todo], [quotas[i] for i in todo], plan, spec,
                                           database, state, started, seed, rpc, cost_model, fresh, donors,
                                           session)
            status = "interrupted" if state.interrupted else "timeout" if state.timed_out else "finished"
        except KeyboardInterrupt:
            session.status = "interrupted"  # every finished batch is already in the log
            checkpoint()
            raise
        except Exception:
            if database.write_error is None:  # else: reported below, in place of TVM's bare RuntimeError
                session.status = "failed"
                with contextlib.suppress(Exception):
                    checkpoint()
                raise
            status = "failed"
        except BaseException:
            session.status = "failed"
            with contextlib.suppress(Exception):
                checkpoint()
            raise
        finally:
            if bar is not None:
                bar.close()
    for summary, task in zip(summaries, extracted):
        summary.best_us = _us(database.best_seconds(task.dispatched[0]))
    state.failure = state.failure or database.write_error
    session.status = "failed" if state.failure is not None else status
    session.untuned_tasks = [s.name for s in summaries if s.best_us is None]
    try:
        checkpoint()
    except TvmoptError:
        if state.failure is None:
            raise
    if state.failure is not None:  # e.g. the disk filled up: every record written before is in the log
        failure = state.failure
        if isinstance(failure, TvmoptError):
            raise type(failure)(f"{failure} (tuning stopped; {state.trials_run} trials kept in {log_dir})")
        raise TuningError(f"tuning stopped by an error in MetaSchedule's callbacks: {last_line(failure)} "
                          f"({state.trials_run} trials kept in {log_dir})") from failure
    result = TuningLog(
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
        seeded=seeded,
    )
    if state.interrupted:
        raise TuningInterrupted(result)
    return result


def task_modules(model: Model, target: str | TargetSpec = "host", options: GraphOptions | None = None,
                 batch_sizes: Sequence[int] | None = None) -> list[tvm.IRModule]:
    """The workloads `tune` would search for `model` on `target` (what a log's records must match)."""
    _, extracted = _extract(_with_buckets(model, batch_sizes), get_target(target), options or GraphOptions())
    return [task.dispatched[0] for task in extracted]


def _with_buckets(model: Model, batch_sizes: Sequence[int] | None) -> Model:
    if not batch_sizes:
        return model
    from ..compiler.buckets import with_batch_buckets

    return with_batch_buckets(model, batch_sizes)


def _extract(model: Model, spec: TargetSpec, options: GraphOptions):
    """(the tuning target, MetaSchedule's extracted tasks) for `model`, as `tune` searches them."""
    # Measured here, candidates run on this machine's cores; through RPC the device's core count
    # is unknown here, so a target without `num-cores` assumes this machine's.
    tvm_target = spec.tuning_target(default_threads())
    return tvm_target, extract_tasks(fuse(model.mod, tvm_target, options), tvm_target)


def _save(path: Path, session: SessionRecord) -> None:
    try:
        save_session(path, session)
    except OSError as err:
        raise path_error(err, "write the session record", path, LogError) from err


def _cost_model(transfer, tvm_target, session: SessionRecord):
    """"xgb" (a fresh model), or one warm-started from the records of the `transfer` logs."""
    if not transfer:
        return "xgb"
    sources = [LogDatabase(path, readonly=True) for path in transfer]
    model, used = warm_cost_model(sources, tvm_target, max(1, len(os.sched_getaffinity(0))))
    session.transfer = TransferInfo(tuple(str(p) for p in transfer), used)
    return model if used else "xgb"


def _seed_donors(spec: TargetSpec, log_root) -> list:
    """The logged kernels a new task's first trial may borrow from (compiler/records.py)."""
    from ..compiler.records import logged_kernels

    try:
        return logged_kernels(spec, Path(log_root))
    except Exception as err:  # noqa: BLE001 - an unreadable reference log: tune without seeds
        logging.getLogger("tvmopt").warning("no seeds from the logs: %s", last_line(err))
        return []


def _run_metaschedule(tasks, quotas, plan: Budget, spec: TargetSpec, database: LogDatabase,
                      state: SessionProgress, started: float, seed, rpc, cost_model="xgb",
                      fresh: Sequence[int] = (), donors: Sequence = (), session: SessionRecord | None = None
                      ) -> dict[str, str]:
    """Tune `tasks`; the `fresh` ones (never measured) first measure a seed borrowed from `donors`.
    Returns the seeds measured: {task: donor}."""
    cores = max(1, len(os.sched_getaffinity(0)))
    logging.getLogger("tvmopt.metaschedule").setLevel(logging.WARNING)
    measured = database.measured_hashes([task.dispatched[0] for task in tasks])
    builder = PersistentBuilder(max_workers=cores, measured=measured, cross_compiler=spec.cross_compiler,
                                progress=state)
    if rpc is not None:
        runner = rpc_runner(rpc.host, rpc.port, rpc.key, plan.number, plan.repeat, plan.min_repeat_ms)
    else:
        runner = local_runner(plan.number, plan.repeat, plan.min_repeat_ms)
    pool = getattr(runner, "pool", None)  # LocalRunner's worker process
    runner = StoppableRunner(runner, state)
    try:
        strategy = search_strategy(plan.population, plan.genetic_iters, plan.init_min_unmeasured)
        contexts = tune_contexts(tasks, strategy, cores, seed)
        seeded = plant_seeds(contexts, fresh, donors, builder, runner, database, state) if donors else {}
        if session is not None:
            session.seeded = seeded  # saved with the next batch's checkpoint
        deadline = started + plan.timeout_s if plan.timeout_s else None
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=[float(t.weight) for t in tasks],
            work_dir=str(database.dir),  # only read to create a JSON database; we pass our own
            max_trials_global=sum(quotas) + plan.batch_size * len(quotas),
            max_trials_per_task=max(quotas),
            num_trials_per_iter=min(plan.batch_size, max(quotas)),
            builder=builder,
            runner=runner,
            database=database,
            cost_model=cost_model,
            measure_callbacks=[
                AddNewToDatabase(database, contexts, state),
                ms.measure_callback.RemoveBuildArtifact(),
                UpdateCostModel(state),
                ProgressCallback(state),
            ],
            task_scheduler=CommitEachBatch(state, deadline, plan.max_trials),
        )
    finally:
        builder.shutdown()
        if pool is not None:
            pool.shutdown()
    return seeded


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

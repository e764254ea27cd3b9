"""Which tuning records a build applies: the target's own log, then compatible reference logs.

A reference log is the log of another registered target whose code this target's machines can
run (same arch, a subset of its CPU features): its schedules apply as they are, e.g. the shipped
x86-avx512 and x86-avx2 logs on an AVX-512 host. They are looked up under the user's log root
and among the logs shipped with tvmopt.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import tvm
from tvm import relax

from ..logs import log_dir_for
from ..logs.store import LogDatabase, is_log
from ..logs.workload import record_seconds, workload_hash
from ..resources import shipped_logs_root
from ..runtime.artifact import AppliedRecord, TuningInfo
from ..targets import TargetSpec, list_targets
from .int8 import GEMM_BLOCK
from .passes import extract_tasks
from .sampled import schedule_by_samples
from .transfer import TunedKernel, block_names, borrow_schedules, buffer_shapes


def reference_logs(spec: TargetSpec, log_root: Path) -> list[Path]:
    """Compatible reference logs under `log_root` and the shipped logs, most specific first."""
    if spec.device != "cpu" or not spec.requires.arch:
        return []
    own = log_dir_for(spec, log_root).resolve()
    found: dict[Path, tuple[int, Path]] = {}
    for root in (log_root, shipped_logs_root()):
        for other in list_targets():
            path = log_dir_for(other, root)
            key = path.resolve()
            # A host log among the shipped ones is no shipped log: in an editable install the
            # shipped root is the repo's tuning_logs/, where `make demo` writes this machine's
            # log; taken as a reference it was credited as the target's own log.
            if root != log_root and other.name == "host":
                continue
            if other.device != "cpu" or key == own or key in found or not is_log(path):
                continue
            if other.requires.runs_on(spec.requires):
                found[key] = (len(other.requires.cpu_flags), path)
    return [path for _, path in sorted(found.values(), key=lambda f: -f[0])]


def reference_blocks(spec: TargetSpec, log_root: Path) -> list[int]:
    """Channel blocks the compatible reference targets' logs were tuned with (e.g. 8 for the shipped
    x86-avx2 log, which an AVX-512 host, whose own block is 16, can also use)."""
    from .layout import block_size

    blocks = []
    for path in reference_logs(spec, log_root):
        other = next((t for t in list_targets() if t.log_name == path.name), None)
        block = block_size(other.tvm_target()) if other is not None else None
        if block and block not in blocks:
            blocks.append(block)
    return blocks


def open_records(spec: TargetSpec, log_root: Path) -> tuple[LogDatabase | None, dict[str, str], Path]:
    """The target's own log plus, for the workloads it lacks, records of compatible reference logs
    (each workload's best record only: what a build applies or borrows).

    Returns the (read-only) database, the name of the log each adopted workload came from (by
    workload hash), and the target's own log directory.
    """
    log_dir = log_dir_for(spec, log_root)
    database = LogDatabase(log_dir, readonly=True, best_only=True) if is_log(log_dir) else None
    sources: dict[str, str] = {}
    for path in reference_logs(spec, log_root):
        if database is None:
            database = LogDatabase(path, readonly=True, best_only=True)
            sources.update({digest: path.name for digest in database.workloads_by_hash()})
        else:
            adopted = database.add_fallback(LogDatabase(path, readonly=True, best_only=True))
            sources.update({digest: path.name for digest in adopted})
    return database, sources, log_dir


def apply_records(fused: tvm.IRModule, target: tvm.target.Target, spec: TargetSpec,
                  log_root: Path | None) -> tuple[tvm.IRModule, TuningInfo, list[TunedKernel]]:
    """Replace every fused kernel that has a valid record by its best schedule; say which did.

    Also returns the schedules the kernels without a record may borrow (`finish_schedules`): the
    applied ones and the best of every other workload in the logs.
    """
    if log_root is None:
        return fused, TuningInfo(), []
    database, sources, log_dir = open_records(spec, Path(log_root))
    if database is None:
        return fused, TuningInfo(log_dir=str(log_dir), tasks_total=_count_tasks(fused, target)), []
    try:
        tasks = extract_tasks(fused, target)
    except Exception:  # noqa: BLE001 - dynamic shapes: nothing can match a record anyway
        return fused, TuningInfo(log_dir=str(log_dir)), []
    applied, tuned = [], []
    for task in tasks:
        best = database.best_record(task.dispatched[0])
        if best is not None:
            log = sources.get(workload_hash(task.dispatched[0]), log_dir.name)
            applied.append(AppliedRecord(task.task_name, round(record_seconds(best.run_secs) * 1e6, 3), log))
            func = task.dispatched[0]["main"]
            tuned.append(TunedKernel(task.task_name, best.trace, buffer_shapes(func), block_names(func)[0]))
    if applied:
        with target, database:
            fused = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(fused)
    used = {workload_hash(task.dispatched[0]) for task in tasks}
    donors = tuned + _log_donors(database, used, sources, [log_dir, *reference_logs(spec, Path(log_root))])
    references = tuple(sorted({a.log for a in applied} - {log_dir.name}))
    return fused, TuningInfo(str(log_dir), len(tasks), len(applied), tuple(applied), references), donors


def finish_schedules(fused: tvm.IRModule, target: tvm.target.Target, tuning: TuningInfo,
                     donors: list[TunedKernel], prepack: bool = True,
                     tuning_target: tvm.target.Target | None = None,
                     sample: bool = True) -> tuple[tvm.IRModule, TuningInfo]:
    """Kernels without a record borrow a similar kernel's schedule; with `sample`, reduction
    kernels (GEMMs, convs) that none fits get a sample of the design space (sampled.py); then
    weights are pre-packed for the scheduled kernels that asked for a packed layout."""
    fused, borrowed = borrow_schedules(fused, target, donors, tuning_target)
    sampled: list[str] = []
    if sample:
        fused, sampled = schedule_by_samples(fused, target, _fp32_reduction, space_target=tuning_target)
    prepacked: tuple[str, ...] = ()
    if prepack and (tuning.tasks_tuned or borrowed or sampled):
        from .passes import prepack_weights

        fused = prepack_weights(fused, target)
        prepacked = tuple(sorted(gv.name_hint for gv in fused.functions if gv.name_hint.endswith("_prepacked")))
    return fused, replace(tuning, prepacked=prepacked, schedules_borrowed=tuple(sorted(borrowed.items())),
                          schedules_sampled=tuple(sorted(sampled)))


def _fp32_reduction(func) -> bool:
    """A kernel with a reduction block (a GEMM, a conv, a pool, a norm: where TVM's scalar default
    costs most), other than an int8 GEMM, which gets its tensorized sample later (int8_schedule.py)."""
    blocks, reductions = block_names(func)
    return bool(reductions) and GEMM_BLOCK not in blocks


def logged_kernels(spec: TargetSpec, log_root: Path) -> list[TunedKernel]:
    """The best schedule of every workload in the target's log and its compatible reference logs:
    what a kernel that no record fits may start from (a tuning session's seeds)."""
    database, sources, log_dir = open_records(spec, Path(log_root))
    if database is None:
        return []
    return _log_donors(database, set(), sources, [log_dir, *reference_logs(spec, Path(log_root))])


def _log_donors(database: LogDatabase, used: set[str], sources: dict[str, str],
                logs: list[Path]) -> list[TunedKernel]:
    """The best schedule of every other workload in the logs (other models' kernels), named by the
    task that tuned it and its log, for the kernels that no record fits."""
    from ..logs.sessions import read_sessions, task_names

    names: dict[str, str] = {}
    for path in reversed(logs):  # the own log's names last: they win
        names.update(task_names(read_sessions(path)[0]))
    log_dir = logs[0]
    donors = []
    for mod in database.workload_modules():
        digest = workload_hash(mod)
        best = None if digest in used else database.best_record(mod)
        if best is not None:
            name = f"{names.get(digest, 'workload ' + digest)} of the {sources.get(digest, log_dir.name)} log"
            func = mod["main"]
            donors.append(TunedKernel(name, best.trace, buffer_shapes(func), block_names(func)[0], own=False))
    return donors


def _count_tasks(fused: tvm.IRModule, target: tvm.target.Target) -> int:
    try:
        return len(extract_tasks(fused, target))
    except Exception:  # noqa: BLE001 - dynamic shapes
        return 0

"""`tvmopt tune MODEL -t TARGET`: a resumable tuning session, then a measured check of its estimate."""

from __future__ import annotations

import sys

from .common import (batch_sizes_arg, import_from_args, log_arg, model_args, rpc_args, rpc_device, table,
                     target_arg)


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="run a tuning session (resumable) for a model on a target",
        description=(
            "Search schedules for every kernel with MetaSchedule and its XGBoost cost model, measuring "
            "candidates on this machine. Records are appended to tuning_logs/<target>/ as they are measured: "
            "re-running the same command resumes (a task's budget counts what the log already holds), "
            "and a session killed at any point keeps every finished measurement. Ctrl-C stops at the next "
            "safe point (exit 130); a second Ctrl-C exits at once."
        ),
    )
    model_args(p)
    batch_sizes_arg(p)
    target_arg(p)
    log_arg(p)
    p.add_argument("--budget", choices=["smoke", "quick", "full"], default="quick",
                   help="preset: smoke (CI, seconds), quick (minutes, default), full (serious)")
    p.add_argument("--trials", type=int, help="at most this many trials in this session, over all tasks")
    p.add_argument("--trials-per-task", type=int, help="trials per task, counted across sessions (overrides the preset)")
    p.add_argument("--timeout", type=float, metavar="MIN",
                   help="stop after MIN minutes, a positive number (finished measurements are kept); no limit without it")
    p.add_argument("--seed", type=int, help="random seed of the search")
    p.add_argument("--transfer-from", action="append", default=[], metavar="LOG",
                   help="warm-start the XGBoost cost model from this tuning log (another model or target, "
                        "e.g. tuning_logs/x86-avx512); repeatable")
    p.add_argument("--no-seeds", dest="seeds", action="store_false",
                   help="do not start a task the log has never measured from the fitted schedule of a similar "
                        "kernel in the target's log or a compatible reference log (by default its first trial)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the final check: compile with the log and compare the measured model latency "
                        "with the session's estimate")
    rpc_args(p, "measure candidates on devices registered with this TVM RPC tracker (cross targets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..tuning import interrupt, make_budget, tune
    from ..tuning.interrupt import TuningInterrupted

    # At a terminal, a first Ctrl-C gets the prompt back within ~2 s: the session stops at its next
    # safe point, or after that ends under the log lock (every written record stays whole).
    interrupt.GRACE_S = 2.0

    rpc = rpc_device(args)
    model = import_from_args(args)
    budget = make_budget(args.budget, trials=args.trials, trials_per_task=args.trials_per_task,
                         timeout_s=args.timeout * 60 if args.timeout is not None else None)
    where = f"on {rpc}" if rpc else "on this machine"
    print(f"tuning {model.name} for {args.target} {where} ({budget.describe()}); log: {args.log_dir}", file=sys.stderr)
    try:
        log = tune(model, args.target, budget=budget, log_root=args.log_dir, progress=not args.no_progress,
                   seed=args.seed, rpc=rpc, transfer=args.transfer_from, seed_from_logs=args.seeds)
    except TuningInterrupted as stop:
        log = stop.log
        print(f"tvmopt: interrupted: {log.trials_run} trials kept in {log.log_dir} (session {log.session_path.name}); "
              "run the same command to resume", file=sys.stderr)
        return 130
    print_tuning(log)
    if not args.no_check and rpc is None:
        from ..measure.check import check_estimate

        check = check_estimate(model, args.target, args.log_dir, log.estimated_ms)
        if check is not None:
            print(check.describe())
    return 0


def print_tuning(log) -> None:
    rows = [
        (t.name, t.weight, t.trials_before + t.trials_run, t.trials_run,
         f"{t.best_us:.2f}" if t.best_us else "NO RECORD", f"{t.gflops:.1f}" if t.gflops else "-")
        for t in log.tasks
    ]
    table(("task", "weight", "trials", "new", "best us", "GFLOP/s"), rows)
    if log.covered_tasks:
        print(f"\n{len(log.covered_tasks)}/{len(log.tasks)} tasks were already tuned in the log (by this or another "
              "model): no new trials for them")
    if log.seeded:
        logs = sorted({donor.rsplit(" of the ", 1)[-1] for donor in log.seeded.values()})
        print(f"\n{len(log.seeded)}/{len(log.tasks)} tasks started from the schedule of a similar kernel in "
              f"the {', '.join(logs)} (their first trial; --no-seeds to start from scratch)")
    est = f"{log.estimated_ms:.3f} ms" if log.estimated_ms is not None else "n/a"
    print(f"\n{log.status}: {log.trials_run} new trials in {log.wall_s:.1f} s; estimated model latency {est}")
    if log.untuned_tasks:
        print(f"WARNING: {len(log.untuned_tasks)} task(s) have no valid record and will use untuned kernels: "
              + ", ".join(log.untuned_tasks) + " (run tune again, or raise --trials-per-task)")
    for warning in log.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"log: {log.log_dir}  session: {log.session_path}")

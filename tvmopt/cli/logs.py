"""`tvmopt logs ACTION`: show, validate, compare, merge, prune, export, import tuning logs."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import TvmoptError, UsageError
from .common import log_arg, table

LOG_HELP = "a target's log directory, e.g. tuning_logs/x86-avx512"


def register(sub) -> None:
    p = sub.add_parser("logs", help="tuning logs: show, validate, compare, merge, prune, export, import",
                       description="Look into and maintain tuning logs (one directory per target under tuning_logs/, "
                                   "e.g. tuning_logs/x86-avx512). `tvmopt logs ACTION --help` for each action.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = _action(actions, "show", "workloads, trials, best latency, GFLOP/s, sessions and machines of a log",
                "Workloads (task, trials, best latency, GFLOP/s), sessions and machines of one target's log "
                "(e.g. tuning_logs/host-znver4-2c).", run_show)
    a.add_argument("log", metavar="LOG", help=LOG_HELP)
    a = _action(actions, "validate", "line counts and every corrupt or unreadable line",
                "Line counts and every corrupt or unreadable line (skipped, never fatal), and every record that "
                "cannot be verified against its workload (e.g. database_workload.json was lost or replaced); exit "
                "code 1 when there are problems.", run_validate)
    a.add_argument("log", metavar="LOG", help=LOG_HELP)
    a = _action(actions, "compare", "compare logs of several targets or machines, workload by workload",
                "Match workloads across two or more logs (by structural hash) and show each log's best latency, "
                "GFLOP/s, trials and ratio to the first log, the estimated latency of every model tuned in all of "
                "them, and which workloads only some logs have. --cross-apply also builds the first log's best "
                "schedules for each other log's target and times them here against that log's own best "
                "(the targets must run on this machine).", run_compare)
    a.add_argument("logs", nargs="+", metavar="LOG", help="two or more log directories; ratios are to the first")
    a.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with plots")
    a.add_argument("--cross-apply", action="store_true",
                   help="time the first log's best schedules on the other logs' targets (builds and runs here)")
    a = _action(actions, "merge", "add the records of logs into another log (duplicates skipped)",
                "Add every record of the SRC logs to DEST (created if missing); a record already in DEST is "
                "skipped. Safe while DEST is being tuned.", run_merge)
    a.add_argument("sources", nargs="+", metavar="SRC", help="log directories to read")
    a.add_argument("--into", required=True, metavar="DEST", help="log directory to add the records to")
    a = _action(actions, "prune", "keep only the K best valid records per workload",
                "Keep the K fastest valid records of each workload; failed candidates are dropped. Writes a new "
                "log with -o, else replaces LOG atomically (refused while a tuning session is running on it).",
                run_prune)
    a.add_argument("log", metavar="LOG", help=LOG_HELP)
    a.add_argument("--top-k", type=int, required=True, metavar="K", help="records to keep per workload")
    a.add_argument("-o", "--output", metavar="OUT", help="write the pruned log here instead of in place")
    a.add_argument("--only-for", nargs="+", metavar="MODEL",
                   help="also drop the workloads none of these models (ONNX or .pt2) has any more, e.g. after a "
                        "tvmopt upgrade changed the graph passes: only records a compile can still apply stay")
    a.add_argument("-t", "--target", metavar="TARGET",
                   help="the target the log is for, to find the models' kernels (default: the log directory's "
                        "name, e.g. x86-avx512)")
    a.add_argument("--batch-sizes", metavar="N,N,...",
                   help="with --only-for: the batch buckets the models are tuned for (models with a dynamic batch dim)")
    a = _action(actions, "export", "write a log as one portable file",
                "Write one target's log (workloads, all records, session records) as one JSON file (format "
                "tvmopt-log/1) to copy to another machine.", run_export)
    a.add_argument("log", metavar="LOG", help=LOG_HELP)
    a.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write, e.g. x86-avx512.tvmlog.json")
    a = _action(actions, "import", "merge an exported file into the logs",
                "Merge a file written by `logs export` into LOG_DIR/<its target> (created if missing); records "
                "already there are skipped.", run_import)
    a.add_argument("file", metavar="FILE", help="file written by `tvmopt logs export`")
    log_arg(a)


def _action(actions, name: str, short: str, description: str, func) -> argparse.ArgumentParser:
    a = actions.add_parser(name, help=short, description=description)
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(func=func)
    return a


def run_show(args) -> int:
    from ..logs.report import show

    report = show(args.log)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return 0
    table(("task", "workload", "MFLOP", "trials", "valid", "best us", "GFLOP/s"),
          [(w.name, w.workload_hash, f"{w.flops / 1e6:.3f}", w.trials, w.valid_trials,
            f"{w.best_us:.2f}" if w.best_us else "NO RECORD", f"{w.gflops:.1f}" if w.gflops else "-")
           for w in report.workloads])
    print(f"\nsessions ({len(report.sessions)}):")
    table(("started", "model", "status", "new trials", "wall s", "measured on"),
          [(s.started, s.model, s.status, s.trials_run, s.wall_s, s.measured_on) for s in report.sessions])
    for machine in report.machines:
        print(f"machine: {machine.describe()}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def run_validate(args) -> int:
    from ..logs.report import validate

    report = validate(args.log)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"{report.log}: {report.workload_lines} workload lines, {report.record_lines} record lines, "
              f"{report.records_loaded} records loaded")
        for problem in report.problems:
            print(f"problem: {problem}")
        if report.set_aside:
            from ..logs.store import UNVERIFIED_FILE

            print(f"note: {report.set_aside} record(s) were set aside earlier in {UNVERIFIED_FILE} (their workload "
                  "could not be verified); they are not part of the log")
        print("ok" if report.ok else f"{len(report.problems)} problem(s); the rest is usable")
    return 0 if report.ok else 1


def run_compare(args) -> int:
    from ..errors import LogError
    from ..logs.compare import compare, format_text, render_html

    if len(args.logs) < 2:
        raise LogError("logs compare needs two or more log directories")
    report = compare(args.logs, cross_apply=args.cross_apply)
    if args.html:
        render_html(report, args.html)
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    if args.html:
        print(f"wrote {args.html}", file=sys.stderr)
    return 0


def run_merge(args) -> int:
    from ..logs.maintain import merge

    _print(args, merge(args.sources, args.into))
    return 0


def run_prune(args) -> int:
    from ..logs.maintain import prune

    report = prune(args.log, args.top_k, args.output, keep_only=_kept_workloads(args))
    _print(args, report, f"{report.log}: kept {report.records_after} of {report.records_before} records "
                         f"(best {report.top_k} per workload), {report.workloads_after} workloads")
    return 0


def _kept_workloads(args):
    """The kernels of `--only-for`'s models on the log's target (None: keep every workload)."""
    if not args.only_for:
        if args.batch_sizes or args.target:
            raise UsageError("--target and --batch-sizes only mean something with --only-for MODEL")
        return None
    from pathlib import Path

    from ..compiler.buckets import parse_batch_sizes
    from ..frontends import import_model
    from ..tuning import task_modules

    target = args.target or Path(args.log).resolve().name
    if not args.target:
        from ..targets import get_target

        try:
            get_target(target)
        except TvmoptError:
            raise UsageError(f"{args.log}: the directory name {target!r} names no target; give the log's target "
                             "with -t TARGET (e.g. -t host, -t x86-avx512)") from None
    sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None
    tasks = []
    for path in args.only_for:
        model = import_model(path)
        dynamic_batch = bool(model.inputs and model.inputs[0].shape and not isinstance(model.inputs[0].shape[0], int))
        buckets = sizes if sizes and dynamic_batch else None
        tasks += task_modules(model, target, batch_sizes=buckets)
    return tasks


def run_export(args) -> int:
    from ..logs.maintain import export_log

    report = export_log(args.log, args.output)
    _print(args, report, f"wrote {report.file}: target {report.target}, {report.workloads} workloads, "
                         f"{report.records} records, {report.sessions} sessions")
    return 0


def run_import(args) -> int:
    from ..logs.maintain import import_log

    _print(args, import_log(args.file, args.log_dir))
    return 0


def _print(args, report, text: str | None = None) -> None:
    """The report as JSON (--json) or one line; merge and import reports share their line."""
    if text is None:
        text = (f"{report.log}: {report.records_added} records added, {report.duplicates_skipped} duplicates "
                f"skipped; now {report.records} records, {report.workloads} workloads")
    print(json.dumps(report.to_json(), indent=2) if args.json else text)

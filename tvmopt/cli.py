"""Command line: thin argparse adapters over the library API (same verbs, same objects).

Every TvmoptError becomes one line on stderr and exit code 2; --verbose shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable

EPILOG = """\
pipeline:  tvmopt inspect MODEL  ->  tvmopt tune MODEL -t host  ->  tvmopt compile MODEL -t host -o out/
           ->  tvmopt run out/
Tuning records go to tuning_logs/<target>/ and are reused by every later tune/compile for that target.
Try `tvmopt demo` for the whole path on a bundled example model."""


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX file (.onnx) or torch.export program (.pt2)")
    parser.add_argument(
        "--input-shape", action="append", default=[], metavar="NAME:DIMS",
        help="fix an input's shape, e.g. input_ids:1x128 (repeat per input); needed to tune dynamic dims",
    )


def _target_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t", "--target", default="host",
        help="registry name (see `tvmopt targets`) or path to a target .json (default: host)",
    )


def _log_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-dir", default="tuning_logs", help="root of the tuning logs (default: tuning_logs)")


def _rpc_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", help=what)
    parser.add_argument("--rpc-key", metavar="KEY", help="device key the RPC servers registered with")


def _rpc_device(args):
    if not args.rpc_tracker:
        if args.rpc_key:
            from .remote import RemoteError

            raise RemoteError("--rpc-key needs --rpc-tracker HOST:PORT")
        return None
    from .remote import RpcDevice

    return RpcDevice.parse(args.rpc_tracker, args.rpc_key)


def build_parser() -> argparse.ArgumentParser:
    from .zoo import ZOO  # names only; torch is imported when a zoo model is built

    parser = argparse.ArgumentParser(
        prog="tvmopt",
        description="Tune, compile and deploy ONNX / PyTorch models with Apache TVM (Relax + MetaSchedule).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and TVM's log")
    parser.add_argument("--version", action="store_true", help="print tvmopt and TVM versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("targets", help="list the target registry, or show one target",
                       description="List targets (targets/*.json), or print one with `targets show NAME`.")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="target to show")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("inspect", help="inputs, outputs, operators, fused kernels and tuning tasks of a model",
                       description="Import a model and show what TVM makes of it, without building anything.")
    _model_args(p)
    _target_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "tune", help="run a tuning session (resumable) for a model on a target",
        description=(
            "Search schedules for every kernel with MetaSchedule and its XGBoost cost model, measuring "
            "candidates on this machine. Records are appended to tuning_logs/<target>/ as they are measured: "
            "re-running the same command resumes (a task's budget counts what the log already holds), "
            "and a session killed at any point keeps every finished measurement."
        ),
    )
    _model_args(p)
    _target_arg(p)
    _log_arg(p)
    p.add_argument("--budget", choices=["smoke", "quick", "full"], default="quick",
                   help="preset: smoke (CI, seconds), quick (minutes, default), full (serious)")
    p.add_argument("--trials", type=int, help="at most this many trials in this session, over all tasks")
    p.add_argument("--trials-per-task", type=int, help="trials per task, counted across sessions (overrides the preset)")
    p.add_argument("--timeout", type=float, metavar="MIN", help="stop after MIN minutes (finished measurements are kept)")
    p.add_argument("--seed", type=int, help="random seed of the search")
    p.add_argument("--transfer-from", action="append", default=[], metavar="LOG",
                   help="warm-start the XGBoost cost model from this tuning log (another model or target, "
                        "e.g. tuning_logs/x86-avx512); repeatable")
    p.add_argument("--no-check", action="store_true",
                   help="skip the final check: compile with the log and compare the measured model latency "
                        "with the session's estimate")
    _rpc_args(p, "measure candidates on devices registered with this TVM RPC tracker (cross targets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("compile", help="apply the best tuning records and build an artifact",
                       description="Build MODEL for a target into an artifact directory (library + manifest.json). "
                                   "Kernels without a tuning record get TVM's default schedule.")
    _model_args(p)
    _target_arg(p)
    _log_arg(p)
    p.add_argument("--no-tuning", action="store_true", help="ignore tuning logs (untuned build)")
    p.add_argument("-o", "--output", help="artifact directory (default: artifacts/<model>-<target>)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="load an artifact, run it, report latency",
                       description="Run an artifact on this machine: random inputs of the right shape/dtype "
                                   "unless --inputs is given; prints latency median/p90 and output shapes.")
    p.add_argument("artifact", help="artifact directory written by `tvmopt compile`")
    p.add_argument("--inputs", help=".npz file with one array per input name")
    p.add_argument("--save-outputs", metavar="FILE.npz", help="write the outputs to an .npz file")
    p.add_argument("--repeat", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _rpc_args(p, "run on a device registered with this TVM RPC tracker and report its latency")
    p.add_argument("--emulate", action="store_true",
                   help="run an aarch64 artifact here under QEMU (correctness only: no latency is reported)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "bench", help="TVM untuned/tuned vs ONNX Runtime and PyTorch, measured in one run",
        description="Benchmark a zoo model (" + ", ".join(ZOO) + ") or any ONNX file on this "
                    "machine: TVM untuned, TVM with the best records in the log, ONNX Runtime (same thread count), "
                    "and for zoo models PyTorch eager and torch.compile. Interleaved rounds, medians, ratio to "
                    "ONNX Runtime, max abs difference of outputs.",
    )
    p.add_argument("model", help="zoo name or ONNX file")
    _target_arg(p)
    _log_arg(p)
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    p.add_argument("--runs", type=int, default=10, help="calls per contender per round (default 10)")
    p.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (its compile takes a while)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("logs", help="tuning logs: show, validate, compare, merge, prune, export, import",
                       description="Look into and maintain tuning logs (one directory per target under tuning_logs/, "
                                   "e.g. tuning_logs/x86-avx512). `tvmopt logs ACTION --help` for each action.")
    _logs_parser(p)

    p = sub.add_parser("demo", help="tune -> compile -> run the bundled example model against ONNX Runtime",
                       description="The whole path on a small bundled CNN (or --model): untuned, tuned and "
                                   "ONNX Runtime latency, and the max abs difference to ONNX Runtime.")
    p.add_argument("--model", help="ONNX file to use instead of the bundled example")
    _target_arg(p)
    _log_arg(p)
    p.add_argument("--budget", choices=["smoke", "quick", "full"], default="quick")
    p.add_argument("--trials-per-task", type=int)
    p.add_argument("--timeout", type=float, metavar="MIN", default=5.0, help="tuning time limit (default 5 min)")
    p.add_argument("--output", default="artifacts/demo", help="artifact directory (default artifacts/demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def _logs_parser(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    log_help = "a target's log directory, e.g. tuning_logs/x86-avx512"
    a = actions.add_parser("show", help="workloads, trials, best latency, GFLOP/s, sessions and machines of a log",
                           description="Workloads (task, trials, best latency, GFLOP/s), sessions and machines of "
                                       "one target's log (e.g. tuning_logs/host-znver4-2c).")
    a.add_argument("log", metavar="LOG", help=log_help)
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = actions.add_parser("validate", help="line counts and every corrupt or unreadable line",
                           description="Line counts and every corrupt or unreadable line (skipped, never fatal); "
                                       "exit code 1 when there are problems.")
    a.add_argument("log", metavar="LOG", help=log_help)
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = actions.add_parser(
        "compare", help="compare logs of several targets or machines, workload by workload",
        description="Match workloads across two or more logs (by structural hash) and show each log's best latency, "
                    "GFLOP/s, trials and ratio to the first log, the estimated latency of every model tuned in all of "
                    "them, and which workloads only some logs have. --cross-apply also builds the first log's best "
                    "schedules for each other log's target and times them here against that log's own best "
                    "(the targets must run on this machine).")
    a.add_argument("logs", nargs="+", metavar="LOG", help="two or more log directories; ratios are to the first")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with plots")
    a.add_argument("--cross-apply", action="store_true",
                   help="time the first log's best schedules on the other logs' targets (builds and runs here)")
    a = actions.add_parser("merge", help="add the records of logs into another log (duplicates skipped)",
                           description="Add every record of the SRC logs to DEST (created if missing); a record "
                                       "already in DEST is skipped. Safe while DEST is being tuned.")
    a.add_argument("sources", nargs="+", metavar="SRC", help="log directories to read")
    a.add_argument("--into", required=True, metavar="DEST", help="log directory to add the records to")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = actions.add_parser("prune", help="keep only the K best valid records per workload",
                           description="Keep the K fastest valid records of each workload; failed candidates are "
                                       "dropped. Writes a new log with -o, else replaces LOG atomically (refused "
                                       "while a tuning session is running on it).")
    a.add_argument("log", metavar="LOG", help=log_help)
    a.add_argument("--top-k", type=int, required=True, metavar="K", help="records to keep per workload")
    a.add_argument("-o", "--output", metavar="OUT", help="write the pruned log here instead of in place")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = actions.add_parser("export", help="write a log as one portable file",
                           description="Write one target's log (workloads, all records, session records) as one "
                                       "JSON file (format tvmopt-log/1) to copy to another machine.")
    a.add_argument("log", metavar="LOG", help=log_help)
    a.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write, e.g. x86-avx512.tvmlog.json")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = actions.add_parser("import", help="merge an exported file into the logs",
                           description="Merge a file written by `logs export` into LOG_DIR/<its target> (created if "
                                       "missing); records already there are skipped.")
    a.add_argument("file", metavar="FILE", help="file written by `tvmopt logs export`")
    _log_arg(a)
    a.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_logs)


# ------------------------------------------------------------------------------- commands


def _import(args):
    from .frontends import import_model
    from .model import parse_shape

    shapes = dict(parse_shape(s) for s in args.input_shape)
    return import_model(args.model, input_shapes=shapes or None)


def cmd_targets(args) -> int:
    from .targets import get_target, list_targets

    if args.action == "show":
        if not args.name:
            raise SystemExit("tvmopt targets show: name a target, e.g. `tvmopt targets show x86-avx2`")
        spec = get_target(args.name)
        print(json.dumps(spec.to_json() | {"log_name": spec.log_name, "file": spec.source}, indent=2))
        return 0
    rows = [(s.name, s.device, "yes" if s.is_local_cpu else "no", s.description) for s in list_targets()]
    _table(("name", "device", "runs here", "description"), rows)
    return 0


def cmd_inspect(args) -> int:
    from .optimize import describe
    from .targets import get_target

    model = _import(args)
    report = describe(model, get_target(args.target).tvm_target())
    if args.json:
        print(json.dumps({
            "model": model.name, "format": model.format, "sha256": model.sha256,
            "inputs": [s.to_json() for s in model.inputs], "outputs": [s.to_json() for s in model.outputs],
            "operators": report.op_counts,
            "kernels": [{"name": k.name, "flops": k.flops, "calls": k.calls} for k in report.kernels],
            "tasks": [{"name": n, "weight": w, "flops": f} for n, w, f in report.tasks],
        }, indent=2))
        return 0
    print(f"model {model.name} ({model.format}, sha256 {model.sha256[:12]})")
    _table(("input", "shape", "dtype"), [(s.name, s.shape_str(), s.dtype) for s in model.inputs])
    _table(("output", "shape", "dtype"), [(s.name, s.shape_str(), s.dtype) for s in model.outputs])
    print(f"\noperators ({sum(report.op_counts.values())}): " + ", ".join(f"{k} x{v}" for k, v in report.op_counts.items()))
    print(f"\nfused kernels ({len(report.kernels)}), {report.total_flops / 1e6:.2f} MFLOP total:")
    _table(("kernel", "calls", "MFLOP"), [(k.name, k.calls, f"{k.flops / 1e6:.3f}") for k in report.kernels])
    if model.is_static:
        print(f"\ntuning tasks ({len(report.tasks)}):")
        _table(("task", "weight", "MFLOP"), [(n, w, f"{f / 1e6:.3f}") for n, w, f in report.tasks])
    else:
        dims = ", ".join(f"{n}[{a}]={d}" for n, a, d in model.dynamic_dims())
        print(f"\ndynamic dims: {dims}; fix them with --input-shape to tune")
    return 0


def cmd_tune(args) -> int:
    from .tuning import make_budget, tune

    rpc = _rpc_device(args)
    model = _import(args)
    budget = make_budget(args.budget, trials=args.trials, trials_per_task=args.trials_per_task,
                         timeout_s=args.timeout * 60 if args.timeout else None)
    where = f"on {rpc}" if rpc else "on this machine"
    print(f"tuning {model.name} for {args.target} {where} ({budget.describe()}); log: {args.log_dir}", file=sys.stderr)
    log = tune(model, args.target, budget=budget, log_root=args.log_dir, progress=not args.no_progress,
               seed=args.seed, rpc=rpc, transfer=args.transfer_from)
    _print_tuning(log)
    if not args.no_check and rpc is None:
        from .check import check_estimate

        check = check_estimate(model, args.target, args.log_dir, log.estimated_ms)
        if check is not None:
            print(check.describe())
    return 0


def _print_tuning(log) -> None:
    rows = [
        (t.name, t.weight, t.trials_before + t.trials_run, t.trials_run,
         f"{t.best_us:.2f}" if t.best_us else "NO RECORD", f"{t.gflops:.1f}" if t.gflops else "-")
        for t in log.tasks
    ]
    _table(("task", "weight", "trials", "new", "best us", "GFLOP/s"), rows)
    covered = [t for t in log.tasks if t.trials_before and t.trials_run == 0 and t.best_us]
    if covered:
        print(f"\n{len(covered)}/{len(log.tasks)} tasks were already tuned in the log (by this or another model): "
              "no new trials for them")
    est = f"{log.estimated_ms:.3f} ms" if log.estimated_ms is not None else "n/a"
    print(f"\n{log.status}: {log.trials_run} new trials in {log.wall_s:.1f} s; estimated model latency {est}")
    if log.untuned_tasks:
        print(f"WARNING: {len(log.untuned_tasks)} task(s) have no valid record and will use untuned kernels: "
              + ", ".join(log.untuned_tasks) + " (run tune again, or raise --trials-per-task)")
    for warning in log.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"log: {log.log_dir}  session: {log.session_path}")


def cmd_compile(args) -> int:
    from .compiler import compile as compile_model, default_output
    from .targets import get_target

    model = _import(args)
    spec = get_target(args.target)
    output = args.output or default_output(model, spec)
    artifact = compile_model(model, spec, output, log_root=None if args.no_tuning else args.log_dir)
    tuning = artifact.manifest["tuning"]
    print(f"wrote {artifact.path} ({spec.name}; {tuning['tasks_tuned']}/{tuning['tasks_total']} kernels tuned, "
          f"build {artifact.manifest['build_s']} s)")
    if tuning.get("reference_logs"):
        borrowed = sum(1 for r in tuning["records_applied"] if r["log"] in tuning["reference_logs"])
        print(f"{borrowed} kernel(s) use records of the compatible reference log(s) "
              f"{', '.join(tuning['reference_logs'])} (zero tuning for them)")
    if tuning["tasks_total"] and tuning["tasks_tuned"] < tuning["tasks_total"]:
        print(f"note: {tuning['tasks_total'] - tuning['tasks_tuned']} kernel(s) had no record in "
              f"{tuning['log_dir']} and use TVM's default schedule; `tvmopt tune` them for speed")
    return 0


def cmd_run(args) -> int:
    import numpy as np

    from .artifact import read_artifact
    from .errors import InputSpecError
    from .runtime import bind_inputs, load, random_inputs

    rpc = _rpc_device(args)
    # Run elsewhere (emulated, remote): validate the artifact here without loading its library.
    artifact = read_artifact(args.artifact) if (rpc or args.emulate) else None
    predictor = None if artifact else load(args.artifact)
    artifact = artifact or predictor.artifact
    if args.inputs:
        try:
            with np.load(args.inputs) as data:
                feeds = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise InputSpecError(f"{args.inputs}: not a readable .npz file ({err})") from err
    else:
        feeds = random_inputs(artifact.inputs)
    arrays = bind_inputs(artifact.inputs, (), feeds)
    latency = None
    if args.emulate:
        from .emulation import run_emulated

        outputs = run_emulated(artifact, arrays)
        where = "aarch64 under QEMU emulation (correctness only; emulated time is not ARM speed)"
    elif rpc:
        from .remote import run_remote

        outputs, latency = run_remote(artifact, rpc, arrays, repeat=args.repeat)
        where = f"remote device {rpc}"
    else:
        outputs = predictor(*arrays)
        latency = predictor.benchmark(feeds, repeat=args.repeat)
        where = "this machine"
    if args.save_outputs:
        np.savez(args.save_outputs, **{s.name: o for s, o in zip(artifact.outputs, outputs)})
    if args.json:
        print(json.dumps({
            "artifact": str(artifact.path), "where": where,
            "median_ms": latency.median_ms if latency else None, "p90_ms": latency.p90_ms if latency else None,
            "repeat": args.repeat if latency else 0,
            "outputs": [{"name": s.name, "shape": list(o.shape), "dtype": str(o.dtype)}
                        for s, o in zip(artifact.outputs, outputs)],
        }, indent=2))
        return 0
    source = args.inputs or "random inputs"
    timing = f": median {latency.median_ms:.4f} ms, p90 {latency.p90_ms:.4f} ms ({args.repeat} runs)" if latency else ""
    print(f"{artifact.path} ({artifact.target_name}) on {where}, {source}{timing}")
    _table(("output", "shape", "dtype"), [(s.name, "x".join(map(str, o.shape)), o.dtype) for s, o in zip(artifact.outputs, outputs)])
    return 0


def cmd_bench(args) -> int:
    from .bench import bench, format_table

    report = bench(args.model, args.target, log_root=args.log_dir, rounds=args.rounds, runs=args.runs,
                   torch_compile=not args.no_torch_compile)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def cmd_logs(args) -> int:
    from dataclasses import asdict

    from . import logs

    if args.action not in ("show", "validate"):
        return _cmd_logs_tools(args)
    if args.action == "validate":
        report = logs.validate(args.log)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['log']}: {report['workload_lines']} workload lines, {report['record_lines']} record lines, "
                  f"{report['records_loaded']} records loaded")
            for problem in report["problems"]:
                print(f"problem: {problem}")
            print("ok" if not report["problems"] else f"{len(report['problems'])} problem(s); the rest is usable")
        return 0 if not report["problems"] else 1
    report = logs.show(args.log)
    if args.json:
        print(json.dumps(report | {"workloads": [asdict(w) | {"gflops": w.gflops} for w in report["workloads"]]},
                         indent=2, default=str))
        return 0
    _table(("task", "workload", "MFLOP", "trials", "valid", "best us", "GFLOP/s"),
           [(w.name, w.workload_hash, f"{w.flops / 1e6:.3f}", w.trials, w.valid_trials,
             f"{w.best_us:.2f}" if w.best_us else "NO RECORD", f"{w.gflops:.1f}" if w.gflops else "-")
            for w in report["workloads"]])
    print(f"\nsessions ({len(report['sessions'])}):")
    _table(("started", "model", "status", "new trials", "wall s", "measured on"),
           [(s.get("started", "?"), s.get("model", "?"), s.get("status", "?"), s.get("trials_run", "?"),
             s.get("wall_s", "?"), s.get("measured_on", "local")) for s in report["sessions"]])
    for machine in report["machines"]:
        print(f"machine: {machine.get('cpu_model')} ({machine.get('llvm_cpu')}, {machine.get('cores')} cores), "
              f"TVM {machine.get('tvm_version')}")
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_logs_tools(args) -> int:
    """`logs compare / merge / prune / export / import`."""
    from . import compare, logs, logtools

    if args.action == "compare":
        if len(args.logs) < 2:
            from .errors import TvmoptError

            raise TvmoptError("logs compare needs two or more log directories")
        report = compare.compare(args.logs, cross_apply=args.cross_apply)
        if args.html:
            compare.render_html(report, args.html)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            _print_compare(report, compare)
        if args.html:
            print(f"wrote {args.html}", file=sys.stderr)
        return 0
    if args.action == "merge":
        report = logs.merge(args.sources, args.into)
        text = (f"{report['log']}: {report['records_added']} records added, {report['duplicates_skipped']} duplicates "
                f"skipped; now {report['records']} records, {report['workloads']} workloads")
    elif args.action == "prune":
        report = logtools.prune(args.log, args.top_k, args.output)
        text = (f"{report['log']}: kept {report['records_after']} of {report['records_before']} records "
                f"(best {report['top_k']} per workload), {report['workloads_after']} workloads")
    elif args.action == "export":
        report = logtools.export_log(args.log, args.output)
        text = (f"wrote {report['file']}: target {report['target']}, {report['workloads']} workloads, "
                f"{report['records']} records, {report['sessions']} sessions")
    else:
        report = logtools.import_log(args.file, args.log_dir)
        text = (f"{report['log']}: {report['records_added']} records added, {report['duplicates_skipped']} duplicates "
                f"skipped; now {report['records']} records, {report['workloads']} workloads")
    print(json.dumps(report, indent=2) if args.json else text)
    return 0


def _print_compare(report: dict, compare) -> None:
    for entry in report["logs"]:
        machines = "; ".join(f"{m.get('cpu_model')} ({m.get('cores')} cores)" for m in entry["machines"]) or "unknown"
        print(f"{entry['label']}: {entry['log']} (target {entry['target']}; measured on {machines})")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"\nworkloads in every log ({len(report['workloads'])}):")
    header, rows = compare.workload_table(report)
    _table(tuple(header), [[compare.cell_text(c) for c in row] for row in rows])
    if report["models"]:
        labels = [e["label"] for e in report["logs"]]
        print("\nmodels (estimated latency: sum of weight x best):")
        _table(("model", *[f"{lab} ms" for lab in labels], *[f"{lab}/{labels[0]}" for lab in labels[1:]]),
               [[m["model"], *[compare.cell_text(p["estimated_ms"]) for p in m["per_log"]],
                 *[compare.cell_text(p["ratio"]) for p in m["per_log"][1:]]] for m in report["models"]])
    for log, missing in report["only_in"].items():
        print(f"only in {log}: " + ", ".join(f"{w['name']} ({w['workload_hash']})" for w in missing))
    for block in report.get("cross_apply", []):
        print(f"\ncross-apply: best schedules of A={block['from']} built for B={block['to']}'s target, timed here:")
        header, rows = compare.cross_apply_table(block["results"])
        _table(tuple(header), [[compare.cell_text(c) for c in row] for row in rows])


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(model_path=args.model, target=args.target, log_root=args.log_dir, budget=args.budget,
             trials_per_task=args.trials_per_task, timeout_min=args.timeout, output=args.output)
    return 0


# ------------------------------------------------------------------------------- plumbing


def _table(header: tuple, rows: list) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        from ._tvm import TVM_VERSION

        print(f"tvmopt {__version__} (apache-tvm {TVM_VERSION})")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_warnings()
    from .errors import TvmoptError

    func: Callable = args.func
    try:
        return int(func(args) or 0)
    except TvmoptError as err:
        if args.verbose:
            raise
        print(f"tvmopt: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tvmopt: interrupted (finished measurements are in the log)", file=sys.stderr)
        return 130


def _quiet_warnings() -> None:
    import warnings

    warnings.filterwarnings("ignore")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`tvmopt bench` and `tvmopt demo`: measured comparisons against ONNX Runtime (and PyTorch)."""

from __future__ import annotations

import json

from .common import log_arg, target_arg


def register(sub) -> None:
    from ..frontends.zoo import ZOO  # names only; torch is imported when a zoo model is built

    p = sub.add_parser(
        "bench", help="TVM untuned/tuned vs ONNX Runtime and PyTorch, measured in one run",
        description="Benchmark a zoo model (" + ", ".join(ZOO) + ") or any ONNX file on this "
                    "machine: TVM untuned, TVM with the best records in the log, ONNX Runtime (same thread count) "
                    "on the same file (a quantized model against ORT on that quantized file), and for zoo models "
                    "PyTorch eager and torch.compile. Rounds alternate between contenders; TVM and ONNX Runtime each "
                    "run in a process of their own, as deployed (in one process their thread pools slow each other). "
                    "Medians, ratio to ONNX Runtime, max abs difference of outputs. --baseline FP32.onnx adds "
                    "both fp32 paths to the same run.",
    )
    p.add_argument("model", help="zoo name or ONNX file")
    target_arg(p)
    log_arg(p)
    p.add_argument("--rounds", type=int, default=10, help="alternated rounds (default 10)")
    p.add_argument("--runs", type=int, default=10, help="calls per contender per round (default 10)")
    p.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (its compile takes a while)")
    p.add_argument("--baseline", metavar="FP32.onnx",
                   help="the fp32 model a quantized MODEL came from: its tuned tvmopt build and ONNX Runtime run "
                        "in the same alternated rounds, with each engine's ratio to its own fp32 latency")
    p.add_argument("--no-untuned", action="store_true", help="skip TVM's untuned build (slow for CNNs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_bench)

    p = sub.add_parser("demo", help="tune -> compile -> run the bundled example model against ONNX Runtime",
                       description="The whole path on a small bundled CNN (or --model): untuned, tuned and "
                                   "ONNX Runtime latency, and the max abs difference to ONNX Runtime.")
    p.add_argument("--model", help="ONNX file to use instead of the bundled example")
    target_arg(p)
    log_arg(p)
    p.add_argument("--budget", choices=["smoke", "quick", "full"], default="quick")
    p.add_argument("--trials-per-task", type=int)
    p.add_argument("--timeout", type=float, metavar="MIN", default=5.0, help="tuning time limit (default 5 min)")
    p.add_argument("--output", default="artifacts/demo", help="artifact directory (default artifacts/demo)")
    p.set_defaults(func=run_demo)


def run_bench(args) -> int:
    from ..measure.bench import bench

    report = bench(args.model, args.target, log_root=args.log_dir, rounds=args.rounds, runs=args.runs,
                   torch_compile=not args.no_torch_compile, baseline=args.baseline,
                   untuned=not args.no_untuned)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.format())
    return 0


def run_demo(args) -> int:
    from ..measure.demo import run_demo as demo

    demo(model_path=args.model, target=args.target, log_root=args.log_dir, budget=args.budget,
         trials_per_task=args.trials_per_task, timeout_min=args.timeout, output=args.output)
    return 0

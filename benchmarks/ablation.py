"""Each CPU optimisation lever on its own and together, on one model, in one interleaved run.

    .venv/bin/python benchmarks/ablation.py resnet18 --minutes 5 [--target host]

Variants (tvmopt.compiler.GraphOptions), each tuned into its own fresh log for --minutes with the
`full` budget (same seed), then compiled; finally every variant and ONNX Runtime are timed
interleaved in one loop (medians of rounds) and checked against ONNX Runtime's outputs:
    plain        NCHW, MetaSchedule's generic rules, bytecode VM (TVM as it comes)
    +layout      convolutions in NCHW{block}c
    +templates   tvmopt's conv / depthwise / GEMM schedule templates
    +prepack     weights re-laid-out for the tuned kernels at compile time
    +compiled VM the VM's control flow as native code
    all          + Winograd F(2x2, 3x3) for 3x3 stride-1 convs (the default)
Writes benchmarks/results/ablation-<model>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import tvmopt
from tvmopt.compiler.options import GraphOptions
from tvmopt.frontends import zoo
from tvmopt.measure.baselines import OrtSession
from tvmopt.measure.timing import interleaved_medians, max_abs_diff
from tvmopt.tuning import make_budget

HERE = Path(__file__).resolve().parent
PLAIN = GraphOptions.none()
VARIANTS = {
    "plain": PLAIN,
    "+layout": replace(PLAIN, blocked_layout=True),
    "+templates": replace(PLAIN, blocked_layout=True, templates=True),
    "+prepack": replace(PLAIN, blocked_layout=True, templates=True, prepack_weights=True),
    "+compiled VM": GraphOptions(winograd=False, depthwise_pointwise=False),
    "+winograd": GraphOptions(depthwise_pointwise=False),
    "all": GraphOptions(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=list(zoo.ZOO))
    parser.add_argument("--minutes", type=float, default=5.0, help="tuning wall time per variant")
    parser.add_argument("--target", default="host")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"tvmopt-ablation-{args.model}-"))
    entry = zoo.ZOO[args.model]
    onnx_path = entry.export_onnx(work / f"{args.model}.onnx")
    model = tvmopt.import_model(onnx_path)
    feeds = {n: t.numpy() for n, t in zip(entry.input_names, entry.example_inputs())}
    predictors, tuning = {}, {}
    for name in args.variants.split(","):
        options = VARIANTS[name]
        root = work / name
        shutil.rmtree(root, ignore_errors=True)
        print(f"== {name}: tuning {args.minutes} min", file=sys.stderr)
        log = tvmopt.tune(model, args.target, budget=make_budget("full", timeout_s=args.minutes * 60), log_root=root,
                          seed=0, options=options, progress=False)
        artifact = tvmopt.compile(model, args.target, root / "artifact", log_root=root, options=options)
        predictors[name] = tvmopt.load(artifact.path)
        tuning[name] = {"trials": log.trials_run, "wall_s": log.wall_s, "tasks": len(log.tasks),
                        "tuned": artifact.manifest.tuning.tasks_tuned, "estimated_ms": log.estimated_ms}
    ort = OrtSession(onnx_path, len(os.sched_getaffinity(0)))
    reference = ort(feeds)
    contenders = {name: p.bound_call(feeds) for name, p in predictors.items()}
    contenders["onnxruntime"] = lambda: ort(feeds)
    medians = interleaved_medians(contenders, rounds=args.rounds, runs=10)
    rows = []
    for name, p in predictors.items():
        rows.append({"variant": name, **tuning[name], "median_ms": round(medians[name], 4),
                     "vs_ort": round(medians[name] / medians["onnxruntime"], 3),
                     "max_abs_diff": max_abs_diff(p(**feeds), reference)})
    result = {"model": args.model, "target": args.target, "minutes_per_variant": args.minutes,
              "onnxruntime_ms": round(medians["onnxruntime"], 4), "rows": rows, "date": time.strftime("%Y-%m-%d"),
              "command": " ".join(["benchmarks/ablation.py", *sys.argv[1:]])}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"ablation-{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.model} ({args.minutes} min of tuning per variant; ORT {result['onnxruntime_ms']} ms)")
    print("| variant | trials | tasks tuned | median ms | vs ORT | max abs diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['trials']} | {r['tuned']}/{r['tasks']} | {r['median_ms']} | {r['vs_ort']}x "
              f"| {r['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()

"""What seeding buys a tuning session: a model nobody tuned, tuned for the same minutes with and
without first trials borrowed from the other models' kernels in the log (tuning/seeds.py), then
both builds timed against ONNX Runtime in one interleaved run.

Leave-one-out as in borrow.py: the reference log (default: the shipped x86-avx2 log) minus every
workload of the model is the only log the sessions see, so seeds come from other models only.
Each arm tunes into a log root of its own (the same reference log copied in), the arms alternate
per model, and the compile after each sees only its own session's records plus that reference.

    python benchmarks/seeds.py --models resnet18 --onnx held_out.onnx --budget quick --minutes 3
    python benchmarks/seeds.py --models resnet18 --whole-log   # a known model on a host with no log of its own
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tvmopt
from tvmopt.measure.baselines import OrtSession
from tvmopt.measure.timing import interleaved_medians, max_abs_diff
from tvmopt.resources import shipped_logs_root
from tvmopt.runtime.inputs import random_inputs
from tvmopt.threads import default_threads
from tvmopt.tuning import make_budget

sys.path.insert(0, str(Path(__file__).parent))
from borrow import leave_one_out, only_the_given_log  # noqa: E402


def run(path: Path, log: Path, work: Path, budget: str, minutes: float, rounds: int, runs: int,
        seeded_first: bool, whole_log: bool = False) -> dict:
    model = tvmopt.import_model(path)
    reference = work / "reference"
    if whole_log:  # the model's own workloads stay in: seeds are the reference's own records
        shutil.copytree(log, reference / log.name)
    else:
        leave_one_out(log, model, reference / log.name)
    arms: dict[str, dict] = {}
    for seeds in (True, False) if seeded_first else (False, True):  # the order alternates by model
        name = "seeded" if seeds else "plain"
        root = work / name
        shutil.copytree(reference, root)
        started = time.monotonic()
        session = tvmopt.tune(model, "host", budget=make_budget(budget, timeout_s=minutes * 60), log_root=root,
                              progress=False, seed_from_logs=seeds, seed=0)
        wall = time.monotonic() - started
        artifact = tvmopt.compile(model, "host", work / f"{name}-art", log_root=root)
        arms[name] = {"trials": session.trials_run, "seeded": len(session.seeded), "wall_s": round(wall),
                      "estimate": session.estimated_ms, "engine": tvmopt.load(artifact.path)}
    feeds = random_inputs(model.inputs)
    ort = OrtSession(path, default_threads())
    expected = ort(feeds)
    for name, arm in arms.items():
        diff = max_abs_diff(arm["engine"](**feeds), expected)
        assert diff < 1e-3, f"{name} differs from ORT by {diff}"
    contenders = {name: arm["engine"].bound_call(feeds) for name, arm in arms.items()}
    contenders["onnxruntime"] = lambda: ort(feeds)
    medians = interleaved_medians(contenders, rounds, runs)
    return {"model": model.name, "tasks": len(session.tasks), **{f"{n}_{k}": v for n, arm in arms.items()
                                                                 for k, v in arm.items() if k != "engine"},
            **{name: round(ms, 3) for name, ms in medians.items()}}


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18", help="zoo models, comma-separated")
    parser.add_argument("--onnx", nargs="*", default=[], help="more ONNX files (static shapes)")
    parser.add_argument("--log", type=Path, default=shipped_logs_root() / "x86-avx2", help="the reference log")
    parser.add_argument("--budget", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--minutes", type=float, default=3.0, help="tuning minutes per arm")
    parser.add_argument("--whole-log", action="store_true",
                        help="keep the model's own workloads in the reference log (a known model on a new host)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = only_the_given_log(tmp, args.models, args.onnx)
        print("| model | tasks | seeded | trials (seeded / plain) | estimate ms (seeded / plain) | seeded ms | plain ms "
              "| ORT ms | seeded / ORT | plain / ORT |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for i, path in enumerate(paths):
            r = run(path, args.log, Path(tmp, f"m{i}"), args.budget, args.minutes, args.rounds, args.runs, i % 2 == 0,
                    args.whole_log)
            ort = r["onnxruntime"]
            print(f"| {r['model']} | {r['tasks']} | {r['seeded_seeded']} | {r['seeded_trials']} / {r['plain_trials']} "
                  f"| {_ms(r['seeded_estimate'])} / {_ms(r['plain_estimate'])} | {r['seeded']} | {r['plain']} | {ort} "
                  f"| {r['seeded'] / ort:.2f}x | {r['plain'] / ort:.2f}x |", flush=True)
    scope = "whole" if args.whole_log else "minus each model's own workloads"
    print(f"\n{' '.join(['python'] + sys.argv)}  (threads: {default_threads()}, log {args.log.name} {scope})")


if __name__ == "__main__":
    np.random.seed(0)
    main()

"""Where a tuning session's time goes: MetaSchedule's own profiler around one tvmopt session.

    .venv/bin/python benchmarks/profile_tuning.py resnet18 --target x86-avx512 --minutes 3 [--budget full]

Prints MetaSchedule's timed scopes (evolutionary search, cost-model update, builder, runner
joins) as seconds and shares of the session's wall time, with trials per minute.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import tvmopt
from tvmopt.frontends import zoo
from tvmopt._compat import ms
from tvmopt.tuning import make_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo name or ONNX file")
    parser.add_argument("--target", default="host")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--budget", default="full")
    parser.add_argument("--population", type=int, help="override the preset's evolutionary population")
    parser.add_argument("--genetic-iters", type=int, help="override the preset's genetic iterations")
    parser.add_argument("--batch", type=int, help="override the preset's batch size")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tvmopt-profile-"))
    path = zoo.ZOO[args.model].export_onnx(tmp / f"{args.model}.onnx") if args.model in zoo.ZOO else args.model
    model = tvmopt.import_model(path)
    budget = make_budget(args.budget, timeout_s=args.minutes * 60)
    overrides = {"population": args.population, "genetic_iters": args.genetic_iters, "batch_size": args.batch}
    budget = replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    started = time.monotonic()
    with ms.Profiler() as profiler:
        log = tvmopt.tune(model, args.target, budget=budget, log_root=tmp / "logs", progress=False, seed=0)
    wall = time.monotonic() - started
    print(f"{args.model} on {log.target}, budget {budget.describe()}, batch {budget.batch_size}, "
          f"population {budget.population}, genetic iters {budget.genetic_iters}: {log.trials_run} trials in {wall:.0f} s "
          f"= {60 * log.trials_run / wall:.1f} trials/min; estimate {log.estimated_ms} ms; "
          f"{len(log.untuned_tasks)} task(s) without record")
    print("| scope | s | share of wall |\n|---|---|---|")
    scopes = {name: float(secs) for name, secs in profiler.get().items()}
    for name, secs in sorted(scopes.items(), key=lambda kv: -kv[1]):
        if secs >= 0.01 * wall:
            print(f"| {name} | {secs:.1f} | {100 * secs / wall:.0f}% |")


if __name__ == "__main__":
    main()

"""Trials per minute: stock MetaSchedule vs tvmopt on the same tasks, same trials, one run.

    .venv/bin/python benchmarks/tuning_throughput.py [--trials-per-task 4]

Stock: ms.relax_integration.tune_relax with LocalBuilder/LocalRunner and a JSONDatabase.
tvmopt: tvmopt.tune with the same per-task trial count and the same runner settings (smoke).
Both tune the bundled example CNN for the host target, each into a fresh temp log; then each
log is compiled and the two models are timed interleaved, so "faster" never means "worse".
"""

from __future__ import annotations

import argparse
import tempfile
import time

import tvmopt
from tvmopt.compiler.passes import extract_tasks, fuse
from tvmopt._compat import ms
from tvmopt.frontends.examples import write_small_cnn
from tvmopt.tuning import make_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-task", type=int, default=4)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tvmopt-bench-")
    model = tvmopt.import_model(write_small_cnn(f"{tmp}/small_cnn.onnx"))
    spec = tvmopt.get_target("host")
    target = spec.tvm_target()
    fused = fuse(model.mod, target)
    n_tasks = len(extract_tasks(fused, target))
    budget = make_budget("smoke", trials_per_task=args.trials_per_task)

    start = time.monotonic()
    log = tvmopt.tune(model, spec, budget=budget, log_root=f"{tmp}/tvmopt", progress=False)
    ours_s, ours_trials = time.monotonic() - start, log.trials_run

    start = time.monotonic()
    database = ms.relax_integration.tune_relax(
        fused, {}, target, f"{tmp}/stock/{spec.log_name}", max_trials_global=args.trials_per_task * n_tasks,
        max_trials_per_task=args.trials_per_task, num_trials_per_iter=budget.batch_size,
        runner=ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(
            number=budget.number, repeat=budget.repeat, min_repeat_ms=budget.min_repeat_ms)),
    )
    stock_s, stock_trials = time.monotonic() - start, len(database.get_all_tuning_records())

    print("| | trials | wall s | trials/min |\n|---|---|---|---|")
    print(f"| stock MetaSchedule | {stock_trials} | {stock_s:.1f} | {60 * stock_trials / stock_s:.1f} |")
    print(f"| tvmopt | {ours_trials} | {ours_s:.1f} | {60 * ours_trials / ours_s:.1f} |")
    print(f"\n{n_tasks} tasks, {args.trials_per_task} trials/task; speed-up {stock_s / stock_trials / (ours_s / ours_trials):.1f}x per trial")

    # Same trials: is the result as fast? Compile each log, time both models interleaved.
    from tvmopt.measure.timing import interleaved_medians

    calls = {}
    for label, root in (("stock MetaSchedule", f"{tmp}/stock"), ("tvmopt", f"{tmp}/tvmopt")):
        predictor = tvmopt.load(tvmopt.compile(model, spec, f"{tmp}/art-{label.split()[0]}", log_root=root).path)
        calls[label] = predictor.bound_call(predictor.random_inputs())
    medians = interleaved_medians(calls, rounds=10, runs=20)
    print("\n| log compiled | model median ms |\n|---|---|")
    for label, ms_ in medians.items():
        print(f"| {label} | {ms_:.4f} |")


if __name__ == "__main__":
    main()

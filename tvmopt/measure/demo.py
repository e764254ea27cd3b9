"""`tvmopt demo`: the main job end to end on the bundled example (or any ONNX file).

import -> compile untuned -> tune (resumable, small budget) -> compile tuned -> run, then untuned
TVM, tuned TVM and ONNX Runtime timed each in its own process, rounds alternated, reporting medians.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..compiler import compile as compile_model
from ..frontends import import_model
from ..frontends.examples import EXAMPLE_PATH, write_small_cnn
from ..logs import DEFAULT_LOG_ROOT
from ..runtime import load
from ..tuning import TuningLog, make_budget, tune
from .baselines import OrtSession
from .isolated import ProcessContender, isolated_medians
from .timing import Timing, max_abs_diff, timings_table


@dataclass(frozen=True)
class DemoResult:
    timings: list[Timing]
    tuning: TuningLog
    artifact: Path


def run_demo(
    model_path: str | None = None,
    target: str = "host",
    log_root: str = DEFAULT_LOG_ROOT,
    budget: str = "quick",
    trials_per_task: int | None = None,
    timeout_min: float | None = 5.0,
    output: str = "artifacts/demo",
    rounds: int = 15,
) -> DemoResult:
    plan = make_budget(budget, trials_per_task=trials_per_task,
                       timeout_s=timeout_min * 60 if timeout_min is not None else None)  # bad flags fail first
    path = Path(model_path) if model_path else write_small_cnn(EXAMPLE_PATH)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    say(f"[1/5] import {path}")
    model = import_model(path)
    say(f"[2/5] compile untuned for {target}")
    untuned = load(compile_model(model, target, f"{output}-untuned", log_root=None).path)
    say(f"[3/5] tune ({plan.describe()}); re-running resumes from {log_root}/")
    log = tune(model, target, budget=plan, log_root=log_root)
    say(f"      {log.trials_run} new trials in {log.wall_s:.0f} s, status {log.status}")
    if log.untuned_tasks:
        say(f"      WARNING: no valid record for {', '.join(log.untuned_tasks)}; these kernels stay untuned")
    say("[4/5] compile with the best records")
    tuned = load(compile_model(model, target, output, log_root=log_root).path)
    say(f"[5/5] run and time: untuned TVM, tuned TVM, ONNX Runtime, each in its own process, rounds "
        f"alternated x{rounds}")
    feeds = untuned.random_inputs()
    reference = OrtSession(path)(feeds)
    diff = {name: max_abs_diff(pred(**feeds), reference) for name, pred in (("tvm-untuned", untuned),
                                                                              ("tvm-tuned", tuned))}
    # The example runs in microseconds: in one process the engines' spinning thread pools would
    # slow each other (measure/isolated.py), so each is timed as it is deployed, alone.
    medians = isolated_medians(
        {"tvm-untuned": ProcessContender("artifact", str(untuned.artifact.path)),
         "tvm-tuned": ProcessContender("artifact", str(tuned.artifact.path)),
         "onnxruntime": ProcessContender("onnxruntime", str(path))},
        feeds, rounds=rounds, runs=10,
    )
    ort_ms = medians["onnxruntime"]
    timings = [Timing(name, medians[name], medians[name] / ort_ms, diff.get(name))
               for name in ("tvm-untuned", "tvm-tuned", "onnxruntime")]
    print("\n" + timings_table(timings, f"model {model.name} on {log.target} (random inputs, each engine in its own "
                                        f"process, medians of {rounds} alternated rounds; max |diff| vs ONNX Runtime)"))
    print(f"\nartifact: {output}   tuning log: {log.log_dir}")
    return DemoResult(timings, log, Path(output))

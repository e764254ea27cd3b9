"""`tvmopt bench`: TVM (untuned, tuned) against ONNX Runtime and PyTorch, measured in one run.

Every contender is timed the same way (wall clock around one call, inputs already on the
device), interleaved round by round so that machine noise hits all of them alike; the result is
the median of the round medians, with its ratio to ONNX Runtime and the max abs difference of
its outputs from ONNX Runtime's.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .baselines import OrtSession
from .compiler import compile as compile_model
from .frontends import import_model
from .runtime import load
from .targets import get_target, host_fingerprint


@dataclass(frozen=True)
class BenchResult:
    name: str  # tvm-untuned | tvm-tuned | onnxruntime | torch | torch-compile
    median_ms: float | None
    ratio_to_onnxruntime: float | None
    max_abs_diff: float | None
    note: str = ""


def interleaved_medians(contenders: dict[str, Callable[[], object]], rounds: int, runs: int) -> dict[str, float]:
    """Median over rounds of each contender's per-round median call time (ms), interleaved."""
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up: first calls allocate, JIT, fill caches
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
            per_round[name].append(statistics.median(times))
    return {name: statistics.median(values) for name, values in per_round.items()}


def _max_diff(outputs, reference) -> float:
    return max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
               for a, b in zip(outputs, reference))


def bench(
    model_ref: str,
    target: str = "host",
    *,
    log_root: str | os.PathLike = "tuning_logs",
    rounds: int = 10,
    runs: int = 10,
    torch_compile: bool = True,
    work_dir: str | os.PathLike | None = None,
) -> dict:
    """Benchmark a zoo model name or an ONNX file on this machine; returns the --json report."""
    from . import zoo

    work = Path(work_dir or tempfile.mkdtemp(prefix="tvmopt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    zoo_model = zoo.ZOO.get(model_ref)
    if zoo_model is not None:
        onnx_path = zoo_model.export_onnx(work / f"{zoo_model.name}.onnx")
        example = zoo_model.example_inputs()
        feeds = {n: t.numpy() for n, t in zip(zoo_model.input_names, example)}
    else:
        onnx_path = Path(model_ref)
        feeds = None
    model = import_model(onnx_path)
    spec = get_target(target)
    untuned = load(compile_model(model, spec, work / "untuned", log_root=None).path)
    feeds = feeds or untuned.random_inputs()
    tuned_artifact = compile_model(model, spec, work / "tuned", log_root=log_root)
    tuning = tuned_artifact.manifest["tuning"]

    threads = len(os.sched_getaffinity(0))
    ort = OrtSession(onnx_path, threads)
    reference = ort(feeds)
    contenders: dict[str, Callable[[], object]] = {}
    outputs: dict[str, list] = {}
    notes: dict[str, str] = {}

    untuned_call = untuned.bound_call(feeds)
    contenders["tvm-untuned"], outputs["tvm-untuned"] = untuned_call, untuned(**feeds)
    if tuning["tasks_tuned"]:
        tuned = load(tuned_artifact.path)
        contenders["tvm-tuned"], outputs["tvm-tuned"] = tuned.bound_call(feeds), tuned(**feeds)
        notes["tvm-tuned"] = f"{tuning['tasks_tuned']}/{tuning['tasks_total']} kernels tuned"
    else:
        notes["tvm-tuned"] = f"no records in {tuning['log_dir']}; run `tvmopt tune` first"
    contenders["onnxruntime"], outputs["onnxruntime"] = (lambda: ort(feeds)), reference
    if zoo_model is not None:
        _add_torch(zoo_model, example, threads, torch_compile, contenders, outputs, notes)

    medians = interleaved_medians(contenders, rounds, runs)
    ort_ms = medians["onnxruntime"]
    order = ["tvm-untuned", "tvm-tuned", "onnxruntime", "torch", "torch-compile"]
    results = []
    for name in order:
        if name in medians:
            results.append(BenchResult(name, round(medians[name], 5), round(medians[name] / ort_ms, 3),
                                       _max_diff(outputs[name], reference), notes.get(name, "")))
        elif name in notes:
            results.append(BenchResult(name, None, None, None, notes[name]))
    return {
        "model": model.name,
        "target": spec.log_name,
        "results": [asdict(r) for r in results],
        "machine": host_fingerprint() | {"threads": threads},
        "method": f"median of {rounds} interleaved rounds x {runs} calls, wall clock per call",
    }


def _add_torch(zoo_model, example, threads: int, torch_compile: bool, contenders, outputs, notes) -> None:
    import torch

    torch.set_num_threads(threads)
    module = zoo_model.build()

    def eager():
        with torch.no_grad():
            return module(*example)

    contenders["torch"], outputs["torch"] = eager, _torch_outputs(eager())
    if not torch_compile:
        return
    try:
        compiled = torch.compile(module)

        def run_compiled():
            with torch.no_grad():
                return compiled(*example)

        outputs["torch-compile"] = _torch_outputs(run_compiled())  # compiles here
        contenders["torch-compile"] = run_compiled
    except Exception as err:  # noqa: BLE001 - inductor needs a toolchain; report, don't fail
        notes["torch-compile"] = f"torch.compile failed here: {str(err).strip().splitlines()[-1][:120]}"


def _torch_outputs(result) -> list[np.ndarray]:
    if hasattr(result, "detach"):
        return [result.detach().numpy()]
    return [t.detach().numpy() for t in result]


def format_table(report: dict) -> str:
    lines = [f"model {report['model']} on {report['target']} ({report['method']})",
             f"{'':14}{'median ms':>11}{'vs ORT':>9}{'max |diff|':>12}  note"]
    for r in report["results"]:
        if r["median_ms"] is None:
            lines.append(f"{r['name']:14}{'-':>11}{'-':>9}{'-':>12}  {r['note']}")
        else:
            lines.append(f"{r['name']:14}{r['median_ms']:11.4f}{r['ratio_to_onnxruntime']:8.2f}x"
                         f"{r['max_abs_diff']:12.2e}  {r['note']}")
    return "\n".join(lines)

"""`tvmopt bench`: TVM (untuned, tuned) against ONNX Runtime and PyTorch, measured in one run.

Every contender is timed the same way (wall clock around one call, numpy inputs in and numpy
outputs out, as a user calls it), rounds alternated so that machine noise hits all of them alike; the result is the median
of the round medians, with its ratio to ONNX Runtime and the max abs difference of
its outputs from ONNX Runtime's, both on the same model file: a quantized model is compared with
ONNX Runtime running that quantized file. With `baseline` (the fp32 model), tvmopt's tuned fp32
build and ONNX Runtime on the fp32 file join the same run, and each engine's ratio to
its own fp32 latency is reported.

TVM and ONNX Runtime each run in a process of their own (measure/isolated.py), as they are
deployed: in one process their two thread pools, each spin-waiting for its next call, take the
cores from each other, and on a 2-core machine the MLP timed 84 us interleaved against 41 us
alone (ONNX Runtime 51-88 us, bimodal). PyTorch runs in the bench process while the others are
stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..threads import default_threads
from .._files import ScratchDir
from ..compiler import compile as compile_model
from ..frontends import import_model
from ..logs import DEFAULT_LOG_ROOT
from ..machine import Machine
from ..runtime import load
from ..runtime.inputs import random_inputs
from ..targets import get_target, host_machine
from .baselines import OrtSession
from .isolated import ProcessContender, isolated_medians
from .timing import Timing, max_abs_diff, timings_table

ORDER = ("tvm-untuned", "tvm-tuned", "onnxruntime", "torch", "torch-compile", "tvm-tuned-fp32", "onnxruntime-fp32")


@dataclass(frozen=True)
class BenchReport:
    """The result of one bench run (its to_json is the `--json` schema)."""

    model: str
    target: str
    results: list[Timing]
    machine: Machine
    threads: int
    method: str
    baseline: str | None = None  # the fp32 model the -fp32 rows ran

    def result(self, name: str) -> Timing | None:
        return next((r for r in self.results if r.name == name), None)

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "results": [r.to_json() for r in self.results],
                "machine": self.machine.to_json() | {"threads": self.threads}, "method": self.method,
                "baseline": self.baseline}

    def format(self) -> str:
        title = f"model {self.model} on {self.target} ({self.method})"
        if self.baseline:
            title += (f"\n-fp32 rows: fp32 baseline {self.baseline}; vs ORT: to ONNX Runtime on the same file; "
                      "vs fp32: to the same engine on the fp32 model")
        return timings_table(self.results, title)


def bench(
    model_ref: str,
    target: str = "host",
    *,
    log_root: str | os.PathLike = DEFAULT_LOG_ROOT,
    rounds: int = 10,
    runs: int = 10,
    torch_compile: bool = True,
    work_dir: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None,
    untuned: bool = True,
) -> BenchReport:
    """Benchmark a zoo model name or an ONNX file on this machine (artifacts go to `work_dir`, else
    to a scratch directory removed afterwards and swept by the next run if this one is killed);
    `baseline`: the fp32 ONNX model of a quantized `model_ref`, timed in the same run (tvmopt tuned
    + ONNX Runtime)."""
    if work_dir is not None:
        return _bench(model_ref, target, Path(work_dir), log_root, rounds, runs, torch_compile, baseline, untuned)
    with ScratchDir("tvmopt-bench-") as work:
        return _bench(model_ref, target, work, log_root, rounds, runs, torch_compile, baseline, untuned)


def _bench(model_ref: str, target: str, work: Path, log_root, rounds: int, runs: int,
           torch_compile: bool, baseline, untuned: bool) -> BenchReport:
    from ..frontends import zoo

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
    feeds = feeds or random_inputs(model.inputs)
    tuned_artifact = compile_model(model, spec, work / "tuned", log_root=log_root)
    tuning = tuned_artifact.manifest.tuning

    threads = default_threads()  # ORT and torch get the thread count TVM runs with
    ort = OrtSession(onnx_path, threads)
    reference = ort(feeds)
    contenders: dict[str, ProcessContender | Callable[[], object]] = {}
    outputs: dict[str, list] = {}
    notes: dict[str, str] = {}

    if untuned:  # TVM's default lowering: minutes per call for an untuned CNN
        plain = compile_model(model, spec, work / "untuned", log_root=None)
        contenders["tvm-untuned"] = ProcessContender("artifact", str(plain.path))
        outputs["tvm-untuned"] = load(plain.path)(**feeds)
    _add_tuned("tvm-tuned", tuned_artifact, feeds, contenders, outputs, notes,
               f"no records in {tuning.log_dir}; run `tvmopt tune` first")
    contenders["onnxruntime"] = ProcessContender("onnxruntime", str(onnx_path), threads)
    outputs["onnxruntime"] = reference
    if zoo_model is not None:
        _add_torch(zoo_model, example, threads, torch_compile, contenders, outputs, notes)
    fp32_reference = None
    if baseline is not None:
        fp32_reference = _add_baseline(Path(baseline), spec, work, log_root, feeds, threads, contenders, outputs,
                                       notes)

    medians = isolated_medians(contenders, feeds, rounds, runs)
    results = []
    for name in ORDER:
        fp32 = name.endswith("-fp32")
        if name in medians:
            ort_ms = medians["onnxruntime-fp32" if fp32 else "onnxruntime"]
            own_fp32 = medians.get(name if fp32 else f"{name}-fp32")
            results.append(Timing(name, round(medians[name], 5), round(medians[name] / ort_ms, 3),
                                  max_abs_diff(outputs[name], fp32_reference if fp32 else reference),
                                  notes.get(name, ""),
                                  round(medians[name] / own_fp32, 3) if own_fp32 else None))
        elif name in notes:
            results.append(Timing(name, None, None, None, notes[name]))
    return BenchReport(model.name, spec.log_name, results, host_machine(), threads,
                       f"median of {rounds} alternated rounds x {runs} calls, each engine in its own process, "
                       f"wall clock per call, {threads} threads each",
                       str(baseline) if baseline is not None else None)


def _add_tuned(name: str, artifact, feeds: dict, contenders, outputs, notes, missing: str) -> None:
    """The tuned artifact as a contender, or a note saying why there is none (no records, and no
    schedule of another kernel in the log fits any of its kernels)."""
    tuning = artifact.manifest.tuning
    if not tuning.tasks_tuned and not tuning.schedules_borrowed and not tuning.schedules_sampled:
        notes[name] = missing
        return
    contenders[name] = ProcessContender("artifact", str(artifact.path))
    outputs[name] = load(artifact.path)(**feeds)
    borrowed = f", {len(tuning.schedules_borrowed)} borrowed schedules" if tuning.schedules_borrowed else ""
    sampled = f", {len(tuning.schedules_sampled)} sampled" if tuning.schedules_sampled else ""
    notes[name] = f"{tuning.tasks_tuned}/{tuning.tasks_total} kernels tuned{borrowed}{sampled}"


def _add_baseline(path: Path, spec, work: Path, log_root, feeds: dict, threads: int, contenders, outputs,
                  notes) -> list:
    """tvmopt (tuned records of the log) and ONNX Runtime on the fp32 model, on the same inputs."""
    from ..errors import InputSpecError

    fp32_model = import_model(path)
    names = {s.name for s in fp32_model.inputs}
    if names != set(feeds):
        raise InputSpecError(f"baseline {path}: inputs {', '.join(sorted(names))} differ from the benchmarked "
                             f"model's {', '.join(sorted(feeds))}; give the fp32 model it was quantized from")
    artifact = compile_model(fp32_model, spec, work / "tuned-fp32", log_root=log_root)
    tuning = artifact.manifest.tuning
    ort = OrtSession(path, threads)
    reference = ort(feeds)
    _add_tuned("tvm-tuned-fp32", artifact, feeds, contenders, outputs, notes,
               f"no records for the fp32 model in {tuning.log_dir}; run `tvmopt tune` on it first")
    contenders["onnxruntime-fp32"] = ProcessContender("onnxruntime", str(path), threads)
    outputs["onnxruntime-fp32"] = reference
    return reference


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

"""What a model nobody tuned gets with zero trials: TVM's default schedules against schedules
borrowed from the other models' kernels in the log (compiler/transfer.py), next to ONNX Runtime.

Leave-one-out: for each model, the reference log (default: the shipped x86-avx2 log) minus every
workload of that model is the only log the compile sees, so nothing of the model itself applies;
a kernel either borrows the schedule of another model's kernel with the same blocks or keeps
TVM's default. Interleaved rounds, medians, same run, same threads.

    python benchmarks/borrow.py --models resnet18,mobilenetv2,bert4,mlp [--onnx extra.onnx ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tvmopt
from tvmopt.compiler import records
from tvmopt.compiler.options import GraphOptions
from tvmopt.compiler.passes import extract_tasks, fuse
from tvmopt.frontends import zoo
from tvmopt.logs.maintain import _write_log
from tvmopt.logs.store import LogDatabase
from tvmopt.logs.workload import workload_hash
from tvmopt.measure.baselines import OrtSession
from tvmopt.measure.timing import interleaved_medians, max_abs_diff
from tvmopt.resources import shipped_logs_root
from tvmopt.runtime.inputs import random_inputs
from tvmopt.targets import get_target
from tvmopt.threads import default_threads


def leave_one_out(source: Path, model, dest: Path) -> int:
    """Write `source`'s best records minus the workloads of `model` to `dest`; how many were left out."""
    spec = get_target("host")
    fused = fuse(model.mod, spec.tvm_target(), GraphOptions())
    own = {workload_hash(task.dispatched[0]) for task in extract_tasks(fused, spec.tvm_target())}
    database = LogDatabase(source, readonly=True, best_only=True)
    kept = []
    for mod in database.workload_modules():
        best = database.best_record(mod)
        if workload_hash(mod) not in own and best is not None:
            kept.append((best.workload, [best]))
    dest.mkdir(parents=True)
    _write_log(dest, kept)
    return database.num_workloads - len(kept)


def only_the_given_log(tmp: str, models: str, onnx: list[str]) -> list[Path]:
    """Hide the shipped logs from compile and tune (the leave-one-out log becomes the only reference)
    and return the ONNX files to run: the zoo `models` (comma-separated) exported into `tmp`, then `onnx`."""
    empty = Path(tmp, "no-shipped-logs")
    empty.mkdir()
    records.shipped_logs_root = lambda: empty
    paths = [zoo.get(name).export_onnx(Path(tmp, f"{name}.onnx")) for name in models.split(",") if name]
    return paths + [Path(p) for p in onnx]


def run(path: Path, log: Path, work: Path, rounds: int, runs: int, show_donors: bool = False) -> dict:
    model = tvmopt.import_model(path)
    root = work / "logs"
    left_out = leave_one_out(log, model, root / log.name)
    started = time.monotonic()
    borrowed = tvmopt.compile(model, "host", work / "borrowed", log_root=root)
    compile_s = time.monotonic() - started
    started = time.monotonic()
    plain = tvmopt.compile(model, "host", work / "default", log_root=None)
    plain_s = time.monotonic() - started
    feeds = random_inputs(model.inputs)
    ort = OrtSession(path, default_threads())
    reference = ort(feeds)
    engines = {"tvm-default": tvmopt.load(plain.path), "tvm-borrowed": tvmopt.load(borrowed.path)}
    for name, engine in engines.items():
        diff = max_abs_diff(engine(**feeds), reference)
        assert diff < 1e-3, f"{name} differs from ORT by {diff}"
    contenders = {name: engine.bound_call(feeds) for name, engine in engines.items()}
    contenders["onnxruntime"] = lambda: ort(feeds)
    medians = interleaved_medians(contenders, rounds, runs)
    tuning = borrowed.manifest.tuning
    if show_donors:
        for kernel, donor in tuning.schedules_borrowed:
            print(f"  {model.name}: {kernel} <- {donor}", file=sys.stderr)
    return {"model": model.name, "left_out": left_out, "kernels": tuning.tasks_total,
            "borrowed": len(tuning.schedules_borrowed), "compile_s": round(compile_s, 1), "plain_s": round(plain_s, 1),
            **{name: round(ms, 3) for name, ms in medians.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,mobilenetv2,bert4,mlp", help="zoo models, comma-separated")
    parser.add_argument("--onnx", nargs="*", default=[], help="more ONNX files (static shapes)")
    parser.add_argument("--log", type=Path, default=shipped_logs_root() / "x86-avx2", help="the reference log")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--show-donors", action="store_true", help="print each borrowed kernel and its donor (stderr)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = only_the_given_log(tmp, args.models, args.onnx)
        print("| model | kernels | borrowed | TVM default ms | borrowed ms | ORT ms | default / ORT | borrowed / ORT "
              "| compile s (borrowed / default) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for i, path in enumerate(paths):
            r = run(path, args.log, Path(tmp, f"m{i}"), args.rounds, args.runs, args.show_donors)
            ort = r["onnxruntime"]
            print(f"| {r['model']} | {r['kernels']} | {r['borrowed']} | {r['tvm-default']} | {r['tvm-borrowed']} | {ort} "
                  f"| {r['tvm-default'] / ort:.2f}x | {r['tvm-borrowed'] / ort:.2f}x | {r['compile_s']} / {r['plain_s']} |",
                  flush=True)
    print(f"\n{' '.join(['python'] + sys.argv)}  (threads: {default_threads()}, log {args.log.name} minus each model's "
          "own workloads)")


if __name__ == "__main__":
    np.random.seed(0)
    main()

"""Where the time goes, kernel by kernel: tvmopt's tuned kernels against ONNX Runtime's nodes.

    .venv/bin/python benchmarks/kernel_profile.py resnet18 --target x86-avx512 [--log-dir tuning_logs] [--top 8]
    .venv/bin/python benchmarks/kernel_profile.py model_int8.onnx --log-dir LOGS   # any ONNX file
    .venv/bin/python benchmarks/kernel_profile.py mobilenetv2 --target x86-avx512 --perf   # no hook: perf samples

TVM side: each fused kernel's time inside the model compiled with the log, over 50 runs (the VM's
instrument hook). ORT side: its own profiler over 50 runs, per node, averaged. Both
are grouped by operator class (conv, matmul/gemm, int8 gemm, other) so the gap can be pinned on a
class (a Winograd conv's three kernels count as conv, with the Winograd GEMMs' smaller operation
count, so its G(FL)OP/s is the arithmetic done, not the direct conv's equivalent); the int8 class is held against the int8 dot-product peak, the others against fp32's.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import tvmopt
from tvmopt.compiler.passes import extract_tasks, fuse
from tvmopt.frontends import zoo
from tvmopt.logs.workload import estimate_flops


INT8_OPS = ("int8_gemm", "matmulinteger", "dynamicquantizematmul", "qlinearmatmul", "qgemm")


def op_class(name: str) -> str:
    name = name.lower()
    if any(op in name for op in INT8_OPS):
        return "int8 gemm"
    # A Winograd conv's transforms and GEMMs are its conv; so is a depthwise conv fused into its 1x1
    # conv (compiler/dwpw.py: fused_depthwise_pointwise*), whose kernel names no "conv".
    if "conv" in name or "winograd" in name or "depthwise" in name:
        return "conv"
    if "matmul" in name or "gemm" in name or "dense" in name:
        return "matmul/gemm"
    return "other"


def task_flops(model, target: str) -> dict[str, tuple[float, int]]:
    """Task name -> (operations of one call, calls per inference) of the model's fused kernels."""
    tvm_target = tvmopt.get_target(target).tvm_target()
    return {task.task_name: (estimate_flops(task.dispatched[0]), task.weight)
            for task in extract_tasks(fuse(model.mod, tvm_target), tvm_target)}


def tvm_kernels(model, target: str, log_root: Path, runs: int = 50) -> list[dict]:
    """Each kernel's time inside the compiled model (the log's records applied), per inference.

    Measured in the model, as ORT's profiler measures its nodes: a kernel's time in isolation
    (the log's best) flatters large-weight layers, whose weights stay in cache across the
    runner's repeats; inside ResNet-18 a layer-4 conv ran 40% slower than its logged best.
    The VM's instrument hook times every call (bytecode VM; ~1 us of hook per call).
    """
    import time

    import tvm
    from tvm import relax

    from tvmopt.compiler import _optimise
    from tvmopt.compiler.options import GraphOptions
    from tvmopt.runtime.inputs import random_inputs

    spec = tvmopt.get_target(target)
    tvm_target = spec.tvm_target()
    flops = {name: per_call for name, (per_call, _) in task_flops(model, target).items()}
    fused, tuning, _ = _optimise(model, spec, tvm_target, log_root, GraphOptions())
    print(f"{tuning.tasks_tuned}/{tuning.tasks_total} kernels have records in {log_root}")
    vm = relax.VirtualMachine(relax.build(fused, target=tvm_target, exec_mode="bytecode"), tvm.cpu())
    args = [tvm.runtime.tensor(a, tvm.cpu()) for a in random_inputs(model.inputs).values()]
    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    started = [0.0]

    def instrument(_func, name, before, _ret, *_args):
        if before:
            started[0] = time.perf_counter()
        else:
            seconds[name] += time.perf_counter() - started[0]
            calls[name] += 1
        return 0  # VMInstrumentReturnKind.NO_OP

    for _ in range(5):
        vm["main"](*args)
    vm.set_instrument(instrument)
    for _ in range(runs):
        vm["main"](*args)
    rows = []
    for name, secs in seconds.items():
        if name.startswith("vm.builtin."):
            continue
        task = name.removesuffix("_prepacked")
        per_run = calls[name] / runs
        rows.append({"name": name, "calls": per_run, "flops": flops.get(task, 0.0) * per_run, "us": secs / runs * 1e6})
    return rows


# The timed loop perf samples: the artifact's full call, as `tvmopt bench` times it.
_PERF_LOOP = """
import sys, time
from tvmopt.runtime import load
predictor = load(sys.argv[1])
call = predictor.bound_call(predictor.random_inputs())
for _ in range(20):
    call()
start, calls = time.perf_counter(), 0
while time.perf_counter() - start < float(sys.argv[2]):
    call()
    calls += 1
print((time.perf_counter() - start) / calls * 1e6)
"""


@dataclass
class PerfSplit:
    """Where perf's samples of tvmopt's call went besides the kernels."""

    per_call_us: float  # the call's wall time under perf
    shares: dict[str, float]  # % of all threads' samples: "kernels", "TVM runtime", "OS ...", ...


def perf_kernels(model, target: str, log_root: Path, seconds: float = 8.0) -> tuple[list[dict], PerfSplit]:
    """Each kernel's time inside the compiled model from `perf record` samples (all threads), no hook.

    The VM's instrument hook runs Python around every kernel, and short kernels pay for it:
    MobileNetV2's depthwise convs read 2-4x their tuned times with the hook, 1.3-2.4x from perf
    samples (2026-12-07). A kernel on all T threads for w us gets T*w of the T*wall thread-time, so
    its share of the samples times the per-call wall time is its wall time. Returns the kernel rows
    and the split of the rest: the TVM runtime (thread pool, workspaces), the OS (the pool's
    sched_yield), Python and libc.
    """
    for tool in ("perf", "nm"):
        if shutil.which(tool) is None:
            raise SystemExit(f"--perf needs `{tool}` on PATH (Debian: linux-perf, binutils)")
    tmp = Path(tempfile.mkdtemp(prefix="tvmopt-perf-"))
    try:
        return _perf_kernels(model, target, log_root, seconds, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _perf_kernels(model, target: str, log_root: Path, seconds: float, tmp: Path) -> tuple[list[dict], PerfSplit]:
    artifact = tvmopt.compile(model, target, tmp / "artifact", log_root=log_root)
    data = tmp / "perf.data"
    run = subprocess.run(["perf", "record", "-F", "2999", "-o", str(data), sys.executable, "-c", _PERF_LOOP,
                          str(artifact.path), str(seconds)], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"perf record failed (kernel.perf_event_paranoid?): {run.stderr.strip()[-400:]}")
    per_call_us = float(run.stdout.split()[-1])
    report = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso,sym", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
    # Kernel bodies run in parallel lambdas without symbols of their own: each sample goes to the
    # nearest symbol below it in the library (the kernel whose lambda it is).
    nm = subprocess.run(["nm", str(artifact.library_path)], capture_output=True, text=True, check=True).stdout
    symbols = sorted((int(a, 16), n) for a, t, n in (line.split() for line in nm.splitlines() if len(line.split()) == 3)
                     if t in "tT")
    starts = [a for a, _ in symbols]
    kernels: dict[str, float] = defaultdict(float)
    rest: dict[str, float] = defaultdict(float)
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
        if not match:
            continue
        share, dso, sym = float(match[1]), match[2], match[3]
        if dso == artifact.library_path.name:
            name = sym
            if sym.startswith("0x"):
                name = symbols[max(0, bisect.bisect_right(starts, int(sym, 16)) - 1)][1]
            kernels[re.sub(r"^__tvm_ffi_|_compute_$", "", name)] += share
        else:
            rest["TVM runtime" if "tvm" in dso else "OS (incl. the pool's sched_yield)" if "kernel" in dso
                 else "Python" if "python" in dso else "libc" if dso.startswith("libc") else "other"] += share
    flops = task_flops(model, target)
    rows = []
    for name, share in kernels.items():
        per_call, calls = flops.get(name.removesuffix("_prepacked"), (0.0, 1))
        rows.append({"name": name, "calls": calls, "flops": per_call * calls, "us": share / 100 * per_call_us})
    rest["kernels"] = sum(kernels.values())
    return rows, PerfSplit(per_call_us, dict(rest))


def ort_nodes(onnx_path: Path, feeds: dict, runs: int = 50) -> list[dict]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    warmup = 5
    for _ in range(warmup + runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"][: -len("_kernel_time")]
            durations[node].append(event["dur"])
            op_of[node] = event.get("args", {}).get("op_name", "?")
    return [{"name": f"{n} ({op_of[n]})", "op": op_of[n], "us": sum(d[warmup:]) / max(1, len(d[warmup:]))}
            for n, d in durations.items()]


def ort_wall_us(onnx_path: Path, feeds: dict, runs: int = 200) -> float:
    """ORT's plain session.run median (no profiler), the figure to hold its profiler's node sum against."""
    import statistics
    import time

    from tvmopt.measure.baselines import OrtSession

    session = OrtSession(onnx_path)
    for _ in range(20):
        session(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session(feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo name, or an .onnx file (random inputs)")
    parser.add_argument("--target", default="host")
    parser.add_argument("--log-dir", default="tuning_logs")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--perf", action="store_true",
                        help="time tvmopt's kernels from perf samples of the artifact's plain call (no hook; "
                             "needs perf and nm) and show where the rest of the call goes")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tvmopt-profile-"))
    from peak import peak_gflops, peak_int8_gops

    # Peaks first: right after a run, ONNX Runtime's pool threads still spin and halved the fp32 peak.
    _, fp32_peak = peak_gflops()
    _, int8_peak = peak_int8_gops()
    if args.model.endswith(".onnx"):
        from tvmopt.runtime.inputs import random_inputs

        onnx_path = Path(args.model)
        model = tvmopt.import_model(onnx_path)
        feeds = random_inputs(model.inputs)
    else:
        entry = zoo.ZOO[args.model]
        onnx_path = entry.export_onnx(tmp / f"{args.model}.onnx")
        feeds = {n: t.numpy() for n, t in zip(entry.input_names, entry.example_inputs())}
        model = tvmopt.import_model(onnx_path)
    split: PerfSplit | None = None
    if args.perf:
        tvm_rows, split = perf_kernels(model, args.target, Path(args.log_dir))
    else:
        tvm_rows = tvm_kernels(model, args.target, Path(args.log_dir))
    ort_rows = ort_nodes(onnx_path, feeds)

    print(f"### {Path(args.model).stem} on {args.target}: kernel time per inference (us)\n")
    print(f"G(FL)OP/s of a class = the model's operations in that class (TVM's count, the same work for both) / time;"
          f" % of this machine's measured peak on all cores (benchmarks/peak.py): fp32 FMA {fp32_peak:.0f} GFLOP/s,"
          f" int8 u8 x s8 dot product {int8_peak:.0f} GOP/s for the int8 gemm class.\n")
    print("| class | M(FL)OP | TVM us (in the model) | TVM G(FL)OP/s (% peak) | ORT us (profiler) "
          "| ORT G(FL)OP/s (% peak) | TVM/ORT |\n|---|---|---|---|---|---|---|")
    classes = ["conv", "matmul/gemm", "int8 gemm", "other"]
    for cls in classes + ["total"]:
        peak = int8_peak if cls == "int8 gemm" else fp32_peak
        tvm_us = sum(r["us"] or 0 for r in tvm_rows if cls == "total" or op_class(r["name"]) == cls)
        ort_us = sum(r["us"] for r in ort_rows if cls == "total" or op_class(r["op"]) == cls)
        flops = sum(r["flops"] for r in tvm_rows if cls == "total" or op_class(r["name"]) == cls)
        ratio = f"{tvm_us / ort_us:.2f}x" if ort_us else "-"

        def rate(us: float, flops: float = flops, peak: float = peak) -> str:
            if not us or not flops:
                return "-"
            return f"{flops / us / 1e3:.0f} ({100 * flops / us / 1e3 / peak:.0f}%)" if cls != "total" else f"{flops / us / 1e3:.0f}"

        print(f"| {cls} | {flops / 1e6:.0f} | {tvm_us:.0f} | {rate(tvm_us)} | {ort_us:.0f} | {rate(ort_us)} | {ratio} |")
    if split is not None:
        print(f"\nperf samples of tvmopt's call ({split.per_call_us:.0f} us per call under perf), share of all threads'"
              " time: " + ", ".join(f"{k} {v:.1f}%" for k, v in sorted(split.shares.items(), key=lambda kv: -kv[1]))
              + f". ORT's profiler adds time per node: its node sum {sum(r['us'] for r in ort_rows):.0f} us against"
              f" {ort_wall_us(onnx_path, feeds):.0f} us for a plain session.run now.")
    print(f"\nTop {args.top} TVM kernels | us || Top {args.top} ORT nodes | us\n---|---||---|---")
    top_tvm = sorted((r for r in tvm_rows if r["us"]), key=lambda r: -r["us"])[: args.top]
    top_ort = sorted(ort_rows, key=lambda r: -r["us"])[: args.top]
    for i in range(max(len(top_tvm), len(top_ort))):
        a = top_tvm[i] if i < len(top_tvm) else {"name": "", "us": None}
        b = top_ort[i] if i < len(top_ort) else {"name": "", "us": None}
        fmt = lambda r: f"{r['name']} | {r['us']:.0f}" if r["us"] else " | "
        print(f"{fmt(a)} || {fmt(b)}")


if __name__ == "__main__":
    main()

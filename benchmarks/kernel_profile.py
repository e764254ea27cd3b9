"""Where the time goes, kernel by kernel: tvmopt's tuned kernels against ONNX Runtime's nodes.

    .venv/bin/python benchmarks/kernel_profile.py resnet18 --target x86-avx512 [--log-dir tuning_logs] [--top 8]
    .venv/bin/python benchmarks/kernel_profile.py model_int8.onnx --log-dir LOGS   # any ONNX file

TVM side: each fused kernel's time inside the model compiled with the log, over 50 runs (the VM's
instrument hook). ORT side: its own profiler over 50 runs, per node, averaged. Both
are grouped by operator class (conv, matmul/gemm, int8 gemm, other) so the gap can be pinned on a
class (a Winograd conv's three kernels count as conv, with the Winograd GEMMs' smaller operation
count, so its G(FL)OP/s is the arithmetic done, not the direct conv's equivalent); the int8 class is held against the int8 dot-product peak, the others against fp32's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
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
    if "conv" in name or "winograd" in name:  # a Winograd conv's transforms and GEMMs are its conv
        return "conv"
    if "matmul" in name or "gemm" in name or "dense" in name:
        return "matmul/gemm"
    return "other"


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
    flops = {task.task_name: estimate_flops(task.dispatched[0]) for task in extract_tasks(fuse(model.mod, tvm_target), tvm_target)}
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

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo name, or an .onnx file (random inputs)")
    parser.add_argument("--target", default="host")
    parser.add_argument("--log-dir", default="tuning_logs")
    parser.add_argument("--top", type=int, default=8)
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

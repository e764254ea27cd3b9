"""The one place that touches TVM internals; each workaround says which TVM behaviour it avoids.

Everything else in tvmopt imports `ms` (MetaSchedule) and helpers from here, so the next
package move (tvm.meta_schedule -> tvm.s_tir.meta_schedule happened in 0.2x) is a one-file fix.
TVM's public types (IRModule, Target, relax) are used directly elsewhere.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import os
import sys
import tempfile
from typing import Any

import tvm
from tvm import relax

try:  # apache-tvm >= 0.2x
    from tvm.s_tir import meta_schedule as ms
except ImportError:  # pragma: no cover - older layout
    from tvm import meta_schedule as ms  # type: ignore[no-redef]

from tvm.ir.utils import derived_object  # noqa: E402  (used by tuning/ to subclass Py* objects)

TVM_VERSION: str = tvm.__version__

__all__ = [
    "ms",
    "derived_object",
    "TVM_VERSION",
    "host_cpu_name",
    "register_tensor_intrinsics",
    "fuse",
    "extract_tasks",
    "estimate_flops",
    "PersistentBuilder",
    "make_runner",
    "make_search_strategy",
    "apply_database",
    "build",
    "export_library",
    "load_vm",
]


SHOW_NATIVE_OUTPUT = False  # the CLI's --verbose sets this


@contextlib.contextmanager
def native_output_captured():
    """Collect what TVM prints on fd 1/2 (C++ warnings, the ONNX frontend's prints).

    TVM's C++ logging and some frontends write straight to the process's stdout/stderr
    ("Warning: Fast mode segfaults ...", "Error converting operator ..."), which buries our
    one-line errors. Yields a dict whose "text" holds the output once the block ends.
    """
    box: dict[str, str] = {"text": ""}
    if SHOW_NATIVE_OUTPUT:
        yield box
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield box
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            box["text"] = sink.read().decode(errors="replace")


def host_cpu_name() -> str:
    """LLVM's name for this CPU (e.g. 'znver4').

    Workaround: the wheel's LLVM refuses mcpu=native (falls back to 'generic', losing AVX),
    so the host target asks LLVM for the concrete CPU name instead.
    """
    return str(tvm.target.codegen.llvm_get_system_cpu())


_INTRINSICS_DONE: set[str] = set()


def register_tensor_intrinsics(target: tvm.target.Target) -> None:
    """Register the tensor intrinsics MetaSchedule may tensorize to, for this target only.

    Workaround: `import tvm.s_tir.tensor_intrin` (done by TuneContext and by every
    LocalBuilder worker) costs ~21 s, 20 s of it parsing CUDA MMA intrinsics. On CPU
    targets we import only the x86 / Arm sets and mark the package imported, so that
    TVM's own `import tvm.s_tir.tensor_intrin` becomes a no-op. CUDA targets get all.
    """
    kind = target.kind.name
    arm = str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm"))
    key = f"{kind}-{'arm' if arm else 'other'}"
    if key in _INTRINSICS_DONE:
        return
    package = "tvm.s_tir.tensor_intrin"
    if kind != "llvm":
        module = sys.modules.get(package)
        if module is not None and getattr(module, "_tvmopt_partial", False):
            module.__spec__.loader.exec_module(module)  # run the real __init__: all intrinsics
            module._tvmopt_partial = False
        importlib.import_module(package)
    elif package not in sys.modules:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
        module._tvmopt_partial = True
        sys.modules[package] = module
    if kind == "llvm":
        importlib.import_module(package + (".arm_cpu" if arm else ".x86"))
    _INTRINSICS_DONE.add(key)


def onnx_to_relax(proto, shape_dict: dict | None) -> tvm.IRModule:
    """ONNX ModelProto -> Relax (weights become constants; input dtypes from the graph)."""
    import re

    from tvm.relax.frontend.onnx import from_onnx

    with native_output_captured() as out:
        try:
            return from_onnx(proto, shape_dict=shape_dict)
        except Exception as err:  # noqa: BLE001
            message = _last_line(err)
            # The traceback's frames hold the importer's BlockBuilder, whose destructor prints
            # a C++ warning; drop them and collect now, while output is still captured.
            err.__traceback__ = None
        gc.collect()
    # The frontend only prints which op type failed; put it into the error.
    match = re.search(r"Error converting operator (\w+)", out["text"])
    where = f"converting a {match.group(1)} node: " if match else ""
    raise RuntimeError(where + message)


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def fold_onnx_constants(proto, static_shapes: dict[str, tuple[int, ...]]):
    """Pin input dims and fold shape arithmetic to constants (onnxscript's optimizer).

    Workaround: torch's dynamo ONNX exporter computes reshape targets from Shape/Gather/Mul
    chains; TVM's ONNX frontend turns those into PrimValues and then fails ("Reshape expects
    the input data to be a Tensor"). With static input shapes they fold to constants.
    """
    import onnx
    from onnxscript import optimizer

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for value in proto.graph.input:
        if value.name in static_shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, static_shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    return optimizer.optimize(proto)


def onnx_supported_ops() -> set[str]:
    """ONNX op types the Relax frontend converts (it checks this map itself, but only
    reports op types; we check first to also name the nodes)."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    return set(_get_convert_map()) | {"Constant", "If"}  # both handled outside the map


def exported_program_to_relax(exported) -> tvm.IRModule:
    """torch.export ExportedProgram -> Relax, parameters bound as constants."""
    from tvm.relax.frontend.torch import from_exported_program

    with native_output_captured():
        return from_exported_program(exported, keep_params_as_input=False)


def fuse(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Graph-level optimisation: legalize to TIR, fold constants, FuseOps + FuseTIR.

    The same sequence as relax.pipeline.static_shape_tuning_pipeline before its tuning step,
    so tuned workloads match the kernels compiled later (records are keyed by structure), plus
    FastMathTransform: erf/exp/tanh/softmax become TOPI's vectorizable polynomial forms. LLVM
    has no erf intrinsic, so a GELU epilogue called scalar libm erff per element: in the
    BERT-style zoo model the FFN matmul+GELU kernel took 62% of the tuned time (10.9 of 17.5 ms,
    benchmarks/kernel_profile.py) against ORT's 1.8 ms for the same GEMMs.
    """
    from tvm.relax import transform

    with target, native_output_captured():
        return tvm.transform.Sequential(
            [
                transform.DecomposeOpsForInference(),
                transform.CanonicalizeBindings(),
                transform.FastMathTransform(),
                relax.get_pipeline("zero"),
            ]
        )(mod)


def extract_tasks(fused: tvm.IRModule, target: tvm.target.Target) -> list:
    """MetaSchedule tuning tasks (ExtractedTask: task_name, mod, weight) of a fused module."""
    register_tensor_intrinsics(target)
    return list(ms.relax_integration.extract_tasks(fused, target))


# TVM 0.27 renamed tvm.tir to tvm.tirx and Relax's struct_info to `ty` (TensorType,
# TupleType); these helpers keep those names here.
from tvm import tirx  # noqa: E402

PrimFunc = tirx.PrimFunc
SymbolicVar = tirx.Var
IntImm = tirx.IntImm


def symbolic_dim(name: str):
    """A symbolic int64 dimension for the ONNX frontend's shape_dict."""
    return tirx.Var(name, "int64")


def param_specs(func) -> list[tuple[str, tuple, str]]:
    """(name, shape, dtype) of a Relax function's tensor parameters; symbolic dims as str."""
    return [(p.name, tensor_shape(p.ty), str(getattr(p.ty, "dtype", ""))) for p in func.params]


def output_types(func) -> list[tuple[tuple, str]]:
    """(shape, dtype) of each tensor a Relax function returns, nested tuples flattened."""
    out: list[tuple[tuple, str]] = []

    def walk(ty) -> None:
        if isinstance(ty, relax.TupleType):
            for field in ty.fields:
                walk(field)
        elif isinstance(ty, relax.TensorType):
            out.append((tensor_shape(ty), str(ty.dtype)))

    walk(func.ret_ty)
    return out


def tensor_shape(ty) -> tuple:
    shape = getattr(ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return ()
    return tuple(int(d) if isinstance(d, IntImm) else str(d) for d in shape.values)


def estimate_flops(mod_or_func: Any) -> float:
    """FLOPs of one TIR PrimFunc / IRModule as TVM estimates them."""
    from tvm.s_tir.analysis import estimate_tir_flops

    if isinstance(mod_or_func, PrimFunc):
        mod_or_func = tvm.IRModule({"main": mod_or_func})
    try:
        return float(estimate_tir_flops(mod_or_func))
    except Exception:  # noqa: BLE001 - opaque/extern ops have no estimate
        return 0.0


# --------------------------------------------------------------------------- builder


def _build_candidate(mod: tvm.IRModule, target: tvm.target.Target, cross_compiler: str | None) -> str:
    """Build one scheduled candidate in a worker process and export it as a shared library.

    Mirrors MetaSchedule's default_build/default_export, minus its full tensor_intrin import;
    exports a linked .so (cross-compiled for remote targets) rather than a tar of objects, so
    an RPC device needs no compiler of its own.
    """
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    register_tensor_intrinsics(target)
    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    from tvm.driver import build as tvm_build

    rt_mod = tvm_build(mod, target=target)
    path = os.path.join(tempfile.mkdtemp(prefix="tvmopt-cand-"), "candidate.so")
    export_library(rt_mod, path, cross_compiler)
    return path


ALREADY_MEASURED = "tvmopt: already measured in the log, not built again"


def scheduled_module_hash(mod: tvm.IRModule) -> int:
    """Structural hash of a (scheduled or not) TIR module."""
    import tvm_ffi

    return int(tvm_ffi.structural_hash(mod))


def workload_hash(mod: tvm.IRModule) -> str:
    """Printable 64-bit structural hash: how session records and `logs show` name a workload."""
    return f"{scheduled_module_hash(mod) & 0xFFFFFFFFFFFFFFFF:016x}"


def record_module_hash(record) -> int:
    """Hash of the scheduled module a tuning record stands for (its trace replayed)."""
    sch = tvm.s_tir.Schedule(record.workload.mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return scheduled_module_hash(sch.mod)


@derived_object
class PersistentBuilder(ms.builder.PyBuilder):
    """Builds candidates in a pool of worker processes that lives for the whole session.

    Workaround: LocalBuilder starts a fresh process pool for every batch, and each worker
    re-imports TVM plus all tensor intrinsics (~24 s) before a 30 ms build, which also makes
    MetaSchedule's 30 s build timeout fail good candidates. Here workers start once, are
    recycled after `max_uses` builds (LocalBuilder's reason for fresh pools: worker leaks),
    and a build that hangs or crashes is still killed and reported as an error.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        timeout_sec: float = 60.0,
        max_uses: int = 256,
        measured: set[int] | None = None,
        cross_compiler: str | None = None,
    ):
        super().__init__()
        self.cross_compiler = cross_compiler
        # Hashes of scheduled modules already in the log: MetaSchedule's evolutionary search
        # seeds from the log's best records but only avoids what it measured itself, so a
        # resumed session would measure them again; those are answered ALREADY_MEASURED.
        self.measured = measured if measured is not None else set()
        from tvm.support.popen_pool import PopenPoolExecutor

        self.max_workers = max_workers or max(1, len(os.sched_getaffinity(0)))
        self.timeout_sec = timeout_sec
        self._pool = PopenPoolExecutor(
            max_workers=self.max_workers, timeout=timeout_sec, maximum_process_uses=max_uses
        )

    def build(self, build_inputs: list) -> list:
        from tvm.support.popen_pool import StatusKind

        fresh, results = [], []
        for inp in build_inputs:
            key = scheduled_module_hash(inp.mod)
            fresh.append(key not in self.measured)
            self.measured.add(key)
        jobs = [(inp.mod, inp.target, self.cross_compiler) for inp, new in zip(build_inputs, fresh) if new]
        built = iter(self._pool.map_with_error_catching(lambda args: _build_candidate(*args), jobs))
        for new in fresh:
            if not new:
                results.append(ms.builder.BuilderResult(None, ALREADY_MEASURED))
                continue
            res = next(built)
            if res.status == StatusKind.COMPLETE:
                results.append(ms.builder.BuilderResult(res.value, None))
            elif res.status == StatusKind.TIMEOUT:
                message = f"tvmopt builder: timeout after {self.timeout_sec:.0f} s"
                results.append(ms.builder.BuilderResult(None, message))
            else:
                results.append(ms.builder.BuilderResult(None, f"tvmopt builder: {res.value}"))
        return results

    def shutdown(self) -> None:
        self._pool.shutdown()


def tune_contexts(tasks: list, strategy, num_threads: int, seed: int | None) -> list:
    """One TuneContext per extracted task, all logging to the quiet 'tvmopt.metaschedule' logger.

    Workaround: relax_integration.extracted_tasks_to_tune_contexts builds per-task file
    loggers from a logging config derived from the process's handlers; the second session in
    one process (e.g. under pytest's log capture) crashes there on a handler without a name.
    """
    import logging

    from tvm.s_tir.meta_schedule.utils import fork_seed

    logger = logging.getLogger("tvmopt.metaschedule")
    return [
        ms.TuneContext(
            mod=task.dispatched[0],
            target=task.target,
            space_generator="post-order-apply",
            search_strategy=strategy,
            task_name=task.task_name,
            logger=logger,
            rand_state=rand_state,
            num_threads=num_threads,
        ).clone()
        for task, rand_state in zip(tasks, fork_seed(seed, n=len(tasks)))
    ]


def warm_cost_model(sources: list, target: tvm.target.Target, num_threads: int,
                    per_workload: int = 24, limit: int = 800):
    """An XGBoost cost model trained on records already measured (other models, other targets).

    Stock MetaSchedule starts every session with an empty model that predicts random scores for
    its first 100 samples (XGBModel.num_warmup_samples), so the first batches of each task are
    picked blind. Here each source workload's records (its best ones plus an even spread of the
    rest, so the model sees both good and bad schedules) are replayed into candidates, their
    features extracted as the cost model would, grouped per workload (labels are min cost/cost
    within a workload, as XGBModel.update does), and the model is trained once (training time
    grows with the samples, hence the caps). Returns (model, records used).
    """
    import numpy as np
    from tvm.s_tir.meta_schedule.cost_model.xgb_model import FeatureGroup
    from tvm.s_tir.meta_schedule.utils import shash2hex

    model = ms.cost_model.XGBModel(num_tuning_cores=num_threads, adaptive_training=True)
    used = 0
    for database in sources:
        for mod in database.workload_modules():
            if used >= limit:
                continue
            records = [r for r in database.get_all_records_of(mod) if valid_run_seconds(r.run_secs)]
            if len(records) < 2:
                continue
            records.sort(key=lambda r: _median(r.run_secs))
            keep = records[: per_workload // 2]
            rest = records[per_workload // 2:]
            step = max(1, len(rest) // max(1, per_workload - len(keep)))
            keep += rest[::step][: per_workload - len(keep)]
            context = ms.TuneContext(mod=mod, target=target, task_name="transfer", num_threads=num_threads)
            candidates, costs = [], []
            for record in keep:
                try:
                    sch = tvm.s_tir.Schedule(mod)
                    record.trace.apply_to_schedule(sch, remove_postproc=False)
                except Exception:  # noqa: BLE001 - a trace from another TVM build may not replay
                    continue
                candidates.append(ms.MeasureCandidate(sch, record.args_info))
                costs.append(_median(record.run_secs))
            if len(candidates) < 2:
                continue
            features = [f.numpy().astype("float32") for f in model.extractor.extract_from(context, candidates)]
            pairs = [(f, c) for f, c in zip(features, costs) if len(f)]
            if not pairs:
                continue
            group_hash = shash2hex(mod)
            model.data[group_hash] = FeatureGroup(group_hash, [f for f, _ in pairs],
                                                  np.array([c for _, c in pairs], dtype="float32"))
            model.data_size += len(pairs)
            used += len(pairs)
    if model.data_size:
        xs = [f for group in model.data.values() for f in group.features]
        ys = np.concatenate([group.min_cost / group.costs for group in model.data.values()])
        model._train(xs=xs, ys=ys)  # noqa: SLF001 - XGBModel.update's step 5, once for all groups
        model.last_train_size = model.data_size
    return model, used


def valid_run_seconds(run_secs) -> list[float] | None:
    """A record's run times, or None for a failed candidate (MetaSchedule logs those as 1e10 s)."""
    secs = [float(s) for s in (run_secs or [])]
    return secs if secs and max(secs) < 1e9 else None


def _median(run_secs) -> float:
    secs = sorted(float(s) for s in run_secs)
    return secs[len(secs) // 2]


def make_runner(number: int, repeat: int, min_repeat_ms: int, timeout_sec: float = 30.0):
    """MetaSchedule's LocalRunner (its worker pool already persists across batches)."""
    config = ms.runner.EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False
    )
    return ms.runner.LocalRunner(
        timeout_sec=timeout_sec, evaluator_config=config, f_alloc_argument=_alloc_arguments_local
    )


def _fill_for_measure(tensor) -> None:
    """Random floats; integers 0/1, because integer inputs are often indices.

    Workaround: MetaSchedule fills int tensors with arbitrary random values; for gather/take
    kernels (every embedding lookup) those indices are out of bounds, the measuring process
    segfaults, and the task ends with no valid record at all.
    """
    import numpy as np

    dtype = np.dtype(str(tensor.dtype))
    shape = tuple(int(d) for d in tensor.shape)
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        data = rng.standard_normal(shape).astype(dtype)
    else:
        data = rng.integers(0, 2, shape).astype(dtype)
    tensor.copyfrom(data)


def _alloc_arguments_local(device, args_info, alloc_repeat: int) -> list:
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    return alloc_argument_common(_fill_for_measure, device, args_info, alloc_repeat)


def _alloc_arguments_from_host(session, device, args_info, alloc_repeat: int) -> list:
    """Fill candidate inputs with host-side data copied to the device.

    Workaround (besides the index problem above): RPCRunner's default asks the device for
    tvm.contrib.random, which lives in TVM's compiler library; a runtime-only device (a Pi,
    our emulated root) has none.
    """
    return _alloc_arguments_local(device, args_info, alloc_repeat)


def make_rpc_runner(host: str, port: int, key: str, number: int, repeat: int, min_repeat_ms: int,
                    max_workers: int = 1, session_timeout_sec: float = 60.0):
    """MetaSchedule's RPCRunner: candidates measured on devices registered with a TVM RPC tracker."""
    config = ms.runner.EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False
    )
    rpc = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=key,
                              session_timeout_sec=session_timeout_sec)
    return ms.runner.RPCRunner(
        rpc_config=rpc, evaluator_config=config, max_workers=max_workers,
        f_alloc_argument=_alloc_arguments_from_host,
    )


def rpc_session(host: str, port: int, key: str, timeout_s: float = 60.0):
    """A session on a device from the tracker (blocks until one with `key` is free)."""
    from tvm import rpc

    tracker = rpc.connect_tracker(host, port)
    return tracker.request(key, priority=1, session_timeout=timeout_s)


def rpc_tracker_summary(host: str, port: int) -> str:
    from tvm import rpc

    return str(rpc.connect_tracker(host, port).text_summary())


def run_remote(session, lib_path: str, device_type: str, arrays: list, repeat: int):
    """Upload a library, run its "main" on the remote device; returns (outputs, per-run seconds)."""
    from tvm.runtime.vm import VirtualMachine

    session.upload(lib_path)
    lib = session.load_module(os.path.basename(lib_path))
    device = session.device(device_type, 0)
    vm = VirtualMachine(lib, device)
    tensors = [tvm.runtime.tensor(a, device) for a in arrays]
    result = vm["main"](*tensors)
    timer = vm.time_evaluator("main", device, number=1, repeat=repeat)
    return result, list(timer(*tensors).results)


def make_search_strategy(population_size: int, genetic_num_iters: int, init_min_unmeasured: int):
    return ms.search_strategy.EvolutionarySearch(
        population_size=population_size,
        genetic_num_iters=genetic_num_iters,
        init_min_unmeasured=init_min_unmeasured,
    )


def apply_database(fused: tvm.IRModule, target: tvm.target.Target, database) -> tvm.IRModule:
    """Replace every fused kernel that has a record in `database` by its best schedule."""
    with target, database:
        return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(fused)


def build(mod: tvm.IRModule, target: tvm.target.Target):
    """Compile a fused (and possibly scheduled) Relax module into a VM executable.

    CUDA targets get device code compiled now (nvcc -> fatbin with cubin + PTX for the
    target's arch), not CUDA source left for a JIT on the deployment machine.
    """
    if target.kind.name == "cuda":
        enable_cuda_device_codegen()
    with target, native_output_captured():
        return tvm.compile(mod, target=target)


_CUDA_READY = False


def enable_cuda_device_codegen() -> None:
    """Make TVM compile CUDA kernels with nvcc at build time, also on a machine without a GPU.

    Workaround: TVM's CUDA runtime library (which registers the module factory that calls
    nvcc) links libcuda.so.1, the driver. Without a driver it silently fails to load and the
    codegen falls back to embedding CUDA C++ source. We satisfy that link with a stub libcuda
    (every cu* symbol returns CUDA_ERROR_NO_DEVICE) loaded before TVM's CUDA runtime; a real
    driver is used instead when present. Only compilation runs here; nothing launches.
    """
    global _CUDA_READY
    if _CUDA_READY:
        return
    import ctypes
    import shutil

    import tvm_ffi

    nvcc = shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None
    )
    if nvcc is None:
        raise RuntimeError("compiling for CUDA needs nvcc (the CUDA toolkit) on PATH")
    os.environ["PATH"] = os.path.dirname(nvcc) + os.pathsep + os.environ.get("PATH", "")
    if tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None:
        try:
            ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        except OSError:
            ctypes.CDLL(_stub_libcuda(), mode=ctypes.RTLD_GLOBAL)
        lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")  # no NVRTC in this environment
    importlib.import_module("tvm.support.nvcc")  # registers tvm_callback_cuda_compile
    _CUDA_READY = True


def _stub_libcuda() -> str:
    """Build (once, cached) a libcuda.so.1 that defines the cu* symbols TVM's runtime links."""
    import subprocess

    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tvmopt", "cuda-stub")
    path = os.path.join(cache, "libcuda.so.1")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    runtime = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
    symbols = subprocess.run(["nm", "-D", "--undefined-only", runtime], check=True, capture_output=True, text=True)
    names = sorted({ln.split()[-1] for ln in symbols.stdout.splitlines() if ln.split()[-1].startswith("cu")
                    and "@" not in ln.split()[-1] and ln.split()[-1][2:3].isupper()})
    source = os.path.join(cache, "stub.c")
    with open(source, "w") as stream:
        stream.write("/* tvmopt: stand-in for the CUDA driver at build time; 100 = CUDA_ERROR_NO_DEVICE */\n")
        stream.writelines(f"int {name}(void) {{ return 100; }}\n" for name in names)
    tmp = path + f".tmp{os.getpid()}"
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", tmp, source], check=True)
    os.replace(tmp, path)
    return path


def export_library(executable, path: str, cross_compiler: str | None = None) -> None:
    """Write the executable as a shared library; `cross_compiler` e.g. 'aarch64-linux-gnu-g++'.

    TVM 0.27 moved tvm.contrib.cc to tvm.support.cc.
    """
    if cross_compiler:
        from tvm.support import cc

        executable.export_library(path, fcompile=cc.cross_compiler(cross_compiler))
    else:
        executable.export_library(path)


def load_vm(lib_path: str, device_type: str = "cpu", device_id: int = 0):
    """Load an exported library into a Relax VM; runtime-only API (no compiler needed)."""
    device = tvm.runtime.device(device_type, device_id)
    lib = tvm.runtime.load_module(lib_path)
    return lib, device, new_vm(lib, device)


def new_vm(lib, device):
    """Another VM over an already loaded library (one per thread: a VM is not thread-safe)."""
    from tvm.runtime.vm import VirtualMachine

    return VirtualMachine(lib, device)


# ---- logs compare / cross-apply


def apply_record(record, mod: tvm.IRModule) -> tvm.IRModule:
    """The scheduled module `record`'s trace makes of workload `mod` (which may come from another log)."""
    sch = tvm.s_tir.Schedule(mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod


def measure_scheduled(mods: list, target: tvm.target.Target, device_type: str = "cpu", number: int = 3,
                      repeat: int = 3, min_repeat_ms: int = 20) -> list[tuple[float | None, str | None]]:
    """Build scheduled TIR modules for `target` and time each on this machine, as tuning does.

    Returns (median seconds, None) or (None, one-line error) per module. Uses the tuning session's
    builder and runner, so numbers match the log's; identical modules are built and timed once
    (the builder would report a repeat as already measured).
    """
    import shutil

    unique = {scheduled_module_hash(mod): mod for mod in mods}
    if len(unique) < len(mods):
        timed = dict(zip(unique, measure_scheduled(list(unique.values()), target, device_type, number, repeat,
                                                   min_repeat_ms)))
        return [timed[scheduled_module_hash(mod)] for mod in mods]
    builder = PersistentBuilder(max_workers=max(1, min(len(mods), len(os.sched_getaffinity(0)))),
                                measured=set(), cross_compiler=None)
    runner = make_runner(number, repeat, min_repeat_ms)
    results: list[tuple[float | None, str | None]] = [(None, "not built")] * len(mods)
    try:
        built = builder.build([ms.builder.BuilderInput(mod, target) for mod in mods])
        todo = []
        for index, (mod, res) in enumerate(zip(mods, built)):
            if res.error_msg:
                results[index] = (None, "build failed: " + _last_line(RuntimeError(str(res.error_msg))))
            else:
                args = ms.arg_info.ArgInfo.from_entry_func(mod, remove_preproc=True)
                todo.append((index, str(res.artifact_path), ms.runner.RunnerInput(str(res.artifact_path), device_type, args)))
        futures = runner.run([inp for _, _, inp in todo]) if todo else []
        for (index, path, _), future in zip(todo, futures):
            res = future.result()
            if res.error_msg or not res.run_secs:
                results[index] = (None, "run failed: " + _last_line(RuntimeError(str(res.error_msg))))
            else:
                results[index] = (_median(res.run_secs), None)
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    finally:
        builder.shutdown()
    return results

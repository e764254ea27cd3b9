"""Code generation: build a (scheduled) Relax module into a VM executable and export its library;
CUDA device code is compiled at build time, ARM code is cross-linked."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path

import tvm

from .._compat import cc
from ..errors import CompileError
from ..native_output import captured
from ..runtime.artifact import DeviceCode
from .nan import propagate_nan

FATBIN_MAGIC = b"\x50\xed\x55\xba"  # NVIDIA fatbin header, little-endian 0xBA55ED50


def build(mod: tvm.IRModule, target: tvm.target.Target, compiled_vm: bool = True):
    """Compile a fused (and possibly scheduled) Relax module into a VM executable.

    `compiled_vm` (CPU targets): the VM's control flow becomes native code instead of bytecode
    the interpreter walks per call, which is most of the time of a small model (a tiny MLP went
    from 2.55 to 1.61 us per call).
    """
    from tvm import relax

    if target.kind.name == "cuda":
        enable_cuda_device_codegen()
    exec_mode = "compiled" if compiled_vm and target.kind.name == "llvm" else "bytecode"
    mod = propagate_nan(mod, target)
    with target, captured():
        return relax.build(mod, target=target, exec_mode=exec_mode)


def export_library(executable, path: str, cross_compiler: str | None = None) -> None:
    """Write the executable as a shared library; `cross_compiler` e.g. 'aarch64-linux-gnu-g++'."""
    if cross_compiler:
        executable.export_library(path, fcompile=cc.cross_compiler(cross_compiler))
    else:
        executable.export_library(path)


def device_code(lib_path: str, target_name: str, arch: str) -> DeviceCode:
    """What GPU code the library embeds: compiled fatbin for the arch, or an error (CUDA source only)."""
    data = Path(lib_path).read_bytes()
    if FATBIN_MAGIC in data and arch.encode() in data:
        return DeviceCode("fatbin", arch)
    raise CompileError(f"target {target_name}: the library holds no compiled {arch} device code (nvcc did not run)")


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

    import tvm_ffi

    nvcc = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)
    if nvcc is None:
        raise CompileError("compiling for CUDA needs nvcc (the CUDA toolkit) on PATH")
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


def explain_build_failure(mod: tvm.IRModule, target: tvm.target.Target, err: BaseException) -> str:
    """One line for a failed build, e.g. "in kernel 'cumsum' (bool[2, 8] -> bool[2, 8]): ...":
    the kernel that fails alone (its name says which op it was lowered from), its buffers, and
    TVM's reason, never empty.

    TVM builds all kernels in one LLVM module and its checks often end in "... is false:" with
    no text after; we rebuild kernels one at a time to find the culprit and add the C++
    function the check fired in.
    """
    from ..errors import last_line

    reason = last_line(err)
    kernel = _failing_kernel(mod, target, reason)
    if reason.rstrip().endswith(":") or len(reason.split(":", 1)[-1].strip()) == 0:
        where = _native_frame(err)
        reason = reason.rstrip(": ") + (f" (in TVM's {where}; TVM gives no explanation)" if where else
                                        " (TVM gives no explanation)")
    return f"in kernel {kernel}: {reason}" if kernel else reason


def _native_frame(err: BaseException) -> str | None:
    """The innermost C++ frame of a TVM error ('CodeGenLLVM::CreateAdd, codegen_llvm.cc:1614')."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.endswith((".cc", ".h"))]
    if not frames:
        return None
    frame = frames[-1]
    name = frame.name.split("(")[0].split()[-1].replace("tvm::", "").replace("codegen::", "")
    return f"{name}, {Path(frame.filename).name}:{frame.lineno}"


def _failing_kernel(mod: tvm.IRModule, target: tvm.target.Target, reason: str, budget_s: float = 120.0) -> str | None:
    """Lower `mod` as tvm.compile does, then build each TIR kernel alone; describe the first that
    fails with the same reason (None if none does or time runs out)."""
    import time

    from tvm import relax

    from ..errors import last_line

    deadline = time.monotonic() + budget_s
    try:
        with target, captured():
            lowered = relax.get_default_pipeline(target)(mod)
    except Exception:  # noqa: BLE001 - then the failure was not in a kernel
        return None
    for gvar, func in lowered.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc) or time.monotonic() > deadline:
            continue
        try:
            with target, captured():
                tvm.tirx.build(tvm.IRModule({gvar: func}), target=target)
        except Exception as err:  # noqa: BLE001 - this is the one we look for
            if last_line(err) == reason:
                return f"'{gvar.name_hint}' ({_signature(func)})"
    return None


def _signature(func) -> str:
    """'bool[2, 8] -> bool[2, 8]': a kernel's buffers, the last one its output (TVM's convention)."""
    buffers = [p.ty for p in func.params if hasattr(p.ty, "shape") and hasattr(p.ty, "dtype")]  # 0.27: BufferType
    shown = [f"{b.dtype}[{', '.join(str(_dim(d)) for d in b.shape)}]" for b in buffers]
    if len(shown) < 2:
        return ", ".join(shown)
    return f"{', '.join(shown[:-1])} -> {shown[-1]}"


def _dim(d):
    return int(d) if isinstance(d, tvm.tirx.IntImm) else d

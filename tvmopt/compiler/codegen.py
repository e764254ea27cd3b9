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

"""TVM's runtime without TVM's Python package: tvm_ffi, libtvm_runtime.so and the Relax VM.

Workaround: `import tvm` loads the compiler library and imports Relax, its frontends and
MetaSchedule, and tvm_ffi imports torch (about 5 s and 800 modules here), while a production
process needs only the runtime library. This module loads libtvm_runtime.so itself and drives
the Relax VM through the functions its executable exports (`vm_load_executable`,
`vm_initialization`, then the model's functions): the calls tvm.runtime.vm.VirtualMachine
makes. It works beside a full `import tvm` in the same process (the library loads once).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import struct
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR: reuse freed buffers across calls.
POOLED_ALLOCATOR = 2
_DEVICE_TYPES = {"cpu": 1, "cuda": 2}


@lru_cache(maxsize=1)
def ffi():
    """tvm_ffi, imported without torch when torch is not loaded yet.

    Workaround: tvm_ffi/__init__.py imports torch whenever it is installed (a hack against a
    symbol conflict on Windows), costing seconds and hundreds of MB in a process that never
    uses it. Hiding torch for that one import makes tvm_ffi skip its optional torch support;
    tvmopt's PyTorch frontend turns it back on if torch is used later (frontends/torch.py).
    """
    if "tvm_ffi" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` -> ImportError
        try:
            import tvm_ffi  # noqa: F401
        finally:
            del sys.modules["torch"]
    import tvm_ffi

    _load_library("libtvm_runtime.so")
    return tvm_ffi


def _tvm_lib_dir() -> Path:
    spec = importlib.util.find_spec("tvm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("TVM is not installed (pip install apache-tvm)")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


@lru_cache(maxsize=None)
def _load_library(name: str) -> ctypes.CDLL:
    # RTLD_GLOBAL, as tvm/base.py does: libraries loaded later resolve TVM's symbols from it.
    return ctypes.CDLL(str(_tvm_lib_dir() / name), mode=ctypes.RTLD_GLOBAL)


@lru_cache(maxsize=None)
def _func(name: str):
    return ffi().get_global_func(name)


def device(kind: str = "cpu", index: int = 0):
    """A tvm_ffi Device; CUDA loads TVM's CUDA runtime library first."""
    if kind == "cuda":
        enable_cuda()
    return ffi().device(kind, index)


def is_cpu(dev) -> bool:
    """Whether `dev` (a tvm_ffi Device) is the host CPU."""
    return dev.dlpack_device_type() == _DEVICE_TYPES["cpu"]


def enable_cuda() -> None:
    """Load TVM's CUDA runtime (it links the NVIDIA driver, libcuda.so.1)."""
    ffi()
    _load_library("libtvm_runtime_cuda.so")


def gpu_problem(arch: str) -> str | None:
    """Why no NVIDIA GPU can run `arch` code here, or None."""
    try:
        enable_cuda()
        exists = _func("runtime.GetDeviceAttr")(_DEVICE_TYPES["cuda"], 0, 0)  # kExist
    except Exception as err:  # noqa: BLE001 - OSError without a driver, TVM errors otherwise
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        return f"needs an NVIDIA GPU ({arch}); TVM's CUDA runtime is unavailable: {reason}"
    if not exists:
        return f"needs an NVIDIA GPU ({arch}); none is visible to TVM's CUDA runtime here"
    return None


def load_library(path: str | os.PathLike):
    """Load an exported model library (.so); returns its runtime Module."""
    return ffi().load_module(str(path))


class VM:
    """The Relax VM over a loaded library, on one device (not thread-safe: one per thread)."""

    def __init__(self, library, dev):
        self.device = dev
        self.module = library["vm_load_executable"]()
        init = [dev.dlpack_device_type(), dev.index, POOLED_ALLOCATOR]
        if not is_cpu(dev):
            init += [_DEVICE_TYPES["cpu"], 0, POOLED_ALLOCATOR]  # shape functions run on the host
        self.module["vm_initialization"](*init)
        self._functions: dict[str, Any] = {}

    def function(self, name: str = "main"):
        if name not in self._functions:
            self._functions[name] = self.module[name]
        return self._functions[name]

    def time(self, name: str, args: Sequence, number: int = 1, repeat: int = 10,
             min_repeat_ms: int = 0) -> list[float]:
        """Seconds per call of `name(*args)`, `repeat` times: TVM's C++ time evaluator."""
        evaluator = _func("runtime.RPCTimeEvaluator")(
            self.module, name, self.device.dlpack_device_type(), self.device.index, number, repeat,
            min_repeat_ms, 100, 0, 1, 0, "",
        )
        blob = evaluator(*args)
        return list(struct.unpack("@" + "d" * repeat, blob))


# threading::ThreadGroup::kBig: the pool's own mode (all cores on x86, the big ones on big.LITTLE).
_AFFINITY_BIG = 1


class ThreadPool(threading.local):
    """The calling thread's TVM thread pool (each thread that launches kernels has its own):
    `size` as TVM started it, `count` the threads a parallel kernel runs on now."""

    def __init__(self) -> None:
        self.size = self.count = int(_func("runtime.NumThreads")())

    def use(self, count: int) -> None:
        """Run parallel kernels on `count` threads from now on (no-op if they already do).

        The workers stay started (a smaller count leaves the rest idle) and keep the affinity
        the pool gave them: about 20 us of affinity syscalls here. Capped by `size`.
        """
        if count != self.count:
            _func("runtime.config_threadpool")(_AFFINITY_BIG, int(count))
            self.count = count


@lru_cache(maxsize=1)
def thread_pool() -> ThreadPool:
    """The per-thread view of TVM's pools (each attribute read is the calling thread's)."""
    ffi()
    return ThreadPool()


def empty(shape: Sequence[int], dtype: str, dev):
    """A TVM-allocated (aligned) tensor."""
    tvm_ffi = ffi()
    return _func("runtime.TVMTensorAllocWithScope")(tvm_ffi.Shape([int(d) for d in shape]),
                                                    tvm_ffi.dtype(dtype), dev, None)


def to_device(array: np.ndarray, dev, out=None):
    """Copy a C-contiguous numpy array into a (new, or the given) TVM tensor on `dev`."""
    array = np.asarray(array, order="C")  # np.ascontiguousarray would make a 0-d array 1-d
    tensor = out if out is not None else empty(array.shape, str(array.dtype), dev)
    _func("runtime.TVMTensorCopyFromBytes")(tensor, array.ctypes.data_as(ctypes.c_void_p), array.nbytes)
    return tensor


def to_numpy(tensor) -> np.ndarray:
    """A TVM tensor as a numpy array (a copy, so the VM may reuse its buffer)."""
    if is_cpu(tensor.device):
        try:  # numpy's own copy of a DLPack view: 2 us against 14 for the generic path
            return np.from_dlpack(tensor).copy()
        except (BufferError, TypeError, RuntimeError):  # a dtype numpy's DLPack lacks (bfloat16)
            pass
    out = np.empty(tuple(int(d) for d in tensor.shape), dtype=np.dtype(str(tensor.dtype)))
    _func("runtime.TVMTensorCopyToBytes")(tensor, out.ctypes.data_as(ctypes.c_void_p), out.nbytes)
    return out


def flatten(result) -> list[np.ndarray]:
    """A VM result (a tensor or nested tuples of them) as a flat list of numpy arrays."""
    if isinstance(result, ffi().Tensor):
        return [to_numpy(result)]
    out: list[np.ndarray] = []
    for item in result:
        out.extend(flatten(item))
    return out


class StagedCall:
    """One VM function called on numpy arrays through input tensors allocated once per shape.

    A fresh TVM tensor per input and call cost more than the copy (25 of 29 us on a 1x64 input),
    and the copy goes through a numpy view of the tensor (0.5 us; TVMTensorCopyFromBytes through
    ctypes took 5). Safe to reuse: the outputs are copied out before the next call. Not
    thread-safe: one per thread, as the VM.
    """

    __slots__ = ("function", "device", "_slots")

    def __init__(self, function, dev):
        self.function = function
        self.device = dev
        self._slots: list[tuple | None] = []  # per input: (shape, dtype, tensor, numpy view or None)

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        slots = self._slots
        if len(slots) < len(arrays):
            slots.extend([None] * (len(arrays) - len(slots)))
        tensors = []
        for index, array in enumerate(arrays):
            slot = slots[index]
            if slot is None or slot[0] != array.shape or slot[1] != array.dtype:
                slot = slots[index] = self._allocate(array)
            if slot[3] is not None:
                np.copyto(slot[3], array, casting="no")
            else:
                to_device(array, self.device, out=slot[2])
            tensors.append(slot[2])
        return flatten(self.function(*tensors))

    def _allocate(self, array: np.ndarray) -> tuple:
        tensor = empty(array.shape, str(array.dtype), self.device)
        view = None
        if is_cpu(self.device):
            try:  # a dtype numpy's DLPack lacks (bfloat16) is copied through TVM instead
                view = np.from_dlpack(tensor)
                if not view.flags.writeable or view.dtype != array.dtype or view.shape != array.shape:
                    view = None
            except (BufferError, TypeError, RuntimeError, ValueError):
                view = None
        return (array.shape, array.dtype, tensor, view)

"""This machine, as tuning records and artifacts need to know it: CPU, cores, ISA flags, versions.

Pure Python (reads /proc/cpuinfo): the runtime checks an artifact's requirements with it
without importing TVM's compiler. LLVM's name for the CPU is added by the targets registry.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

# LLVM's triple per machine arch; the wheel's LLVM reports 'x86_64-conda-linux-gnu' for the
# host, which we never want in a target: spell the plain triple out.
TRIPLES = {"x86_64": "x86_64-linux-gnu", "amd64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
           "arm64": "aarch64-linux-gnu"}
# The CPU flags that change which code runs (the rest of /proc/cpuinfo's list does not).
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "asimd", "asimddp", "asimdhp", "sve", "sve2",
    "i8mm", "bf16",
)


@dataclass(frozen=True)
class Machine:
    """What identifies a machine for tuning results and artifacts (sessions and manifests carry it)."""

    arch: str
    cpu_model: str = "unknown"
    cores: int = 1
    cpu_flags: tuple[str, ...] = ()
    os: str = ""
    llvm_cpu: str = ""  # LLVM's CPU name (set by the targets registry, which has LLVM)
    tvm_version: str = ""
    tvmopt_version: str = ""

    def to_json(self) -> dict:
        return asdict(self) | {"cpu_flags": list(self.cpu_flags)}

    @staticmethod
    def from_json(obj: dict) -> "Machine":
        known = {f for f in Machine.__dataclass_fields__}
        data = {k: v for k, v in obj.items() if k in known}
        data["cpu_flags"] = tuple(data.get("cpu_flags") or ())
        data.setdefault("arch", "unknown")
        return Machine(**data)

    def describe(self) -> str:
        cpu = f"{self.cpu_model} ({self.llvm_cpu}, {self.cores} cores)" if self.llvm_cpu else \
            f"{self.cpu_model} ({self.cores} cores)"
        return f"{cpu}, TVM {self.tvm_version}" if self.tvm_version else cpu


@dataclass(frozen=True)
class Requirements:
    """What a machine needs to run code built for a target: ISA, CPU features, a GPU arch."""

    arch: str | None = None
    cpu_flags: tuple[str, ...] = ()
    gpu: str | None = None  # e.g. "sm_80"

    def to_json(self) -> dict:
        out: dict = {}
        if self.arch:
            out["arch"] = self.arch
        if self.cpu_flags:
            out["cpu_flags"] = list(self.cpu_flags)
        if self.gpu:
            out["gpu"] = self.gpu
        return out

    @staticmethod
    def from_json(obj: dict | None) -> "Requirements":
        obj = obj or {}
        return Requirements(obj.get("arch"), tuple(obj.get("cpu_flags") or ()), obj.get("gpu"))

    def problem_on(self, machine: Machine) -> str | None:
        """Why `machine` cannot run code built with these requirements, or None."""
        if self.arch and TRIPLES.get(self.arch, self.arch) != TRIPLES.get(machine.arch, machine.arch):
            return f"built for {self.arch}, this machine is {machine.arch}"
        missing = [f for f in self.cpu_flags if f not in machine.cpu_flags]
        if missing:
            return f"needs CPU features {', '.join(missing)} that this CPU ({machine.cpu_model}) lacks"
        if self.gpu:
            from .runtime import tvm_runtime

            return tvm_runtime.gpu_problem(self.gpu)
        return None

    def runs_on(self, other: "Requirements") -> bool:
        """True when every machine meeting `other` also meets these (same arch, a subset of flags)."""
        if self.gpu or other.gpu or not self.arch or not other.arch:
            return False
        return self.problem_on(Machine(arch=other.arch, cpu_flags=other.cpu_flags)) is None


@lru_cache(maxsize=1)
def this_machine() -> Machine:
    """This machine (without LLVM's CPU name: see targets.host_machine)."""
    from . import __version__

    arch = platform.machine().lower()
    model, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "CPU part") and model == "unknown":
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    return Machine(
        arch=arch,
        cpu_model=model,
        cores=len(os.sched_getaffinity(0)),
        cpu_flags=tuple(sorted(f for f in flags if f in INTERESTING_FLAGS)),
        os=platform.platform(),
        tvm_version=_tvm_version(),
        tvmopt_version=__version__,
    )


def _tvm_version() -> str:
    """TVM's version without importing TVM (its package metadata)."""
    from importlib import metadata

    try:
        return metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source build of TVM
        import tvm

        return tvm.__version__


def with_llvm_cpu(machine: Machine, llvm_cpu: str) -> Machine:
    return replace(machine, llvm_cpu=llvm_cpu)


__all__ = ["Machine", "Requirements", "this_machine", "with_llvm_cpu", "TRIPLES", "INTERESTING_FLAGS"]

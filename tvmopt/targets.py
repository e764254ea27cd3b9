"""Targets registry: targets/*.json name a TVM target dict; 'host' is resolved from this machine.

Like TVM's target tags, a target is data a user can copy and edit. Each file holds:
name, description, device ("cpu" | "cuda"), target (TVM target dict, or "auto" for host),
host (host-side target dict for GPU targets), cross_compiler (for export), and requires
(arch, cpu_flags, gpu) that a machine must meet to run the artifact.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import tvm

from . import __version__
from ._tvm import TVM_VERSION, host_cpu_name
from .errors import TargetError

PACKAGE_TARGETS = Path(__file__).resolve().parent.parent / "targets"
REQUIRED_KEYS = ("name", "description", "device", "target")
DEVICES = ("cpu", "cuda")
# LLVM's triple per machine arch; the wheel's LLVM reports 'x86_64-conda-linux-gnu' for the
# host, which we never want in a target: spell the plain triple out.
_TRIPLES = {"x86_64": "x86_64-linux-gnu", "amd64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "arm64": "aarch64-linux-gnu"}
_INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
)


@dataclass(frozen=True)
class TargetSpec:
    """One registry entry, with `target` resolved to a concrete TVM target dict."""

    name: str
    description: str
    device: str
    target: dict
    host: dict | None = None
    cross_compiler: str | None = None
    requires: dict = field(default_factory=dict)
    source: str = ""
    log_name: str = ""  # directory name under tuning_logs/ (host: host-<cpu>-<cores>c)

    def tvm_target(self) -> tvm.target.Target:
        try:
            if self.host:
                return tvm.target.Target(self.target, host=self.host)
            return tvm.target.Target(self.target)
        except Exception as err:  # noqa: BLE001 - TVM raises several kinds
            raise TargetError(f"target '{self.name}' ({self.source}): TVM rejects it: {_first_line(err)}") from err

    def tuning_target(self, cores: int) -> tvm.target.Target:
        """The TVM Target to tune with: MetaSchedule's CPU rules need `num-cores` (how many threads
        to parallelise for), which a portable target leaves to the machine that measures."""
        if self.device != "cpu" or "num-cores" in self.target:
            return self.tvm_target()
        return replace(self, target={**self.target, "num-cores": cores}).tvm_target()

    @property
    def is_local_cpu(self) -> bool:
        """True when artifacts for this target run on this machine."""
        return compatibility_problem(self.requires, host_fingerprint()) is None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "device": self.device,
            "target": self.target,
            "host": self.host,
            "cross_compiler": self.cross_compiler,
            "requires": self.requires,
        }


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def registry_dirs() -> list[Path]:
    """Where target files are looked up, first match wins: $TVMOPT_TARGETS_PATH, ./targets, bundled."""
    dirs = [Path(p) for p in os.environ.get("TVMOPT_TARGETS_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", PACKAGE_TARGETS]
    seen, out = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            out.append(d)
    return out


def load_target_file(path: str | Path) -> TargetSpec:
    """Read and validate one target JSON file; errors name the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise TargetError(f"{path}: no such target file") from err
    except json.JSONDecodeError as err:
        raise TargetError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict):
        raise TargetError(f"{path}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise TargetError(f"{path}: missing key(s) {', '.join(missing)}")
    if data["device"] not in DEVICES:
        raise TargetError(f"{path}: device must be one of {', '.join(DEVICES)}, got {data['device']!r}")
    target = data["target"]
    if target == "auto":
        return _resolve_host(data, path)
    if not isinstance(target, dict) or "kind" not in target:
        raise TargetError(f"{path}: 'target' must be a TVM target dict with a 'kind' (or \"auto\")")
    spec = TargetSpec(
        name=str(data["name"]),
        description=str(data["description"]),
        device=data["device"],
        target=dict(target),
        host=data.get("host"),
        cross_compiler=data.get("cross_compiler"),
        requires=dict(data.get("requires") or {}),
        source=str(path),
        log_name=str(data["name"]),
    )
    spec.tvm_target()  # validate now, with the file name in the error
    return spec


def _resolve_host(data: dict, path: Path) -> TargetSpec:
    fp = host_fingerprint()
    triple = _TRIPLES.get(fp["arch"])
    if triple is None:
        raise TargetError(f"{path}: cannot resolve host: unsupported machine architecture {fp['arch']!r}")
    cpu = fp["llvm_cpu"]
    target = {"kind": "llvm", "mtriple": triple, "mcpu": cpu, "num-cores": fp["cores"]}
    return TargetSpec(
        name=str(data["name"]),
        description=str(data["description"]),
        device="cpu",
        target=target,
        requires={"arch": fp["arch"], "cpu_flags": [f for f in fp["cpu_flags"] if f in _INTERESTING_FLAGS]},
        source=str(path),
        log_name=f"host-{cpu}-{fp['cores']}c",
    )


def list_targets() -> list[TargetSpec]:
    """Every target in the registry, by name (first directory wins on duplicates)."""
    found: dict[str, TargetSpec] = {}
    for d in registry_dirs():
        for path in sorted(d.glob("*.json")):
            spec = load_target_file(path)
            found.setdefault(spec.name, spec)
    return sorted(found.values(), key=lambda s: s.name)


def get_target(name_or_path: str) -> TargetSpec:
    """A target by registry name, or by path to a target JSON file."""
    if name_or_path.endswith(".json") or os.sep in name_or_path:
        return load_target_file(name_or_path)
    for d in registry_dirs():
        path = d / f"{name_or_path}.json"
        if path.is_file():
            return load_target_file(path)
    names = sorted({p.stem for d in registry_dirs() for p in d.glob("*.json")})
    raise TargetError(f"unknown target '{name_or_path}'; known targets: {', '.join(names)} (or a path to a .json file)")


@lru_cache(maxsize=1)
def host_fingerprint() -> dict:
    """What identifies this machine for tuning results: CPU, cores, ISA flags, versions."""
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
    return {
        "arch": arch,
        "cpu_model": model,
        "llvm_cpu": host_cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "cpu_flags": sorted(f for f in flags if f in _INTERESTING_FLAGS),
        "os": platform.platform(),
        "tvm_version": TVM_VERSION,
        "tvmopt_version": __version__,
    }


def compatibility_problem(requires: dict, fingerprint: dict) -> str | None:
    """Why a machine with `fingerprint` cannot run code built with `requires`, or None."""
    arch = requires.get("arch")
    if arch and _TRIPLES.get(arch, arch) != _TRIPLES.get(fingerprint["arch"], fingerprint["arch"]):
        return f"built for {arch}, this machine is {fingerprint['arch']}"
    missing = [f for f in requires.get("cpu_flags", []) if f not in fingerprint["cpu_flags"]]
    if missing:
        cpu = fingerprint.get("cpu_model", "the target")
        return f"needs CPU features {', '.join(missing)} that this CPU ({cpu}) lacks"
    if requires.get("gpu"):
        return _gpu_problem(requires["gpu"])
    return None


def _gpu_problem(arch: str) -> str | None:
    try:
        dev = tvm.runtime.cuda(0)
        if not dev.exist:
            return f"needs an NVIDIA GPU ({arch}); none is visible to TVM's CUDA runtime here"
    except Exception as err:  # noqa: BLE001
        return f"needs an NVIDIA GPU ({arch}); TVM's CUDA runtime is unavailable: {_first_line(err)}"
    return None

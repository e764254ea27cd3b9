"""Targets registry: targets/*.json name a TVM target dict; 'host' is resolved from this machine.

Like TVM's target tags, a target is data a user can copy and edit. Each file holds:
name, description, device ("cpu" | "cuda"), target (TVM target dict, or "auto" for host),
host (host-side target dict for GPU targets), cross_compiler (for export), requires
(arch, cpu_flags, gpu) that a machine must meet to run the artifact, and optionally supports
(int8_dot, bf16, fp16: what the hardware computes natively; derived from `requires` when absent).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TargetError, last_line
from .machine import INTERESTING_FLAGS, TRIPLES, Machine, Requirements, this_machine, with_llvm_cpu
from .resources import bundled_targets_dir

if TYPE_CHECKING:
    import tvm

REQUIRED_KEYS = ("name", "description", "device", "target")
DEVICES = ("cpu", "cuda")
# Int8 dot-product instruction families: vnni (x86 vpdpbusd), dotprod (Arm sdot/udot), dp4a
# (CUDA), all exact; pmaddubsw (x86 AVX2 / AVX-512BW), whose int16 pair sums saturate.
INT8_DOTS = ("vnni", "dotprod", "dp4a", "pmaddubsw")


@dataclass(frozen=True)
class Capabilities:
    """What a target's hardware computes natively: quantize picks a scheme from it, compile warns."""

    int8_dot: str | None = None  # one of INT8_DOTS, or None (int8 runs as widened integer code)
    bf16: bool = False  # bfloat16 arithmetic (x86 avx512_bf16, Arm bf16, CUDA sm_80+)
    fp16: bool = False  # float16 arithmetic (CUDA, Arm FP16; x86 CPUs without avx512_fp16 emulate it)

    @property
    def int8_exact(self) -> bool:
        """True when int8 x int8 products of any value accumulate exactly (no int16 saturation)."""
        return self.int8_dot in ("vnni", "dotprod", "dp4a")

    def describe(self) -> str:
        parts = [f"int8 dot product: {self.int8_dot or 'none'}"
                 + (" (saturates: 7-bit weights)" if self.int8_dot == "pmaddubsw" else "")]
        parts.append(f"bf16: {'yes' if self.bf16 else 'no'}")
        parts.append(f"fp16: {'yes' if self.fp16 else 'no'}")
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {"int8_dot": self.int8_dot, "bf16": self.bf16, "fp16": self.fp16}

    @staticmethod
    def from_json(obj: dict, where: str) -> "Capabilities":
        if not isinstance(obj, dict):
            raise TargetError(f"{where}: 'supports' must be an object with int8_dot, bf16, fp16")
        unknown = sorted(set(obj) - {"int8_dot", "bf16", "fp16"})
        if unknown:
            raise TargetError(f"{where}: 'supports' has unknown key(s) {', '.join(unknown)} "
                              "(known: int8_dot, bf16, fp16)")
        dot = obj.get("int8_dot")
        if dot is not None and dot not in INT8_DOTS:
            raise TargetError(f"{where}: supports.int8_dot must be one of {', '.join(INT8_DOTS)} or null, got {dot!r}")
        for key in ("bf16", "fp16"):
            if not isinstance(obj.get(key, False), bool):
                raise TargetError(f"{where}: supports.{key} must be true or false, got {obj[key]!r}")
        return Capabilities(dot, bool(obj.get("bf16", False)), bool(obj.get("fp16", False)))

    @staticmethod
    def derive(requires: Requirements) -> "Capabilities":
        """What a machine meeting `requires` can do (for target files without `supports`)."""
        flags = set(requires.cpu_flags)
        if requires.gpu:
            sm = int("".join(ch for ch in requires.gpu if ch.isdigit()) or 0)
            return Capabilities("dp4a" if sm >= 61 else None, sm >= 80, sm >= 53)
        if "avx512_vnni" in flags:  # AVX-VNNI alone (256-bit) has no VNNI kernel in tvmopt: AVX2's applies
            dot = "vnni"
        elif "asimddp" in flags:
            dot = "dotprod"
        elif "avx2" in flags or "avx512bw" in flags:
            dot = "pmaddubsw"
        else:
            dot = None
        bf16 = "avx512_bf16" in flags or ("bf16" in flags and requires.arch == "aarch64")
        fp16 = "avx512_fp16" in flags or "asimdhp" in flags
        return Capabilities(dot, bf16, fp16)


@dataclass(frozen=True)
class TargetSpec:
    """One registry entry, with `target` resolved to a concrete TVM target dict."""

    name: str
    description: str
    device: str
    target: dict
    host: dict | None = None
    cross_compiler: str | None = None
    requires: Requirements = field(default_factory=Requirements)
    source: str = ""
    log_name: str = ""  # directory name under tuning_logs/ (host: host-<cpu>-<cores>c)
    supports: Capabilities = field(default_factory=Capabilities)

    def tvm_target(self) -> "tvm.target.Target":
        import tvm

        try:
            if self.host:
                return tvm.target.Target(self.target, host=self.host)
            return tvm.target.Target(self.target)
        except Exception as err:  # noqa: BLE001 - TVM raises several kinds
            raise TargetError(f"target '{self.name}' ({self.source}): TVM rejects it: {last_line(err)}") from err

    def tuning_target(self, cores: int) -> "tvm.target.Target":
        """The TVM Target to tune with: MetaSchedule's CPU rules need `num-cores` (how many threads
        to parallelise for), which a portable target leaves to the machine that measures."""
        if self.device != "cpu" or "num-cores" in self.target:
            return self.tvm_target()
        return replace(self, target={**self.target, "num-cores": cores}).tvm_target()

    @property
    def is_local_cpu(self) -> bool:
        """True when artifacts for this target run on this machine."""
        return self.device == "cpu" and self.requires.problem_on(host_machine()) is None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "device": self.device,
            "target": self.target,
            "host": self.host,
            "cross_compiler": self.cross_compiler,
            "requires": self.requires.to_json(),
            "supports": self.supports.to_json(),
        }


def registry_dirs() -> list[Path]:
    """Where target files are looked up, first match wins: $TVMOPT_TARGETS_PATH, ./targets, bundled."""
    dirs = [Path(p) for p in os.environ.get("TVMOPT_TARGETS_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", bundled_targets_dir()]
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
    requires = Requirements.from_json(data.get("requires"))
    supports = data.get("supports")
    spec = TargetSpec(
        name=str(data["name"]),
        description=str(data["description"]),
        device=data["device"],
        target=dict(target),
        host=data.get("host"),
        cross_compiler=data.get("cross_compiler"),
        requires=requires,
        source=str(path),
        log_name=str(data["name"]),
        supports=Capabilities.derive(requires) if supports is None else Capabilities.from_json(supports, str(path)),
    )
    spec.tvm_target()  # validate now, with the file name in the error
    for label, part in (("target", spec.target), ("host", spec.host)):
        _check_llvm_cpu(path, label, part)
    return spec


def _check_llvm_cpu(path: Path, label: str, target: dict | None) -> None:
    """Refuse an `mcpu` LLVM does not know for the triple.

    Workaround: TVM accepts any mcpu string; LLVM then warns once at build time ("is not a
    recognized processor") and generates code for a generic CPU, so a typo silently loses
    every ISA feature the target was meant to have.
    """
    if not isinstance(target, dict) or target.get("kind") != "llvm" or not target.get("mcpu"):
        return
    from tvm.target import codegen

    cpu = str(target["mcpu"])
    triple = str(target.get("mtriple") or codegen.llvm_get_system_triple())
    if codegen.llvm_is_valid_cpu(cpu, triple):
        return
    import difflib

    import tvm

    try:
        known = list(codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": triple})))
    except Exception:  # noqa: BLE001 - a triple this LLVM has no backend for
        known = []
    close = difflib.get_close_matches(cpu, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else (f"; it knows e.g. {', '.join(known[:5])}" if known else "")
    raise TargetError(f"{path}: {label} mcpu '{cpu}' is not a CPU LLVM knows for mtriple {triple} (LLVM would build "
                      f"for a generic CPU){hint}")


def _resolve_host(data: dict, path: Path) -> TargetSpec:
    machine = host_machine()
    triple = TRIPLES.get(machine.arch)
    if triple is None:
        raise TargetError(f"{path}: cannot resolve host: unsupported machine architecture {machine.arch!r}")
    cpu = machine.llvm_cpu
    target = {"kind": "llvm", "mtriple": triple, "mcpu": cpu, "num-cores": machine.cores}
    requires = Requirements(machine.arch, tuple(f for f in machine.cpu_flags if f in INTERESTING_FLAGS))
    return TargetSpec(
        name=str(data["name"]),
        description=str(data["description"]),
        device="cpu",
        target=target,
        requires=requires,
        source=str(path),
        log_name=f"host-{cpu}-{machine.cores}c",
        supports=Capabilities.derive(requires),
    )


def list_targets() -> list[TargetSpec]:
    """Every target in the registry, by name (first directory wins on duplicates)."""
    found: dict[str, TargetSpec] = {}
    for d in registry_dirs():
        for path in sorted(d.glob("*.json")):
            spec = load_target_file(path)
            found.setdefault(spec.name, spec)
    return sorted(found.values(), key=lambda s: s.name)


def get_target(name_or_path: "str | TargetSpec") -> TargetSpec:
    """A target by registry name, or by path to a target JSON file (a TargetSpec passes through)."""
    if isinstance(name_or_path, TargetSpec):
        return name_or_path
    if name_or_path.endswith(".json") or os.sep in name_or_path:
        return load_target_file(name_or_path)
    for d in registry_dirs():
        path = d / f"{name_or_path}.json"
        if path.is_file():
            return load_target_file(path)
    names = sorted({p.stem for d in registry_dirs() for p in d.glob("*.json")})
    known = ", ".join(names) or f"(none: no targets/*.json found in {', '.join(map(str, registry_dirs())) or '-'})"
    raise TargetError(f"unknown target '{name_or_path}'; known targets: {known} (or a path to a .json file)")


@lru_cache(maxsize=1)
def host_machine() -> Machine:
    """This machine with LLVM's name for its CPU (e.g. 'znver4').

    Workaround: the wheel's LLVM refuses mcpu=native (falls back to 'generic', losing AVX),
    so the host target asks LLVM for the concrete CPU name instead.
    """
    import tvm

    return with_llvm_cpu(this_machine(), str(tvm.target.codegen.llvm_get_system_cpu()))

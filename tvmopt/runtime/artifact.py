"""Artifact: a directory with the compiled library and `manifest.json`, the record that describes it.

The manifest says everything a loader must check and a user wants to know: inputs/outputs,
target and what it requires of a machine, TVM version, source model hash, which tuning records
were applied, the library's hash. The compiler writes it (compiler/package.py), the runtime
reads it here; neither guesses anything from file names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import sha256_file
from ..errors import ArtifactError
from ..machine import Machine, Requirements
from ..specs import BatchBuckets, TensorSpec

MANIFEST = "manifest.json"
LIBRARY = "model.so"
FORMAT = "tvmopt-artifact/1"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # file path, or "torch.nn.Module <ClassName>"
    format: str  # onnx | torch | pt2
    sha256: str

    def to_json(self) -> dict:
        return {"name": self.name, "source": self.source, "format": self.format, "sha256": self.sha256}

    @staticmethod
    def from_json(obj: dict) -> "ModelInfo":
        return ModelInfo(str(obj["name"]), str(obj.get("source", "")), str(obj.get("format", "")),
                         str(obj.get("sha256", "")))


@dataclass(frozen=True)
class TargetInfo:
    """The target an artifact was built for, and what a machine needs to run it."""

    name: str
    log_name: str
    device: str  # cpu | cuda
    target: dict
    host: dict | None = None
    requires: Requirements = field(default_factory=Requirements)

    @property
    def device_type(self) -> str:
        return "cuda" if self.device == "cuda" else "cpu"

    def to_json(self) -> dict:
        return {"name": self.name, "log_name": self.log_name, "device": self.device, "target": self.target,
                "host": self.host, "requires": self.requires.to_json()}

    @staticmethod
    def from_json(obj: dict) -> "TargetInfo":
        return TargetInfo(str(obj["name"]), str(obj.get("log_name", obj["name"])), str(obj.get("device", "cpu")),
                          dict(obj.get("target") or {}), obj.get("host"), Requirements.from_json(obj.get("requires")))


@dataclass(frozen=True)
class AppliedRecord:
    """A kernel that got a tuning record, how fast that record ran, and which log it came from."""

    task: str
    best_us: float
    log: str

    def to_json(self) -> dict:
        return {"task": self.task, "best_us": self.best_us, "log": self.log}

    @staticmethod
    def from_json(obj: dict) -> "AppliedRecord":
        return AppliedRecord(str(obj["task"]), float(obj["best_us"]), str(obj.get("log", "")))


@dataclass(frozen=True)
class TuningInfo:
    log_dir: str | None = None
    tasks_total: int = 0
    tasks_tuned: int = 0
    records_applied: tuple[AppliedRecord, ...] = ()
    reference_logs: tuple[str, ...] = ()  # other compatible targets' logs that supplied records
    prepacked: tuple[str, ...] = ()  # kernels whose weights were re-laid-out (packed) at compile time
    # int8 GEMM kernels without a record, given a sampled (untuned) tensorized schedule
    int8_sampled: tuple[str, ...] = ()
    # kernels without a record, scheduled by a tuned kernel's trace: (kernel, tuned kernel)
    schedules_borrowed: tuple[tuple[str, str], ...] = ()
    # reduction kernels without a record nor a borrowed schedule: a sample of the design space
    schedules_sampled: tuple[str, ...] = ()

    @property
    def untuned(self) -> int:
        return self.tasks_total - self.tasks_tuned

    def borrowed(self) -> int:
        """Kernels whose record came from a reference log."""
        return sum(1 for r in self.records_applied if r.log in self.reference_logs)

    def to_json(self) -> dict:
        return {"log_dir": self.log_dir, "tasks_total": self.tasks_total, "tasks_tuned": self.tasks_tuned,
                "records_applied": [r.to_json() for r in self.records_applied],
                "reference_logs": list(self.reference_logs), "prepacked": list(self.prepacked),
                "int8_sampled": list(self.int8_sampled), "schedules_borrowed": [list(b) for b in self.schedules_borrowed],
                "schedules_sampled": list(self.schedules_sampled)}

    @staticmethod
    def from_json(obj: dict | None) -> "TuningInfo":
        obj = obj or {}
        return TuningInfo(obj.get("log_dir"), int(obj.get("tasks_total", 0)), int(obj.get("tasks_tuned", 0)),
                          tuple(AppliedRecord.from_json(r) for r in obj.get("records_applied") or ()),
                          tuple(obj.get("reference_logs") or ()), tuple(obj.get("prepacked") or ()),
                          tuple(obj.get("int8_sampled") or ()),
                          tuple((str(k), str(src)) for k, src in obj.get("schedules_borrowed") or ()),
                          tuple(obj.get("schedules_sampled") or ()))


@dataclass(frozen=True)
class LibraryInfo:
    file: str
    sha256: str

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256}

    @staticmethod
    def from_json(obj: dict) -> "LibraryInfo":
        return LibraryInfo(str(obj["file"]), str(obj.get("sha256", "")))


@dataclass(frozen=True)
class DeviceCode:
    """GPU code compiled into the library at build time (fatbin for `arch`)."""

    format: str
    arch: str

    def to_json(self) -> dict:
        return {"format": self.format, "arch": self.arch}

    @staticmethod
    def from_json(obj: dict | None) -> "DeviceCode | None":
        return DeviceCode(str(obj["format"]), str(obj["arch"])) if obj else None


@dataclass(frozen=True)
class Manifest:
    """manifest.json of an artifact (format tvmopt-artifact/1)."""

    model: ModelInfo
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    target: TargetInfo
    tvm_version: str
    tvmopt_version: str
    built_on: Machine
    created: str
    tuning: TuningInfo = field(default_factory=TuningInfo)
    build_s: float | None = None
    library: LibraryInfo | None = None
    device_code: DeviceCode | None = None
    # The compiler's GraphOptions, as written (read by the compiler's GraphOptions.from_json;
    # the runtime needs none of them). None in manifests from before they existed.
    optimizations: dict | None = None
    batch_buckets: BatchBuckets | None = None  # `compile --batch-sizes`; absent in older manifests

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "format": FORMAT,
            "model": self.model.to_json(),
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "target": self.target.to_json(),
            "tvm_version": self.tvm_version,
            "tvmopt_version": self.tvmopt_version,
            "built_on": self.built_on.to_json(),
            "created": self.created,
            "build_s": self.build_s,
            "tuning": self.tuning.to_json(),
            "library": self.library.to_json() if self.library else None,
        }
        if self.device_code is not None:
            out["device_code"] = self.device_code.to_json()
        if self.optimizations is not None:
            out["optimizations"] = dict(self.optimizations)
        if self.batch_buckets is not None:
            out["batch_buckets"] = self.batch_buckets.to_json()
        return out

    @staticmethod
    def from_json(obj: Any, where: str = MANIFEST) -> "Manifest":
        """Parse and validate; errors name the manifest and the field that is wrong."""
        if not isinstance(obj, dict):
            raise ArtifactError(f"{where}: corrupt manifest (expected a JSON object)")
        missing = [k for k in ("format", "model", "inputs", "outputs", "target", "tvm_version", "library")
                   if k not in obj]
        if missing:
            raise ArtifactError(f"{where}: manifest lacks {', '.join(missing)}")
        if obj["format"] != FORMAT:
            raise ArtifactError(f"{where}: format {obj['format']!r}, this tvmopt reads {FORMAT!r}")
        try:
            return Manifest(
                model=ModelInfo.from_json(obj["model"]),
                inputs=tuple(TensorSpec.from_json(x) for x in obj["inputs"]),
                outputs=tuple(TensorSpec.from_json(x) for x in obj["outputs"]),
                target=TargetInfo.from_json(obj["target"]),
                tvm_version=str(obj["tvm_version"]),
                tvmopt_version=str(obj.get("tvmopt_version", "")),
                built_on=Machine.from_json(obj.get("built_on") or {}),
                created=str(obj.get("created", "")),
                tuning=TuningInfo.from_json(obj.get("tuning")),
                build_s=obj.get("build_s"),
                library=LibraryInfo.from_json(obj["library"]) if obj["library"] else None,
                device_code=DeviceCode.from_json(obj.get("device_code")),
                optimizations=dict(obj["optimizations"]) if obj.get("optimizations") else None,
                batch_buckets=BatchBuckets.from_json(obj.get("batch_buckets")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtifactError(f"{where}: malformed manifest ({type(err).__name__}: {err})") from err


@dataclass(frozen=True)
class Artifact:
    """An artifact directory and its manifest."""

    path: Path
    manifest: Manifest

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.manifest.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.manifest.outputs

    @property
    def library_path(self) -> Path:
        assert self.manifest.library is not None
        return self.path / self.manifest.library.file

    @property
    def target_name(self) -> str:
        return self.manifest.target.name


def read_artifact(path: str | Path) -> Artifact:
    """Open and validate an artifact directory (or its manifest.json); errors say what is wrong."""
    path = Path(path)
    if path.name == MANIFEST:
        path = path.parent
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact")
    if not path.is_dir():
        raise ArtifactError(f"{path}: not an artifact directory (expected a directory with {MANIFEST})")
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise ArtifactError(f"{path}: no {MANIFEST}; not a tvmopt artifact (build one with `tvmopt compile`)")
    try:
        obj = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{manifest_path}: corrupt manifest ({err.msg} at line {err.lineno})") from err
    except OSError as err:
        raise ArtifactError(f"{manifest_path}: cannot read it ({err.strerror})") from err
    manifest = Manifest.from_json(obj, str(manifest_path))
    if manifest.library is None:
        raise ArtifactError(f"{manifest_path}: the manifest names no library")
    artifact = Artifact(path, manifest)
    lib = artifact.library_path
    if not lib.is_file():
        raise ArtifactError(f"{path}: library {lib.name} is missing")
    if sha256_file(lib) != manifest.library.sha256:
        raise ArtifactError(f"{lib}: sha256 does not match the manifest; the library is corrupt or was replaced")
    return artifact

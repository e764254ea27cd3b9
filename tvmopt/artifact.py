"""Artifact: one directory holding the compiled library and a manifest that describes it.

The manifest says everything a loader must check and a user wants to know: inputs/outputs,
target, TVM version, source model hash, which tuning records were applied, library hash.
Saving is atomic (temp dir + rename): a failed or killed compile never leaves half an artifact.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ArtifactError
from .model import TensorSpec, sha256_file

MANIFEST = "manifest.json"
LIBRARY = "model.so"
FORMAT = "tvmopt-artifact/1"
REQUIRED = ("format", "model", "inputs", "outputs", "target", "tvm_version", "library")


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec.from_json(x) for x in self.manifest["inputs"])

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec.from_json(x) for x in self.manifest["outputs"])

    @property
    def library_path(self) -> Path:
        return self.path / self.manifest["library"]["file"]

    @property
    def target_name(self) -> str:
        return self.manifest["target"]["name"]


def save_artifact(output: str | Path, manifest: dict, write_library) -> Artifact:
    """Create `output` atomically: `write_library(path)` writes the library into a temp dir."""
    output = Path(output)
    if output.exists() and not (output / MANIFEST).exists() and (not output.is_dir() or any(output.iterdir())):
        raise ArtifactError(f"{output}: exists and is not a tvmopt artifact; refusing to overwrite it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        write_library(str(staging / LIBRARY))
        manifest = dict(manifest, format=FORMAT, library={"file": LIBRARY, "sha256": sha256_file(staging / LIBRARY)})
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        old = None
        if output.exists():
            old = output.with_name(f".{output.name}.old-{staging.name[-8:]}")
            output.rename(old)
        staging.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Artifact(output, manifest)


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
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{manifest_path}: corrupt manifest ({err.msg} at line {err.lineno})") from err
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path}: corrupt manifest (expected a JSON object)")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ArtifactError(f"{manifest_path}: manifest lacks {', '.join(missing)}")
    if manifest["format"] != FORMAT:
        raise ArtifactError(f"{manifest_path}: format {manifest['format']!r}, this tvmopt reads {FORMAT!r}")
    artifact = Artifact(path, manifest)
    try:
        artifact.inputs, artifact.outputs  # noqa: B018 - validates the specs
    except (KeyError, TypeError) as err:
        raise ArtifactError(f"{manifest_path}: malformed inputs/outputs ({err})") from err
    lib = artifact.library_path
    if not lib.is_file():
        raise ArtifactError(f"{path}: library {lib.name} is missing")
    if sha256_file(lib) != manifest["library"].get("sha256"):
        raise ArtifactError(f"{lib}: sha256 does not match the manifest; the library is corrupt or was replaced")
    return artifact

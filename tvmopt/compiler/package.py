"""Write an artifact directory (library + manifest.json) atomically: a failed or killed compile
never leaves half an artifact, and an existing artifact is replaced in one rename."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .._files import sha256_file
from ..errors import ArtifactError
from ..runtime.artifact import LIBRARY, MANIFEST, Artifact, LibraryInfo, Manifest


def write_artifact(output: str | Path, manifest: Manifest, write_library: Callable[[str], Manifest | None]) -> Artifact:
    """Create `output`: `write_library(path)` writes the library into a staging directory (and may
    return an updated manifest); the manifest gets the library's hash; then one rename publishes it."""
    output = Path(output)
    if output.exists() and not (output / MANIFEST).exists() and (not output.is_dir() or any(output.iterdir())):
        raise ArtifactError(f"{output}: exists and is not a tvmopt artifact; refusing to overwrite it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        manifest = write_library(str(staging / LIBRARY)) or manifest
        manifest = replace(manifest, library=LibraryInfo(LIBRARY, sha256_file(staging / LIBRARY)))
        (staging / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
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

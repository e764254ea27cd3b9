"""Write an artifact directory (library + manifest.json) atomically: a failed or killed compile
never leaves half an artifact, and an existing artifact is replaced in one atomic exchange, so
a loader always finds a whole artifact at the path (the old one or the new one).

Concurrent compiles to one path build side by side; publishing takes a lock on the parent
directory, and the last to publish wins. Directories get the modes `cp -r` would give (the
umask's), so a service running as another user can load the artifact.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .._files import ScratchDir, current_umask, dir_lock, exchange_dirs, make_dirs, sha256_file
from ..errors import ArtifactError, path_error
from ..runtime.artifact import LIBRARY, MANIFEST, Artifact, LibraryInfo, Manifest


def write_artifact(output: str | Path, manifest: Manifest, write_library: Callable[[str], Manifest | None]) -> Artifact:
    """Create `output`: `write_library(path)` writes the library into a staging directory (and may
    return an updated manifest); the manifest gets the library's hash; then the staging directory
    takes `output`'s place."""
    output = Path(output)
    _check_replaceable(output)
    make_dirs(output.parent, ArtifactError, "choose another -o")
    try:
        staging = ScratchDir(f".{output.name}.tmp-", output.parent)
    except OSError as err:
        raise path_error(err, "write an artifact there", output.parent, ArtifactError) from err
    published = False
    try:
        # mkdtemp makes 0700: a service running as another user could not even list it.
        os.chmod(staging.path, 0o777 & ~current_umask())
        manifest = write_library(str(staging.path / LIBRARY)) or manifest
        manifest = replace(manifest, library=LibraryInfo(LIBRARY, sha256_file(staging.path / LIBRARY)))
        (staging.path / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        with dir_lock(output.parent):
            _check_replaceable(output)  # again: another process may have put something there
            if output.exists():
                exchange_dirs(staging.path, output)  # staging now holds the replaced artifact
            else:
                os.rename(staging.path, output)
                published = True
    except OSError as err:
        raise path_error(err, "write the artifact", output, ArtifactError) from err
    finally:
        staging.release(remove=not published)
    return Artifact(output, manifest)


def check_output(output: str | Path) -> None:
    """Fail before a build of minutes when `output` cannot become an artifact (a file in the way,
    a directory that is not an artifact); write_artifact checks again when it writes."""
    output = Path(output)
    _check_replaceable(output)
    parent = make_dirs(output.parent, ArtifactError, "choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(parent))
        raise path_error(denied, "write an artifact there", parent, ArtifactError)


def _check_replaceable(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ArtifactError(f"{output}: exists and is not a directory; refusing to overwrite it")
    if output.is_dir() and not (output / MANIFEST).exists() and any(output.iterdir()):
        raise ArtifactError(f"{output}: exists and is not a tvmopt artifact; refusing to overwrite it")

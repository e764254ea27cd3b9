"""Run aarch64 artifacts on an x86 machine under QEMU user emulation, for correctness only.

The aarch64 root file system (Debian minbase + TVM's runtime wheels) is prepared once by
aarch64_env.sh (shipped beside this module; `make aarch64-env`) and cached. Inside it, the
artifact runs through tvmopt's own runtime (this package, put on the emulated Python's path).
Emulated timings say nothing about ARM speed and are never reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import EmulationError
from ..resources import PACKAGE_DIR, package_file
from .artifact import Artifact

SETUP_SCRIPT = package_file("runtime", "aarch64_env.sh")
RUNNER = package_file("runtime", "_emulated_runner.py")


def aarch64_root() -> Path:
    """Path of the prepared aarch64 root file system (prepares it on first use, ~1 minute)."""
    proc = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable)))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EmulationError(f"preparing the aarch64 environment failed: {tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


def run_emulated(artifact: Artifact, arrays: list[np.ndarray], timeout_s: float = 600) -> list[np.ndarray]:
    """Run `artifact` (built for aarch64) on `arrays` under qemu-aarch64; returns its outputs."""
    root = aarch64_root()
    with tempfile.TemporaryDirectory(prefix="tvmopt-emu-") as tmp:
        # Only tvmopt goes on the emulated path: the x86 site-packages around it must not.
        (Path(tmp) / "pkg").mkdir()
        (Path(tmp) / "pkg" / "tvmopt").symlink_to(PACKAGE_DIR, target_is_directory=True)
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, *arrays)
        python_path = os.pathsep.join([str(root / "opt" / "tvmpy"), str(Path(tmp) / "pkg")])
        env = dict(os.environ, PYTHONPATH=python_path, QEMU_LD_PREFIX=str(root))
        start = time.monotonic()
        try:
            proc = subprocess.run(
                ["qemu-aarch64-static", "-L", str(root), str(root / "usr" / "bin" / "python3"), str(RUNNER),
                 str(artifact.path), str(inputs), str(outputs)],
                capture_output=True, text=True, env=env, timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as err:
            raise EmulationError(f"{artifact.path}: still running under emulation after {timeout_s:.0f} s") from err
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EmulationError(f"{artifact.path}: failed under aarch64 emulation: {tail}")
        with np.load(outputs) as data:
            result = [data[f"arr_{i}"] for i in range(len(data.files))]
        run_emulated.last_wall_s = time.monotonic() - start  # type: ignore[attr-defined]  # set-up cost reports
        return result

"""Run aarch64 artifacts on an x86 machine under QEMU user emulation, for correctness only.

The aarch64 root file system (Debian minbase + TVM's runtime wheels) is prepared once by
scripts/aarch64_env.sh and cached. Emulated timings say nothing about ARM speed and are
never reported.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .artifact import Artifact
from .errors import TvmoptError

SETUP_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "aarch64_env.sh"
RUNNER = Path(__file__).resolve().parent / "_emulated_runner.py"


class EmulationError(TvmoptError):
    """The emulated aarch64 environment cannot be prepared or the artifact failed in it."""


def aarch64_root() -> Path:
    """Path of the prepared aarch64 root file system (prepares it on first use, ~1 minute)."""
    if not SETUP_SCRIPT.exists():
        raise EmulationError(f"{SETUP_SCRIPT} is missing; emulation needs a tvmopt source checkout")
    proc = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=os.environ.get("PYTHON", _python())))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EmulationError(f"preparing the aarch64 environment failed: {tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _python() -> str:
    import sys

    return sys.executable


def run_emulated(artifact: Artifact, arrays: list[np.ndarray], timeout_s: float = 600) -> list[np.ndarray]:
    """Run `artifact` (built for aarch64) on `arrays` under qemu-aarch64; returns its outputs."""
    root = aarch64_root()
    with tempfile.TemporaryDirectory(prefix="tvmopt-emu-") as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, *arrays)
        env = dict(os.environ, PYTHONPATH=str(root / "opt" / "tvmpy"), QEMU_LD_PREFIX=str(root))
        start = time.monotonic()
        proc = subprocess.run(
            ["qemu-aarch64-static", "-L", str(root), str(root / "usr" / "bin" / "python3"), str(RUNNER),
             str(artifact.library_path), str(inputs), str(outputs)],
            capture_output=True, text=True, env=env, timeout=timeout_s,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EmulationError(f"{artifact.path}: failed under aarch64 emulation: {tail}")
        with np.load(outputs) as data:
            result = [data[f"arr_{i}"] for i in range(len(data.files))]
        run_emulated.last_wall_s = time.monotonic() - start  # for set-up cost reports, not speed
        return result

"""The runtime stage: load an artifact and run it, here, under emulation, or on a remote device.

Imports only TVM's runtime library (through tvm_ffi) and numpy: no compiler, torch or onnx,
so production processes stay small and start fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..errors import ArtifactError, UsageError
from ..machine import this_machine
from .artifact import Artifact, Manifest, read_artifact
from .batching import with_rows
from .inputs import bind_inputs, random_inputs
from .predictor import Latency, Predictor

if TYPE_CHECKING:
    from .remote import RpcDevice

__all__ = ["load", "run", "RunResult", "Predictor", "Latency", "Artifact", "Manifest", "read_artifact",
           "bind_inputs", "random_inputs"]


def load(path: str | os.PathLike, *, check_compatibility: bool = True, cast_inputs: bool = False,
         adaptive_threads: bool | None = None) -> Predictor:
    """Open an artifact directory; refuse it if this machine or TVM cannot run it.

    `cast_inputs` converts input arrays of another dtype (e.g. float64) to the model's; by
    default they are refused with the expected dtype named. `adaptive_threads`: see Predictor
    (None: on for CPU artifacts unless the thread count was fixed by the user).
    """
    artifact = read_artifact(path)
    if check_compatibility:
        check_runs_here(artifact)
    return Predictor(artifact, cast_inputs=cast_inputs, adaptive_threads=adaptive_threads)


def check_runs_here(artifact: Artifact) -> None:
    """Raise ArtifactError saying why this machine or this TVM cannot run `artifact`."""
    target = artifact.manifest.target
    problem = target.requires.problem_on(this_machine())
    if problem:
        hint = ""
        if target.requires.arch == "aarch64":
            hint = " (run it on the device, via `tvmopt run --rpc-tracker ...`, or here with `tvmopt run --emulate`)"
        raise ArtifactError(f"{artifact.path}: target {target.name}: {problem}{hint}")
    here = this_machine().tvm_version
    if artifact.manifest.tvm_version != here:
        raise ArtifactError(f"{artifact.path}: built with TVM {artifact.manifest.tvm_version}, this runtime is "
                            f"TVM {here}; recompile it with this TVM")


@dataclass(frozen=True)
class RunResult:
    """Outputs of one run and, where it was measured, the latency."""

    artifact: Artifact
    outputs: list[np.ndarray]
    latency: Latency | None
    where: str


def run(
    path: str | os.PathLike,
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    repeat: int = 50,
    emulate: bool = False,
    rpc: "RpcDevice | None" = None,
    cast_inputs: bool = False,
) -> RunResult:
    """Run an artifact once on `inputs` (random ones of the right shape if None) and time it.

    Where: this machine (default); an aarch64 artifact under QEMU (`emulate`, outputs only, no
    latency: emulated time says nothing about ARM speed); or a device of a TVM RPC tracker.
    """
    if emulate and rpc is not None:
        raise ArtifactError("run either under emulation or on an RPC device, not both")
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")
    if emulate or rpc is not None:
        artifact = read_artifact(path)  # runs elsewhere: validate here without loading the library
        predictor = None
    else:
        predictor = load(path, cast_inputs=cast_inputs)
        artifact = predictor.artifact
    buckets = artifact.manifest.batch_buckets
    specs = with_rows(artifact.inputs, buckets.dim, buckets.sizes[0]) if buckets else artifact.inputs
    feeds = dict(inputs) if inputs is not None else random_inputs(specs)
    arrays = bind_inputs(artifact.inputs, (), feeds, cast_inputs)
    if emulate:
        from .emulation import run_emulated

        outputs = run_emulated(artifact, arrays)
        return RunResult(artifact, outputs, None, "aarch64 under QEMU emulation (correctness only; emulated time "
                                                  "is not ARM speed)")
    if rpc is not None:
        from .remote import run_remote

        outputs, seconds = run_remote(artifact, rpc, arrays, repeat=repeat)
        return RunResult(artifact, outputs, Latency(tuple(s * 1e3 for s in seconds)), f"remote device {rpc}")
    assert predictor is not None
    outputs = predictor.run_arrays(arrays)
    latency = predictor.benchmark(dict(zip([s.name for s in artifact.inputs], arrays)), repeat=repeat)
    return RunResult(artifact, outputs, latency, "this machine")

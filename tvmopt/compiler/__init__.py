"""The compile stage: graph passes, the best tuning records, codegen for the target -> Artifact.

Kernels with no record in the target's (or a compatible reference) log keep TVM's default
(unscheduled) lowering, which is correct but slow; the manifest says which kernels were tuned
so that is never hidden.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..threads import default_threads
from .. import __version__
from .._compat import TVM_VERSION
from ..errors import CompileError, last_line
from ..logs import DEFAULT_LOG_ROOT
from ..model import Model
from ..runtime.artifact import Artifact, Manifest, ModelInfo, TargetInfo
from ..targets import TargetSpec, get_target, host_machine
from .buckets import with_batch_buckets
from .codegen import build, device_code, explain_build_failure, export_library
from .int8_schedule import schedule_int8_kernels
from .options import GraphOptions
from .package import check_output, write_artifact
from .layout import block_size
from .passes import fuse
from .records import apply_records, finish_schedules, reference_blocks

__all__ = ["compile", "default_output", "GraphOptions"]


def compile(  # noqa: A001 - the pipeline's verb
    model: Model,
    target: str | TargetSpec = "host",
    output: str | os.PathLike = "artifact",
    *,
    log_root: str | os.PathLike | None = DEFAULT_LOG_ROOT,
    options: GraphOptions | None = None,
    batch_sizes: Sequence[int] | None = None,
) -> Artifact:
    """Build `model` for `target` into the artifact directory `output`.

    `log_root=None` compiles without tuning records (every kernel untuned). `options` must be the
    ones the log was tuned with (the default, unless you tuned with others) for records to match.
    `batch_sizes` (e.g. (1, 4, 16)) compiles one static copy per batch size into the one library
    (buckets.py).
    """
    options = options or GraphOptions()
    check_output(output)
    if batch_sizes:
        model = with_batch_buckets(model, batch_sizes)
    spec = get_target(target)
    tvm_target = spec.tvm_target()
    if spec.cross_compiler and not shutil.which(spec.cross_compiler):
        raise CompileError(
            f"target {spec.name} exports with the cross compiler '{spec.cross_compiler}', which is not "
            "installed (Debian: apt-get install g++-aarch64-linux-gnu)"
        )
    root = Path(log_root) if log_root is not None else None
    fused, tuning, options = _optimise(model, spec, tvm_target, root, options)
    # int8 GEMMs without a record get a sampled tensorized schedule. MetaSchedule's rules need
    # `num-cores`: a portable target gets this machine's, as tune does.
    fused, sampled = schedule_int8_kernels(fused, spec.tuning_target(default_threads()))
    if sampled:
        tuning = replace(tuning, int8_sampled=tuple(sampled))
    started = time.monotonic()
    try:
        executable = build(fused, tvm_target, compiled_vm=options.compiled_vm)
    except Exception as err:  # noqa: BLE001 - TVM raises many kinds
        raise CompileError(
            f"model {model.name} for {spec.name}: build failed {explain_build_failure(fused, tvm_target, err)}"
        ) from err
    manifest = Manifest(
        model=ModelInfo(model.name, model.source, model.format, model.sha256),
        inputs=model.inputs,
        outputs=model.outputs,
        target=TargetInfo(spec.name, spec.log_name, spec.device, spec.target, spec.host, spec.requires),
        tvm_version=TVM_VERSION,
        tvmopt_version=__version__,
        built_on=host_machine(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        tuning=tuning,
        optimizations=options.to_json(),
        batch_buckets=model.batch_buckets,
    )

    def write_library(path: str) -> Manifest:
        export_library(executable, path, spec.cross_compiler)
        code = device_code(path, spec.name, str(spec.target.get("arch", ""))) if spec.device == "cuda" else None
        return replace(manifest, build_s=round(time.monotonic() - started, 2), device_code=code)

    return write_artifact(output, manifest, write_library)


def _optimise(model: Model, spec: TargetSpec, tvm_target, root: Path | None, options: GraphOptions):
    """Graph passes and tuning records; returns (module, TuningInfo, the options used).

    When the target's own layout finds records for only part of the model, the channel blocks of
    compatible reference logs are tried too, and the one whose records cover most kernels wins:
    an AVX-512 host (block 16) then reuses the shipped x86-avx2 log (block 8) with zero tuning.
    """
    candidates = [options]
    if root is not None and options.blocked_layout and options.block is None:
        candidates += [replace(options, block=b) for b in reference_blocks(spec, root) if b != block_size(tvm_target)]
    best = None
    for candidate in candidates:
        try:
            fused = fuse(model.mod, tvm_target, candidate)
        except Exception as err:  # noqa: BLE001 - e.g. a graph whose shapes TVM could not infer
            raise CompileError(f"model {model.name} for {spec.name}: graph optimisation failed: "
                               f"{last_line(err)}") from err
        fused, tuning, donors = apply_records(fused, tvm_target, spec, root)
        if best is None or tuning.tasks_tuned > best[1].tasks_tuned:
            best = (fused, tuning, candidate, donors)
        if tuning.tasks_tuned == tuning.tasks_total:
            break
    fused, tuning, options, donors = best
    # Borrowing builds each borrowed kernel (about a second each): only for the layout kept.
    fused, tuning = finish_schedules(fused, tvm_target, tuning, donors, prepack=options.prepack_weights,
                                     tuning_target=spec.tuning_target(default_threads()), sample=root is not None)
    return fused, tuning, options


def default_output(model: Model, spec: TargetSpec) -> Path:
    return Path("artifacts") / f"{model.name}-{spec.log_name}"

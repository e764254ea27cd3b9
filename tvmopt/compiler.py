"""compile(): apply the best tuning records for a target, build, and write an artifact.

Kernels with no record in the target's log keep TVM's default (unscheduled) lowering, which is
correct but slow; the manifest lists which kernels were tuned so that is never hidden.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import __version__, _tvm
from .artifact import Artifact, save_artifact
from .errors import CompileError
from .model import Model
from .optimize import fused_module
from .targets import TargetSpec, compatibility_problem, get_target, host_fingerprint, list_targets
from .tuning import DEFAULT_LOG_ROOT, log_dir_for
from .tuning.database import WORKLOAD_FILE, LogDatabase


def compile(  # noqa: A001 - the pipeline's verb
    model: Model,
    target: str | TargetSpec = "host",
    output: str | os.PathLike = "artifact",
    *,
    log_root: str | os.PathLike | None = DEFAULT_LOG_ROOT,
) -> Artifact:
    """Build `model` for `target` into the artifact directory `output`.

    `log_root=None` compiles without tuning records (every kernel untuned).
    """
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    tvm_target = spec.tvm_target()
    if spec.cross_compiler and not shutil.which(spec.cross_compiler):
        raise CompileError(
            f"target {spec.name} exports with the cross compiler '{spec.cross_compiler}', which is not "
            "installed (Debian: apt-get install g++-aarch64-linux-gnu)"
        )
    try:
        fused = fused_module(model, tvm_target)
    except Exception as err:  # noqa: BLE001 - e.g. a graph whose shapes TVM could not infer
        raise CompileError(f"model {model.name} for {spec.name}: graph optimisation failed: {_last_line(err)}") from err
    applied, total, references = [], 0, []
    log_dir = log_dir_for(spec, log_root) if log_root is not None else None
    if log_dir is not None:
        database, sources = _open_logs(spec, Path(log_root), log_dir)
        if database is not None:
            applied, total = _records_for(fused, tvm_target, database, sources)
            references = sorted({a["log"] for a in applied} - {log_dir.name})
        if applied:
            fused = _tvm.apply_database(fused, tvm_target, database)
    started = time.monotonic()
    try:
        executable = _tvm.build(fused, tvm_target)
    except Exception as err:  # noqa: BLE001 - TVM raises many kinds
        raise CompileError(f"model {model.name} for {spec.name}: build failed: {_last_line(err)}") from err
    manifest = {
        "model": {"name": model.name, "source": model.source, "format": model.format, "sha256": model.sha256},
        "inputs": [s.to_json() for s in model.inputs],
        "outputs": [s.to_json() for s in model.outputs],
        "target": {
            "name": spec.name,
            "log_name": spec.log_name,
            "device": spec.device,
            "target": spec.target,
            "host": spec.host,
            "requires": spec.requires,
        },
        "tvm_version": _tvm.TVM_VERSION,
        "tvmopt_version": __version__,
        "built_on": host_fingerprint(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_s": None,
        "tuning": {
            "log_dir": str(log_dir) if log_dir is not None else None,
            "tasks_total": total,
            "tasks_tuned": len(applied),
            "records_applied": applied,
            "reference_logs": references,  # other compatible targets' logs that supplied records
        },
    }

    def write_library(path: str) -> None:
        _tvm.export_library(executable, path, spec.cross_compiler)
        manifest["build_s"] = round(time.monotonic() - started, 2)
        if spec.device == "cuda":
            manifest["device_code"] = _device_code(path, spec)

    return save_artifact(output, manifest, write_library)


def reference_logs(spec: TargetSpec, log_root: Path) -> list[Path]:
    """Logs under `log_root` of other registered targets whose code `spec`'s machines can run
    (same arch, a subset of its CPU features), most specific first: their schedules apply as is,
    e.g. the shipped x86-avx512 and x86-avx2 logs on an AVX-512 host."""
    if spec.device != "cpu" or not log_root.is_dir():
        return []
    # The target's requirements describe the least machine it runs on: compare against them.
    fingerprint = {"arch": spec.requires.get("arch"), "cpu_flags": spec.requires.get("cpu_flags", [])}
    found = []
    for other in list_targets():
        path = log_root / other.log_name
        if other.log_name == spec.log_name or other.device != "cpu" or not (path / WORKLOAD_FILE).exists():
            continue
        if fingerprint["arch"] and compatibility_problem(other.requires, fingerprint) is None:
            found.append((len(other.requires.get("cpu_flags", [])), path))
    return [path for _, path in sorted(found, key=lambda f: -f[0])]


def _open_logs(spec: TargetSpec, log_root: Path, log_dir: Path) -> tuple[LogDatabase | None, dict[str, str]]:
    """The target's own log, plus records of the workloads it lacks from compatible reference logs.
    Returns the database and, per workload hash, the name of the log its records came from."""
    database = LogDatabase(log_dir, readonly=True) if (log_dir / WORKLOAD_FILE).exists() else None
    sources = {}
    for path in reference_logs(spec, log_root):
        if database is None:
            database = LogDatabase(path, readonly=True)
            sources.update({_tvm.workload_hash(m): path.name for m in database.workload_modules()})
        else:
            sources.update({h: path.name for h in database.add_fallback(LogDatabase(path, readonly=True))})
    return database, sources


def _records_for(fused, target, database: LogDatabase, sources: dict[str, str]) -> tuple[list[dict], int]:
    """Which kernels have a valid record (the ones ApplyDatabase will replace), and from which log."""
    try:
        tasks = _tvm.extract_tasks(fused, target)
    except Exception:  # noqa: BLE001 - dynamic shapes: nothing can match a record anyway
        return [], 0
    applied = []
    own = database.dir.name
    for task in tasks:
        best = database.best_seconds(task.dispatched[0])
        if best is not None:
            digest = _tvm.workload_hash(task.dispatched[0])
            applied.append({"task": task.task_name, "best_us": round(best * 1e6, 3), "log": sources.get(digest, own)})
    return applied, len(tasks)


FATBIN_MAGIC = b"\x50\xed\x55\xba"  # NVIDIA fatbin header, little-endian 0xBA55ED50


def _device_code(lib_path: str, spec: TargetSpec) -> dict:
    """What GPU code the library embeds: compiled fatbin for the arch, or only CUDA source."""
    data = Path(lib_path).read_bytes()
    arch = str(spec.target.get("arch", ""))
    if FATBIN_MAGIC in data and arch.encode() in data:
        return {"format": "fatbin", "arch": arch}
    raise CompileError(f"target {spec.name}: the library holds no compiled {arch} device code (nvcc did not run)")


def _last_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def default_output(model: Model, spec: TargetSpec) -> Path:
    return Path("artifacts") / f"{model.name}-{spec.log_name}"

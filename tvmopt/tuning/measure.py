"""Time given scheduled kernels with the tuning session's builder and runner (logs cross-apply)."""

from __future__ import annotations

import os
import shutil

import tvm

from .._compat import ms
from ..errors import last_line
from ..logs.workload import record_seconds, structural_hash
from .builder import PersistentBuilder
from .runner import local_runner


def measure_scheduled(mods: list, target: tvm.target.Target, device_type: str = "cpu", number: int = 3,
                      repeat: int = 3, min_repeat_ms: int = 20) -> list[tuple[float | None, str | None]]:
    """Build scheduled TIR modules for `target` and time each on this machine, as tuning does.

    Returns (seconds, None) or (None, one-line error) per module, so numbers match the log's;
    identical modules are built and timed once (the builder would report a repeat as already
    measured).
    """
    unique = {structural_hash(mod): mod for mod in mods}
    if len(unique) < len(mods):
        timed = dict(zip(unique, measure_scheduled(list(unique.values()), target, device_type, number, repeat,
                                                   min_repeat_ms)))
        return [timed[structural_hash(mod)] for mod in mods]
    builder = PersistentBuilder(max_workers=max(1, min(len(mods), len(os.sched_getaffinity(0)))), measured=set())
    runner = local_runner(number, repeat, min_repeat_ms)
    results: list[tuple[float | None, str | None]] = [(None, "not built")] * len(mods)
    try:
        built = builder.build([ms.builder.BuilderInput(mod, target) for mod in mods])
        todo = []
        for index, (mod, res) in enumerate(zip(mods, built)):
            if res.error_msg:
                results[index] = (None, "build failed: " + last_line(RuntimeError(str(res.error_msg))))
            else:
                args = ms.arg_info.ArgInfo.from_entry_func(mod, remove_preproc=True)
                todo.append((index, str(res.artifact_path), ms.runner.RunnerInput(str(res.artifact_path), device_type,
                                                                                 args)))
        futures = runner.run([inp for _, _, inp in todo]) if todo else []
        for (index, path, _), future in zip(todo, futures):
            res = future.result()
            if res.error_msg or not res.run_secs:
                results[index] = (None, "run failed: " + last_line(RuntimeError(str(res.error_msg))))
            else:
                results[index] = (record_seconds(res.run_secs), None)
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    finally:
        builder.shutdown()
    return results

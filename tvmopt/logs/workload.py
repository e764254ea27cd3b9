"""The rules every reader of a tuning log shares: how a workload is named (its structural hash),
which measurement counts (a valid run), and what a time means (median, GFLOP/s)."""

from __future__ import annotations

import re
import statistics
from typing import Iterable

import tvm

# MetaSchedule logs a candidate that failed to build or run with run_secs [1e10]
# (SortTuningRecordByMeanRunSecs::kMaxMeanTime); anything at or above this is no measurement.
FAILED_RUN_SECONDS = 1e9


def valid_run_seconds(run_secs: Iterable | None) -> list[float] | None:
    """A record's run times in seconds, or None when the candidate failed (the one definition)."""
    secs = [float(s) for s in (run_secs or [])]
    return secs if secs and max(secs) < FAILED_RUN_SECONDS else None


def record_seconds(run_secs: Iterable) -> float:
    """The latency a candidate is ranked by: the mean of its repeats, as MetaSchedule ranks records
    (SortTuningRecordByMeanRunSecs), so the best we report is the one ApplyDatabase applies."""
    return float(statistics.fmean(float(s) for s in run_secs))


def gflops(flops: float, seconds: float | None) -> float | None:
    """Throughput of a kernel that does `flops` in `seconds`, or None when either is unknown."""
    return flops / seconds / 1e9 if seconds and flops else None


def structural_hash(mod: tvm.IRModule) -> int:
    """Structural hash of a (scheduled or not) TIR module."""
    import tvm_ffi

    return int(tvm_ffi.structural_hash(mod))


def workload_hash(mod: tvm.IRModule) -> str:
    """Printable 64-bit structural hash: how session records, manifests and `logs show` name a workload."""
    return f"{structural_hash(mod) & 0xFFFFFFFFFFFFFFFF:016x}"


def replay(record, mod: tvm.IRModule) -> tvm.IRModule:
    """The scheduled module `record`'s trace makes of workload `mod` (which may come from another log)."""
    sch = tvm.s_tir.Schedule(mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod


def record_hash(record) -> int:
    """Hash of the scheduled module a tuning record stands for (its trace replayed on its workload)."""
    return structural_hash(replay(record, record.workload.mod))


def estimate_flops(mod_or_func) -> float:
    """FLOPs of one TIR PrimFunc / IRModule as TVM estimates them (0 where it has no estimate)."""
    from tvm.s_tir.analysis import estimate_tir_flops

    from .._compat import PrimFunc

    if isinstance(mod_or_func, PrimFunc):
        mod_or_func = tvm.IRModule({"main": mod_or_func})
    try:
        return float(estimate_tir_flops(mod_or_func))
    except Exception:  # noqa: BLE001 - opaque/extern ops have no estimate
        return 0.0


_BLOCK = re.compile(r'T\.s?block\("([^"]+)"')


def block_names(mod: tvm.IRModule) -> tuple[str, ...]:
    """The names of a workload's blocks, in order. Two structurally equal workloads (one workload
    to MetaSchedule) may name them differently: TOPI names a layer norm's blocks after its input
    tensor, so bert4's is `lv8_sum` in one graph and `lv9_sum` in another, and a trace finds its
    blocks by name."""
    # TVM 0.27 has no Python statement visitor for TIR; the printed script names every block.
    return tuple(_BLOCK.findall(mod["main"].script()))


def rename_trace_blocks(trace_json: list, names: dict[str, str]) -> list:
    """A trace (its JSON: [instructions, decisions]) whose GetSBlock calls look up the blocks of a
    structurally equal workload named differently: `names` maps this trace's names to those;
    blocks the trace itself made (`lv9_sum_rf` from rfactor of `lv9_sum`) follow their origin."""
    if not names:
        return trace_json
    longest_first = sorted(names, key=len, reverse=True)

    def renamed(name: str) -> str:
        if name in names:
            return names[name]
        for old in longest_first:
            if name.startswith(old + "_"):
                return names[old] + name[len(old):]
        return name

    instructions = [[inst[0], inst[1], [renamed(inst[2][0]), *inst[2][1:]], *inst[3:]]
                    if inst[0] == "GetSBlock" and inst[2] else inst for inst in trace_json[0]]
    return [instructions, *trace_json[1:]]

"""How tvmopt times contenders against each other: interleaved rounds, medians, output diffs."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from .. import ctrl_c


def interleaved_medians(contenders: dict[str, Callable[[], object]], rounds: int, runs: int) -> dict[str, float]:
    """Median over rounds of each contender's per-round median call time (ms), interleaved so that
    machine noise hits every contender alike."""
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up: first calls allocate, JIT, fill caches
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            times = []
            for _ in range(runs):
                ctrl_c.check()  # a Ctrl-C whose KeyboardInterrupt got lost still ends the loop
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
            per_round[name].append(statistics.median(times))
    return {name: statistics.median(values) for name, values in per_round.items()}


def max_abs_diff(outputs: Sequence, reference: Sequence) -> float:
    """Largest absolute difference over all outputs (float64 arithmetic)."""
    return max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
               for a, b in zip(outputs, reference))


@dataclass(frozen=True)
class Timing:
    """One contender's row of a comparison table."""

    name: str  # tvm-untuned | tvm-tuned | onnxruntime | torch | torch-compile (| ... -fp32 baselines)
    median_ms: float | None
    ratio_to_onnxruntime: float | None  # to ONNX Runtime running the same model file
    max_abs_diff: float | None  # from ONNX Runtime's outputs on the same model file
    note: str = ""
    ratio_to_fp32: float | None = None  # bench --baseline: to the same engine on the fp32 model

    def to_json(self) -> dict:
        return asdict(self)


def timings_table(rows: Sequence[Timing], title: str) -> str:
    """The table bench and demo print: median, ratio to ONNX Runtime, max |diff|, note (and, with
    an fp32 baseline, each engine's ratio to its own fp32 latency)."""
    fp32 = any(r.ratio_to_fp32 is not None for r in rows)
    width = max([14] + [len(r.name) + 2 for r in rows])
    extra = f"{'vs fp32':>9}" if fp32 else ""
    lines = [title, f"{'':{width}}{'median ms':>11}{'vs ORT':>9}{extra}{'max |diff|':>12}  note"]
    for r in rows:
        if r.median_ms is None:
            dash = f"{'-':>9}" if fp32 else ""
            lines.append(f"{r.name:{width}}{'-':>11}{'-':>9}{dash}{'-':>12}  {r.note}")
            continue
        ratio = f"{r.ratio_to_onnxruntime:8.2f}x" if r.ratio_to_onnxruntime is not None else f"{'-':>9}"
        to_fp32 = (f"{r.ratio_to_fp32:8.2f}x" if r.ratio_to_fp32 is not None else f"{'-':>9}") if fp32 else ""
        diff = f"{r.max_abs_diff:12.2e}" if r.max_abs_diff is not None else f"{'-':>12}"
        lines.append(f"{r.name:{width}}{r.median_ms:11.4f}{ratio}{to_fp32}{diff}  {r.note}".rstrip())
    return "\n".join(lines)

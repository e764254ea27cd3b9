"""Check a tuning session's estimate against the model's measured end-to-end latency.

MetaSchedule's estimate is the sum of each task's best kernel time x its weight. It says
nothing about kernels that fell back to untuned code, or time spent outside the tuned kernels,
which is how a session can look fine while the model runs 26x slower (TVM_NOTES). Compiling
the log and timing the model once is the only way to know.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .._files import ScratchDir
from ..model import Model
from ..targets import TargetSpec, get_target

# Measured / estimated above this ratio is reported as a problem.
SUSPICIOUS_RATIO = 1.5


@dataclass(frozen=True)
class EstimateCheck:
    estimated_ms: float | None
    measured_ms: float
    tasks_tuned: int
    tasks_total: int

    @property
    def ratio(self) -> float | None:
        return self.measured_ms / self.estimated_ms if self.estimated_ms else None

    @property
    def ok(self) -> bool:
        return self.tasks_tuned == self.tasks_total and self.ratio is not None and self.ratio <= SUSPICIOUS_RATIO

    def describe(self) -> str:
        est = f"{self.estimated_ms:.3f} ms" if self.estimated_ms else "n/a"
        ratio = f" ({self.ratio:.2f}x the estimate)" if self.ratio else ""
        line = f"measured {self.measured_ms:.3f} ms end to end{ratio}; estimate {est}; " \
               f"{self.tasks_tuned}/{self.tasks_total} kernels tuned"
        if self.ok:
            return line
        if self.tasks_tuned < self.tasks_total:
            why = f"{self.tasks_total - self.tasks_tuned} kernel(s) run untuned code"
        elif self.ratio is None:
            why = "the session has no estimate"
        else:
            why = "time is spent outside the tuned kernels, or the kernels run slower in the model than alone"
        return f"WARNING: {line}: {why}"


def check_estimate(model: Model, target: str | TargetSpec, log_root: str | os.PathLike,
                   estimated_ms: float | None, repeat: int = 20) -> EstimateCheck | None:
    """Compile `model` with the log, time it here; None when the target cannot run on this machine."""
    from ..compiler import compile as compile_model
    from ..runtime import load

    spec = get_target(target)
    if not spec.is_local_cpu:
        return None
    with ScratchDir("tvmopt-check-") as tmp:  # swept by the next check if this process is killed
        artifact = compile_model(model, spec, Path(tmp) / "artifact", log_root=log_root)
        predictor = load(artifact.path)
        buckets = artifact.manifest.batch_buckets
        # The estimate of a bucketed model sums every bucket's kernels: so does the measurement.
        sizes = buckets.sizes if buckets is not None else (None,)
        measured = sum(predictor.benchmark(predictor.random_inputs(rows=n), repeat=repeat).median_ms for n in sizes)
    tuning = artifact.manifest.tuning
    return EstimateCheck(estimated_ms, round(measured, 5), tuning.tasks_tuned, tuning.tasks_total)

"""Adaptive thread count against a fixed one, on one artifact, split by the machine's phase.

Two Predictors of the same artifact in one process, one adaptive (runtime/adaptive_threads.py),
one on every thread, timed in alternating chunks of calls (numpy in, numpy out, as a user calls
them) for SECONDS; every 10 chunks the cross-core round trip (cross_core.py) labels the phase.
Prints the medians of the chunk medians per phase and the median of the per-pair ratios.

    .venv/bin/python benchmarks/adaptive_threads.py ARTIFACT [--seconds 90] [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cross_core import round_trip_ns  # noqa: E402

FAR_NS = 150.0  # round trips above this: the vCPUs share no L3 (53-66 ns near, 330-345 far)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--calls", type=int, default=300, help="calls per chunk (default 300)")
    args = parser.parse_args()
    import tvmopt

    fixed = tvmopt.load(args.artifact, adaptive_threads=False)
    adaptive = tvmopt.load(args.artifact, adaptive_threads=True)
    feeds = fixed.random_inputs()
    for _ in range(100):
        fixed(**feeds)
        adaptive(**feeds)

    def chunk(predictor) -> float:
        times = []
        for _ in range(args.calls):
            start = time.perf_counter()
            predictor(**feeds)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    rows: list[tuple[float, float, float]] = []  # (round trip ns, fixed us, adaptive us)
    started, phase = time.perf_counter(), 0.0
    while time.perf_counter() - started < args.seconds:
        if len(rows) % 10 == 0:
            phase = round_trip_ns()
        if len(rows) % 2:  # alternate which one goes first
            a = chunk(adaptive)
            f = chunk(fixed)
        else:
            f = chunk(fixed)
            a = chunk(adaptive)
        rows.append((phase, f, a))
    print(f"{args.artifact}: {len(rows)} chunk pairs of {args.calls} calls in {args.seconds:.0f} s")
    print("| phase | chunk pairs | fixed us | adaptive us | adaptive / fixed |")
    print("|---|---|---|---|---|")
    for name, keep in (("near", lambda r: r[0] < FAR_NS), ("far", lambda r: r[0] >= FAR_NS), ("all", lambda r: True)):
        sel = [r for r in rows if keep(r)]
        if sel:
            print(f"| {name} | {len(sel)} | {statistics.median(r[1] for r in sel):.1f} | "
                  f"{statistics.median(r[2] for r in sel):.1f} | {statistics.median(r[2] / r[1] for r in sel):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

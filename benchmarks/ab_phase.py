"""Two artifacts of one model against each other, split by the machine's phase.

Both load in one process (every thread, no adaptive thread count) and are timed in alternating
chunks of calls, numpy in and out, for SECONDS; every 10 chunks the cross-core round trip
(cross_core.py) labels the phase. A phase change in the middle of a separate-process A/B makes
its ratio say nothing; here every pair of chunks runs within milliseconds of each other.

    .venv/bin/python benchmarks/ab_phase.py ARTIFACT_A ARTIFACT_B [--seconds 120] [--calls 3]
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


def alternate(first, second, feeds: dict, seconds: float, calls: int) -> list[tuple[float, float, float]]:
    """(round trip ns, first us, second us) per pair of chunks: medians of `calls` calls each, numpy
    in and out, the order swapped every pair, the phase measured every 10 pairs."""

    def chunk(predictor) -> float:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            predictor(**feeds)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e6

    rows: list[tuple[float, float, float]] = []
    started, phase = time.perf_counter(), 0.0
    while time.perf_counter() - started < seconds:
        if len(rows) % 10 == 0:
            phase = round_trip_ns()
        if len(rows) % 2:
            b = chunk(second)
            a = chunk(first)
        else:
            a = chunk(first)
            b = chunk(second)
        rows.append((phase, a, b))
    return rows


def warm_and_alternate(first, second, seconds: float, calls: int, warmup: int) -> list[tuple[float, float, float]]:
    """`alternate` on random inputs of `first`'s spec, after `warmup` calls of each predictor."""
    feeds = first.random_inputs()
    for _ in range(warmup):
        first(**feeds)
        second(**feeds)
    return alternate(first, second, feeds, seconds, calls)


def print_by_phase(rows: list[tuple[float, float, float]], first: str, second: str, with_all: bool = False) -> None:
    """A markdown table: medians of the chunk medians per phase, and of the per-pair ratios."""
    print(f"| phase | chunk pairs | {first} us | {second} us | {second} / {first} |")
    print("|---|---|---|---|---|")
    groups = [("near", lambda r: r[0] < FAR_NS), ("far", lambda r: r[0] >= FAR_NS)]
    for name, keep in groups + ([("all", lambda r: True)] if with_all else []):
        sel = [r for r in rows if keep(r)]
        if sel:
            print(f"| {name} | {len(sel)} | {statistics.median(r[1] for r in sel):.1f} | "
                  f"{statistics.median(r[2] for r in sel):.1f} | {statistics.median(r[2] / r[1] for r in sel):.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--calls", type=int, default=3, help="calls per chunk (default 3)")
    args = parser.parse_args()
    import tvmopt

    first = tvmopt.load(args.a, adaptive_threads=False)
    second = tvmopt.load(args.b, adaptive_threads=False)
    rows = warm_and_alternate(first, second, args.seconds, args.calls, warmup=3)
    print(f"A = {args.a}, B = {args.b}: {len(rows)} chunk pairs of {args.calls} calls in {args.seconds:.0f} s")
    print_by_phase(rows, "A", "B")
    return 0


if __name__ == "__main__":
    sys.exit(main())

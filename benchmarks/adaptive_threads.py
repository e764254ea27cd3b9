"""Adaptive thread count against a fixed one, on one artifact, split by the machine's phase.

Two Predictors of the same artifact in one process, one adaptive (runtime/adaptive_threads.py),
one on every thread, timed in alternating chunks of calls (numpy in, numpy out, as a user calls
them) for SECONDS; every 10 chunks the cross-core round trip (cross_core.py) labels the phase.
Prints the medians of the chunk medians per phase and the median of the per-pair ratios.

    .venv/bin/python benchmarks/adaptive_threads.py ARTIFACT [--seconds 90] [--calls 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_phase import print_by_phase, warm_and_alternate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--calls", type=int, default=300, help="calls per chunk (default 300)")
    args = parser.parse_args()
    import tvmopt

    fixed = tvmopt.load(args.artifact, adaptive_threads=False)
    adaptive = tvmopt.load(args.artifact, adaptive_threads=True)
    rows = warm_and_alternate(fixed, adaptive, args.seconds, args.calls, warmup=100)
    print(f"{args.artifact}: {len(rows)} chunk pairs of {args.calls} calls in {args.seconds:.0f} s")
    print_by_phase(rows, "fixed", "adaptive", with_all=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

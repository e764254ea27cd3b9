"""Cross-core round trip of this machine right now: which of a VM's two phases a benchmark ran in.

On the 2-vCPU VM these benchmarks run on, the host moves the vCPUs between cores that share an L3
(round trip 53-66 ns) and cores that do not (330-345 ns), every few seconds to minutes. Kernels
whose threads read what another thread wrote slow down in the far phase (ResNet-18: 10.7 -> 15.3
ms with the same artifact; benchmarks/RESULTS.md, session 28), so a ratio measured across phases
needs the phase next to it. Two threads pinned to two CPUs bounce an atomic counter; C (compiled
with the system's cc), because Python's GIL would time itself.

    .venv/bin/python benchmarks/cross_core.py [--cpus 0,1] [--every SECONDS --count N]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

SOURCE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static _Atomic long flag __attribute__((aligned(64)));
static long rounds = 1000000;
static int cpus[2];
static void pin(int cpu) {
    cpu_set_t set; CPU_ZERO(&set); CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
static void *other(void *arg) {
    pin(cpus[1]);
    for (long i = 0; i < rounds; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i + 1) {}
        atomic_store_explicit(&flag, 2 * i + 2, memory_order_release);
    }
    return arg;
}
int main(int argc, char **argv) {
    cpus[0] = argc > 1 ? atoi(argv[1]) : 0;
    cpus[1] = argc > 2 ? atoi(argv[2]) : 1;
    pthread_t thread; struct timespec a, b;
    pin(cpus[0]);
    pthread_create(&thread, 0, other, 0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < rounds; i++) {
        atomic_store_explicit(&flag, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i + 2) {}
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(thread, 0);
    printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / rounds);
    return 0;
}
"""


@lru_cache(maxsize=1)
def _binary() -> Path:
    """The ping-pong, compiled once per process into a temporary folder removed at exit."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        sys.exit("cross_core.py needs a C compiler (cc, gcc or clang) on PATH")
    folder = Path(tempfile.mkdtemp(prefix="tvmopt-cross-core-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "pingpong.c").write_text(SOURCE)
    subprocess.run([compiler, "-O2", "-pthread", "-o", str(folder / "pingpong"), str(folder / "pingpong.c")],
                   check=True)
    return folder / "pingpong"


def round_trip_ns(cpus: tuple[int, int] = (0, 1)) -> float:
    """Nanoseconds for one cache line to go from one CPU to the other and back."""
    out = subprocess.run([str(_binary()), str(cpus[0]), str(cpus[1])], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", default="0,1", help="the two CPUs (default 0,1)")
    parser.add_argument("--every", type=float, default=0.0, help="seconds between samples")
    parser.add_argument("--count", type=int, default=1, help="samples to take")
    args = parser.parse_args()
    first, second = (int(c) for c in args.cpus.split(","))
    for index in range(args.count):
        if index:
            time.sleep(args.every)
        print(f"{time.strftime('%H:%M:%S')} cpu {first} <-> cpu {second}: {round_trip_ns((first, second)):.0f} ns "
              f"round trip", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

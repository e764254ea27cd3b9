"""This machine's fp32 peak, measured: a register-resident FMA loop (no memory traffic) on every core.

    .venv/bin/python benchmarks/peak.py        # prints GFLOP/s per core and for all cores

The loop keeps 12 independent accumulators (enough to cover FMA latency on 2 FMA ports) in the
widest vectors the compiler targets on this CPU (-march=native). Used by kernel_profile.py for
"% of peak".
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

SOURCE = r"""
#include <immintrin.h>
#if defined(__AVX512F__)
typedef __m512 V; enum { L = 16 };
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define RED(v) _mm512_reduce_add_ps(v)
#else
typedef __m256 V; enum { L = 8 };
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float RED(V v) { float t[8]; _mm256_storeu_ps(t, v); return t[0]+t[1]+t[2]+t[3]+t[4]+t[5]+t[6]+t[7]; }
#endif
int lanes(void) { return L; }
float fma_loop(long iterations) {
    V a = SET1(0.999f), b = SET1(1e-6f);
    V c0 = SET1(0), c1 = SET1(1), c2 = SET1(2), c3 = SET1(3), c4 = SET1(4), c5 = SET1(5);
    V c6 = SET1(6), c7 = SET1(7), c8 = SET1(8), c9 = SET1(9), c10 = SET1(10), c11 = SET1(11);
    for (long i = 0; i < iterations; ++i) {
        c0 = FMA(c0, a, b); c1 = FMA(c1, a, b); c2 = FMA(c2, a, b); c3 = FMA(c3, a, b);
        c4 = FMA(c4, a, b); c5 = FMA(c5, a, b); c6 = FMA(c6, a, b); c7 = FMA(c7, a, b);
        c8 = FMA(c8, a, b); c9 = FMA(c9, a, b); c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
    }
    V s = ADD(ADD(ADD(c0, c1), ADD(c2, c3)), ADD(ADD(c4, c5), ADD(c6, c7)));
    s = ADD(s, ADD(ADD(c8, c9), ADD(c10, c11)));
    return RED(s);
}
"""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    work = Path(tempfile.mkdtemp(prefix="tvmopt-peak-"))
    (work / "peak.c").write_text(SOURCE)
    subprocess.run(["cc", "-O2", "-march=native", "-shared", "-fPIC", "-o", str(work / "peak.so"),
                    str(work / "peak.c")], check=True)
    lib = ctypes.CDLL(str(work / "peak.so"))
    lib.fma_loop.argtypes, lib.fma_loop.restype = [ctypes.c_long], ctypes.c_float
    return lib


def _per_core(iterations: int = 200_000_000) -> float:
    lib = _library()
    flops = iterations * 12 * lib.lanes() * 2
    best = 0.0
    for _ in range(3):
        start = time.thread_time()
        lib.fma_loop(iterations)
        best = max(best, flops / (time.thread_time() - start) / 1e9)
    return best


def peak_gflops() -> tuple[float, float]:
    """(GFLOP/s of one core, of all cores): every core runs the loop at once (ctypes drops the GIL)."""
    cores = len(os.sched_getaffinity(0))
    results: list[float] = []
    threads = [threading.Thread(target=lambda: results.append(_per_core())) for _ in range(cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(results), sum(results)


if __name__ == "__main__":
    one, all_cores = peak_gflops()
    print(f"fp32 FMA peak: {one:.1f} GFLOP/s per core, {all_cores:.1f} GFLOP/s on {len(os.sched_getaffinity(0))} cores")

"""This machine's fp32 and int8 peaks, measured: register-resident loops (no memory traffic) on
every core.

    .venv/bin/python benchmarks/peak.py        # prints GFLOP/s and int8 GOP/s, per core and all cores

Each loop keeps 12 independent accumulators (enough to cover the latency on 2 ports) in the widest
vectors the compiler targets on this CPU (-march=native). fp32: FMA. int8: the u8 x s8 dot product
tvmopt's int8 GEMMs are tensorized with: `vpdpbusd` with AVX-512 VNNI, else AVX2's
`vpmaddubsw` + `vpmaddwd` (by ones) + `vpaddd`, as ONNX Runtime's MLAS does too. Used by
kernel_profile.py and for the int8 GEMMs' "% of peak".
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
#if defined(__AVX512VNNI__)
typedef __m512i I; enum { IB = 64 };
#define ISET1 _mm512_set1_epi32
#define DOT(c, b) _mm512_dpbusd_epi32(c, c, b)
#define IADD _mm512_add_epi32
static int IRED(I v) { return _mm512_reduce_add_epi32(v); }
#else
typedef __m256i I; enum { IB = 32 };
#define ISET1 _mm256_set1_epi32
#define DOT(c, b) _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(c, b), ones))
#define IADD _mm256_add_epi32
static int IRED(I v) { int t[8]; _mm256_storeu_si256((__m256i *)t, v); return t[0]+t[1]+t[2]+t[3]+t[4]+t[5]+t[6]+t[7]; }
#endif
int int8_bytes(void) { return IB; }  /* u8 x s8 multiply-adds per instruction (group) */
/* The accumulator is also the u8 operand: with constant operands the compiler hoists the dot
   product out of the loop and times additions only. */
int int8_loop(long iterations, int seed) {
    I b = ISET1(0x01010101 * (seed & 3));
#if !defined(__AVX512VNNI__)
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    I c0 = ISET1(0), c1 = ISET1(1), c2 = ISET1(2), c3 = ISET1(3), c4 = ISET1(4), c5 = ISET1(5);
    I c6 = ISET1(6), c7 = ISET1(7), c8 = ISET1(8), c9 = ISET1(9), c10 = ISET1(10), c11 = ISET1(11);
    for (long i = 0; i < iterations; ++i) {
        c0 = DOT(c0, b); c1 = DOT(c1, b); c2 = DOT(c2, b); c3 = DOT(c3, b);
        c4 = DOT(c4, b); c5 = DOT(c5, b); c6 = DOT(c6, b); c7 = DOT(c7, b);
        c8 = DOT(c8, b); c9 = DOT(c9, b); c10 = DOT(c10, b); c11 = DOT(c11, b);
    }
    I s = IADD(IADD(IADD(c0, c1), IADD(c2, c3)), IADD(IADD(c4, c5), IADD(c6, c7)));
    s = IADD(s, IADD(IADD(c8, c9), IADD(c10, c11)));
    return IRED(s);
}
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
    lib.int8_loop.argtypes, lib.int8_loop.restype = [ctypes.c_long, ctypes.c_int], ctypes.c_int
    return lib


def _per_core(kind: str = "fp32", iterations: int = 200_000_000) -> float:
    """G(FL)OP/s of one core: a multiply-add counts as 2 operations."""
    lib = _library()
    if kind == "fp32":
        ops, loop = iterations * 12 * lib.lanes() * 2, lambda: lib.fma_loop(iterations)
    else:
        ops, loop = iterations * 12 * lib.int8_bytes() * 2, lambda: lib.int8_loop(iterations, 1)
    best = 0.0
    for _ in range(3):
        start = time.thread_time()
        loop()
        best = max(best, ops / (time.thread_time() - start) / 1e9)
    return best


def _on_every_core(kind: str) -> tuple[float, float]:
    """(one core, all cores): every core runs the loop at once (ctypes drops the GIL)."""
    cores = len(os.sched_getaffinity(0))
    results: list[float] = []
    threads = [threading.Thread(target=lambda: results.append(_per_core(kind))) for _ in range(cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(results), sum(results)


def peak_gflops() -> tuple[float, float]:
    """fp32 FMA GFLOP/s (one core, all cores)."""
    return _on_every_core("fp32")


def peak_int8_gops() -> tuple[float, float]:
    """u8 x s8 dot-product GOP/s (one core, all cores), with the instructions tvmopt's int8 GEMMs use."""
    return _on_every_core("int8")


if __name__ == "__main__":
    cores = len(os.sched_getaffinity(0))
    one, all_cores = peak_gflops()
    print(f"fp32 FMA peak: {one:.1f} GFLOP/s per core, {all_cores:.1f} GFLOP/s on {cores} cores")
    one, all_cores = peak_int8_gops()
    print(f"int8 u8 x s8 dot-product peak: {one:.1f} GOP/s per core, {all_cores:.1f} GOP/s on {cores} cores")

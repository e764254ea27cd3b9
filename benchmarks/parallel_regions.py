"""Where a compiled model's call goes, parallel region by parallel region: each region's wall
time, each thread's busy time inside it, the worker's start lag, and the kernel it belongs to.

A TVM kernel runs its parallel loops through `TVMBackendParallelLaunch`; a small C shim (built
with the system's cc, loaded with LD_PRELOAD) wraps that function and each task the pool runs,
so the figures come from the artifact's own plain call (no profiler hook, no synchronisation
added between kernels). It answers whether time is lost in the thread pool (start lag, threads
waiting for each other, serial work between regions) or inside the kernels.

    .venv/bin/python benchmarks/parallel_regions.py ARTIFACT_DIR [--calls 300]
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_RECORDS = 400000  # regions kept by the shim (a call of ResNet-18 has 66)

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
typedef int (*FLambda)(int, void *, void *);
typedef int (*Launch)(FLambda, void *, int);
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
#define MAXR MAX_RECORDS
typedef struct { double t0, t1, s[2], e[2]; void *f; } Rec;
static Rec recs[MAXR];
static long n = 0;
typedef struct { FLambda f; void *cdata; Rec *r; } Wrap;
static int wrapper(int task, void *penv, void *cd) {
    Wrap *w = (Wrap *)cd; double s = now(); int rv = w->f(task, penv, w->cdata); double e = now();
    if (task < 2) { w->r->s[task] = s; w->r->e[task] = e; }
    return rv;
}
int TVMBackendParallelLaunch(FLambda f, void *cdata, int num_task) {
    static Launch real = 0;
    if (!real) real = (Launch)dlsym(RTLD_NEXT, "TVMBackendParallelLaunch");
    Rec *r = &recs[n < MAXR ? n : MAXR - 1]; n++;
    Wrap w = {f, cdata, r}; r->f = (void *)f; r->s[0] = r->s[1] = r->e[0] = r->e[1] = 0;
    r->t0 = now(); int rv = real(wrapper, &w, num_task); r->t1 = now();
    return rv;
}
long regions_count(void) { return n; }
void regions_reset(void) { n = 0; }
/* record i: wall, busy of task 0 and 1, start lag of task 1, the lambda's offset in its library */
void regions_get(long i, double *out, long *offset) {
    Rec *r = &recs[i]; Dl_info info;
    out[0] = r->t1 - r->t0; out[1] = r->e[0] - r->s[0]; out[2] = r->e[1] - r->s[1];
    out[3] = r->s[1] > 0 ? r->s[1] - r->t0 : 0; out[4] = r->t0; out[5] = r->t1;
    *offset = dladdr(r->f, &info) ? (long)((char *)r->f - (char *)info.dli_fbase) : -1;
}
"""


def build_shim() -> Path:
    """Compile the shim into a temporary directory (removed by the parent after the child exits)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("parallel_regions.py needs a C compiler (cc) to build its shim")
    work = Path(tempfile.mkdtemp(prefix="tvmopt-regions-"))
    (work / "shim.c").write_text(SOURCE.replace("MAX_RECORDS", str(MAX_RECORDS)))
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(work / "shim.so"), str(work / "shim.c"), "-ldl"], check=True)
    return work / "shim.so"


def kernel_names(library: Path) -> tuple[list[int], list[str]]:
    """Symbol addresses of the artifact's library (nm), to name each region's lambda by its kernel."""
    out = subprocess.run(["nm", str(library)], capture_output=True, text=True).stdout
    symbols = sorted((int(p[0], 16), p[2]) for p in (line.split() for line in out.splitlines()) if len(p) == 3)
    return [a for a, _ in symbols], [name.removesuffix("_compute_") for _, name in symbols]


def measure(artifact: Path, calls: int, shim_path: str) -> None:
    shim = ctypes.CDLL(shim_path)
    shim.regions_count.restype = ctypes.c_long
    import tvmopt

    predictor = tvmopt.load(artifact)
    call = predictor.bound_call(predictor.random_inputs())
    for _ in range(max(20, calls // 10)):
        call()
    shim.regions_reset()
    call()
    per_call = shim.regions_count()
    if per_call == 0:
        print(f"{artifact}: no parallel region in a call (one thread, or no parallel loop): nothing to split")
        return
    shim.regions_reset()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    elapsed_us = (time.perf_counter() - start) / calls * 1e6
    count = min(shim.regions_count(), MAX_RECORDS)
    values, offset = (ctypes.c_double * 6)(), ctypes.c_long()
    sums = [[0.0] * 4 for _ in range(per_call)]
    offsets = [0] * per_call
    for i in range(count):
        shim.regions_get(ctypes.c_long(i), values, ctypes.byref(offset))
        row = sums[i % per_call]
        for j in range(4):
            row[j] += values[j]
        offsets[i % per_call] = offset.value
    done = count / per_call
    addresses, names = kernel_names(Path(artifact) / "model.so")
    totals = [sum(r[j] for r in sums) / done for j in range(4)]
    print(f"{artifact}: {elapsed_us:.0f} us per call ({calls} calls), {per_call} parallel regions per call")
    print(f"inside regions {totals[0]:.0f} us; busy: thread 0 {totals[1]:.0f}, thread 1 {totals[2]:.0f} us; "
          f"worker start lag {totals[3]:.0f} us; outside regions (serial) {elapsed_us - totals[0]:.0f} us\n")
    print("| # | kernel | wall us | thread 0 busy | thread 1 busy | start lag |")
    print("|---|---|---|---|---|---|")
    for k, row in enumerate(sums):
        at = bisect.bisect_right(addresses, offsets[k]) - 1
        name = names[at] if at >= 0 and offsets[k] >= 0 else "?"
        print(f"| {k} | {name} | {row[0] / done:.1f} | {row[1] / done:.1f} | {row[2] / done:.1f} | {row[3] / done:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="a compiled artifact directory (tvmopt compile -o)")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    shim = os.environ.get("TVMOPT_REGIONS_SHIM")
    if shim:  # the child, with the shim preloaded
        measure(args.artifact, args.calls, shim)
        return
    path = build_shim()
    try:
        env = dict(os.environ, LD_PRELOAD=str(path), TVMOPT_REGIONS_SHIM=str(path))
        sys.exit(subprocess.run([sys.executable, __file__, str(args.artifact), "--calls", str(args.calls)], env=env).returncode)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

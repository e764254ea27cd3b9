"""TVM's thread pool runs one thread per physical core (TVM's own default is half the hardware
threads on x86), and a TVM_NUM_THREADS the user set wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tvmopt.threads import physical_cores

# The pool size the TVM runtime reports after tvmopt loaded and ran an artifact-free kernel path:
# runtime.NumThreads is what parallel kernels are split over.
PROBE = ("import tvmopt, tvm_ffi\n"
         "from tvmopt.runtime import tvm_runtime\n"
         "tvm_runtime.ffi()\n"
         "print(tvm_ffi.get_global_func('runtime.NumThreads')())\n")


def _pool_size(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def test_pool_uses_every_physical_core():
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    cores = physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert _pool_size(env) == cores


def test_user_thread_count_wins():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["TVM_NUM_THREADS"] = "1"
    assert _pool_size(env) == 1


def test_affinity_limits_the_pool():
    """A process pinned to one CPU (taskset, a container's cpuset) gets one thread, not one per core
    of the host."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("nothing to restrict on a 1-CPU machine")
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    cpu = min(os.sched_getaffinity(0))
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}})\n" + PROBE
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) == 1

"""How many threads TVM's CPU thread pool runs: one per physical core this process may use.

Workaround: when TVM_NUM_THREADS (or OMP_NUM_THREADS) is unset, TVM's runtime sizes its pool as
std::thread::hardware_concurrency() / 2 on x86 (threading_backend.cc, "ignore hyper-threading").
On a machine without SMT, like most small cloud VMs whose vCPUs are whole cores, that is half the
cores: every kernel ran on 1 of 2 cores here while ONNX Runtime used both (ResNet-18 67 ms vs
ORT's 31 ms; the same kernels on 2 threads ran in half the time). tvmopt therefore sets
TVM_NUM_THREADS itself, once, before TVM's pool starts, from the real topology: the physical
cores among the CPUs this process may run on, capped by a cgroup CPU quota. Child processes
(MetaSchedule's measuring workers, server workers) inherit it, so tuning measures kernels with
the thread count they will run with. A value the user set is never overridden.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

ENV = "TVM_NUM_THREADS"
# The value tvmopt itself put into TVM_NUM_THREADS, so that child processes, which inherit both,
# can tell it from a count the user fixed (runtime/adaptive_threads.py varies only tvmopt's).
MARK = "TVMOPT_SET_TVM_NUM_THREADS"
# Captured before tvmopt sets anything: what the user asked for, if anything.
_USER_VALUE = os.environ.get(ENV) or os.environ.get("OMP_NUM_THREADS")


def user_threads() -> int | None:
    """The thread count the user set through TVM_NUM_THREADS / OMP_NUM_THREADS, if any."""
    try:
        return max(1, int(_USER_VALUE)) if _USER_VALUE else None
    except ValueError:
        return None


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (SMT siblings count once), capped by
    the cgroup v2 CPU quota (a container limited to 2 CPUs on a 64-core host gets 2)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))  # no topology (e.g. some containers): count each CPU as a core
    return max(1, min(len(cores), _cgroup_cpu_limit() or len(cores)))


def _cgroup_cpu_limit() -> int | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def default_threads() -> int:
    """Threads tvmopt runs TVM kernels with: the user's TVM_NUM_THREADS, else the physical cores."""
    return user_threads() or physical_cores()


def configure(threads: int | None = None) -> int:
    """Set TVM_NUM_THREADS for this process and its children (before TVM's pool starts) unless the
    user set it; `threads` overrides both (e.g. a server's per-worker share). Returns the count."""
    count = threads or default_threads()
    if threads is not None or user_threads() is None:
        os.environ[ENV] = os.environ[MARK] = str(count)
    return count


def fixed_by_user() -> bool:
    """Whether the user set the thread count (TVM_NUM_THREADS / OMP_NUM_THREADS) rather than tvmopt."""
    value = os.environ.get(ENV) or os.environ.get("OMP_NUM_THREADS")
    return bool(value) and value != os.environ.get(MARK)

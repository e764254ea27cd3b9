"""Zero-trial schedules for int8 GEMM kernels that have no tuning record: still on the dot product.

TVM's default lowering of an unscheduled kernel is a scalar loop nest, so an int8 kernel without
a record would use no int8 instruction at all, and a target that cannot be tuned here (VNNI on
an AVX2 machine, Arm without an RPC device) would never get one. For such kernels we take
MetaSchedule's own design space for the target (the rule set that tensorizes with the target's
dot-product intrinsic: tuning/rules.py), draw seeded samples of it, run the postprocessors, and
keep the first sample that tensorizes and builds. Tuning replaces it with a measured schedule.
"""

from __future__ import annotations

import tvm

from .int8 import GEMM_BLOCK
from .intrinsics import int8_dot_for
from .sampled import schedule_by_samples


def schedule_int8_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tuple[tvm.IRModule, list[str]]:
    """Give every unscheduled int8 GEMM kernel of `mod` a tensorized schedule; returns the module
    and the names of the kernels scheduled here."""
    if int8_dot_for(target) is None:
        return mod, []
    from .passes import register_tensor_intrinsics

    register_tensor_intrinsics(target)
    return schedule_by_samples(mod, target, _has_gemm_block,
                               keep_space=lambda space: "meta_schedule.auto_tensorize" in str(space.trace))


def _has_gemm_block(func) -> bool:
    try:
        tvm.s_tir.Schedule(tvm.IRModule({"main": func})).get_sblock(GEMM_BLOCK)
    except Exception:  # noqa: BLE001 - ScheduleError: no such block
        return False
    return True

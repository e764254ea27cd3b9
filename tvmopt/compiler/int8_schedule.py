"""Zero-trial schedules for int8 GEMM kernels that have no tuning record: still on the dot product.

TVM's default lowering of an unscheduled kernel is a scalar loop nest, so an int8 kernel without
a record would use no int8 instruction at all, and a target that cannot be tuned here (VNNI on
an AVX2 machine, Arm without an RPC device) would never get one. For such kernels we take
MetaSchedule's own design space for the target (the rule set that tensorizes with the target's
dot-product intrinsic: tuning/rules.py), draw seeded samples of it, run the postprocessors, and
keep the first sample that tensorizes and builds. Tuning replaces it with a measured schedule.
"""

from __future__ import annotations

import logging

import tvm

from .._compat import ms
from ..logs.workload import structural_hash
from ..native_output import captured
from .int8 import GEMM_BLOCK
from .intrinsics import int8_dot_for

log = logging.getLogger(__name__)
_SAMPLES = 16


def schedule_int8_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tuple[tvm.IRModule, list[str]]:
    """Give every unscheduled int8 GEMM kernel of `mod` a tensorized schedule; returns the module
    and the names of the kernels scheduled here."""
    if int8_dot_for(target) is None:
        return mod, []
    from .passes import register_tensor_intrinsics

    register_tensor_intrinsics(target)
    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    traces: dict[int, object] = {}  # kernels repeated per layer share one sample
    done = []
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is not None and func.attrs.get("tirx.is_scheduled"):
            continue
        if not _has_gemm_block(func):
            continue
        kernel = normalize(func)
        key = structural_hash(kernel)
        with captured():  # invalid samples make TVM print warnings
            if key not in traces:
                traces[key] = _sample_trace(kernel, target, gv.name_hint)
            trace = traces[key]
            if trace is None:
                log.warning("int8 kernel %s: no tensorized schedule found; it keeps TVM's default lowering",
                            gv.name_hint)
                continue
            sch = tvm.s_tir.Schedule(kernel)
            trace.apply_to_schedule(sch, remove_postproc=False)
        scheduled = sch.mod["main"]
        mod[gv] = tvm.tirx.PrimFunc(scheduled.params, scheduled.body, scheduled.ret_type,
                                    attrs=func.attrs).with_attr("tirx.is_scheduled", True)
        done.append(gv.name_hint)
    return mod, done


def _has_gemm_block(func) -> bool:
    try:
        tvm.s_tir.Schedule(tvm.IRModule({"main": func})).get_sblock(GEMM_BLOCK)
    except Exception:  # noqa: BLE001 - ScheduleError: no such block
        return False
    return True


def _sample_trace(mod: tvm.IRModule, target: tvm.target.Target, name: str):
    """The trace of the first seeded sample of the target's design space that tensorizes and builds."""
    from ..tuning.rules import space_generator

    context = ms.TuneContext(mod=mod, target=target, space_generator=space_generator(target),
                             search_strategy="replay-trace", task_name=name, num_threads=1)
    spaces = [s for s in context.space_generator.generate_design_space(mod)
              if "meta_schedule.auto_tensorize" in str(s.trace)]
    postprocs = context.space_generator.postprocs
    for seed in range(1, _SAMPLES + 1):
        space = spaces[(seed - 1) % len(spaces)] if spaces else None
        if space is None:
            return None
        sch = tvm.s_tir.Schedule(mod, seed=seed)
        try:
            space.trace.apply_to_schedule(sch, remove_postproc=True, decision_provider=_resample)
            if not all(p.apply(sch) for p in postprocs):
                continue
            tvm.compile(sch.mod, target=target)  # a sample can fail to lower (e.g. nested vectorize)
        except Exception:  # noqa: BLE001 - an invalid sample; draw the next
            continue
        return sch.trace
    return None


def _resample(inst, inputs, attrs, decision):
    """Decision provider that drops every recorded decision: the schedule's seed draws new ones."""
    return None

"""Zero-trial schedules drawn from MetaSchedule's design space, for kernels no record or borrowed
trace covers.

TVM's default lowering of an unscheduled kernel is a scalar, single-threaded loop nest. For a
GEMM or a conv that is ruinous: GPT-2's LM head (128 x 768 x 50257), which no kernel of the
shipped logs has the blocks of, took seconds per call. A seeded sample of the target's design
space (the rules and templates tuning uses: multi-level tiling, parallel, vectorize, unroll) is
untuned but uses every core and the vector units. Each design is tried first with moderate tile
splits (_moderate_tiles), then with random ones; the first sample that passes the postprocessors
and builds is kept; tuning replaces it with a measured schedule.
"""

from __future__ import annotations

import logging
from typing import Callable

import tvm

from .._compat import ms
from ..logs.workload import structural_hash
from ..native_output import captured

log = logging.getLogger(__name__)
_SAMPLES = 16


def sample_trace(mod: tvm.IRModule, target: tvm.target.Target, name: str,
                 keep_space: Callable[[object], bool] | None = None):
    """The trace of the first seeded sample of the target's design space for `mod` (a normalized
    one-kernel module) that builds, among the designs `keep_space` accepts; None if none does."""
    from ..tuning.rules import space_generator
    from ..tuning.templates import register

    register()  # tvmopt's schedule templates, for the blocks the compiler marked (GEMMs, convs)
    context = ms.TuneContext(mod=mod, target=target, space_generator=space_generator(target),
                             search_strategy="replay-trace", task_name=name, num_threads=1)
    spaces = [s for s in context.space_generator.generate_design_space(mod) if keep_space is None or keep_space(s)]
    if not spaces:
        return None
    postprocs = context.space_generator.postprocs
    for seed in range(1, _SAMPLES + 1):
        space = spaces[(seed - 1) % len(spaces)]
        sch = tvm.s_tir.Schedule(mod, seed=seed)
        # One pass over the designs with moderate tiles first; then random draws.
        provider = _moderate_tiles(sch) if seed <= len(spaces) else _resample
        try:
            space.trace.apply_to_schedule(sch, remove_postproc=True, decision_provider=provider)
            if not all(p.apply(sch) for p in postprocs):
                continue
            tvm.compile(sch.mod, target=target)  # a sample can fail to lower (e.g. nested vectorize)
        except Exception:  # noqa: BLE001 - an invalid sample; draw the next
            continue
        return sch.trace
    return None


def schedule_by_samples(mod: tvm.IRModule, target: tvm.target.Target, wants: Callable[[object], bool],
                        keep_space: Callable[[object], bool] | None = None,
                        space_target: tvm.target.Target | None = None) -> tuple[tvm.IRModule, list[str]]:
    """Every unscheduled kernel of `mod` that `wants` (its PrimFunc) scheduled by a sample (see
    the module doc); returns the module and the kernels scheduled here. `space_target` (default
    `target`) is the one the design space is made for: MetaSchedule's CPU rules need `num-cores`."""
    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    traces: dict[int, object] = {}  # kernels repeated per layer share one sample
    done = []
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is not None and func.attrs.get("tirx.is_scheduled"):
            continue
        if not wants(func):
            continue
        kernel = normalize(func)
        key = structural_hash(kernel)
        with captured():  # invalid samples make TVM print warnings
            if key not in traces:
                traces[key] = sample_trace(kernel, space_target or target, gv.name_hint, keep_space)
            trace = traces[key]
            if trace is None:
                log.warning("kernel %s: no sampled schedule builds; it keeps TVM's default lowering", gv.name_hint)
                continue
            sch = tvm.s_tir.Schedule(kernel)
            trace.apply_to_schedule(sch, remove_postproc=False)
        scheduled = sch.mod["main"]
        mod[gv] = tvm.tirx.PrimFunc(scheduled.params, scheduled.body, scheduled.ret_type,
                                    attrs=func.attrs).with_attr("tirx.is_scheduled", True)
        done.append(gv.name_hint)
    return mod, done


def _moderate_tiles(sch: tvm.s_tir.Schedule):
    """A decision provider for `sch`: tile splits with a mid-sized inner factor (the largest divisor
    of the extent up to half the rule's limit) and the rest outermost, where the loop is parallel;
    other decisions drawn by the seed. Random draws gave T5's GEMMs inner tiles of 1 (20x slower
    than ORT)."""

    def provide(inst, inputs, attrs, decision):
        if inst.kind.name != "SamplePerfectTile":
            return None
        extent = sch.get(inputs[0]).extent
        if not isinstance(extent, tvm.tirx.IntImm):
            return None
        n, limit = int(attrs[0]), int(attrs[1])
        extent = int(extent)
        cap = max(1, limit // 2) if limit > 0 else 16
        inner = max(d for d in range(1, min(cap, extent) + 1) if extent % d == 0)
        return [extent // inner] + [1] * (n - 2) + [inner] if n >= 2 else [extent]

    return provide


def _resample(inst, inputs, attrs, decision):
    """Decision provider that drops every recorded decision: the schedule's seed draws new ones."""
    return None

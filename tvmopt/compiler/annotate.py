"""Mark the blocks tvmopt has schedule templates for (tuning/templates.py), before fusion.

A marked block carries `schedule_rule` (the template's name, which MetaSchedule's
ApplyCustomRule dispatches on) and `tvmopt.lanes` (floats per vector register on the target).
Convolutions are marked where they are created (layout.py); this pass marks GEMMs: a block that
computes C[..., m, n] += A[..., m, k] * B[..., k, n] with n the innermost output axis, so B's
rows are contiguous along the vectorized axis (constant weights after FoldConstant, and the
attention x V product). A transposed B (Q x K^T) stays with MetaSchedule's generic rules.

A GEMM with few rows and a narrow width that is not a multiple of the lanes (a classifier head of
10 classes at batch 1) gets the GEMV template instead, vectorized along k.

After fusion, a marked block whose epilogue is a DAG (GELU, SiLU) is marked again
(mark_dag_epilogues).
"""

from __future__ import annotations

import math

import tvm

from .._compat import region_buffers

DENSE = "tvmopt_dense"
GEMV = "tvmopt_gemv"
# A GEMM with at most this many rows (all batch dims included) is a matrix-vector product.
GEMV_ROWS = 4
# ... and the GEMV template wins below this many vectors of width: a 1280 x 1000 head ran 39 us
# with it, 28 with MetaSchedule's generic tiling along n (512 x 1000: 12.8 both; 1024 x 10:
# 0.56 against 1.10; 8192 x 10: 2.6 against 4.7; AVX-512, this 2-core Zen 4).
GEMV_MAX_WIDTH_VECTORS = 4
# The dense template needs a register tile of a few accumulators: a 1 x 512 by 512 x 1000 head on
# AVX2 (125 vectors wide, no divisor up to 4) got one, a serial chain of FMAs: 104 us, its only
# candidate, against 13 us from MetaSchedule's generic tiling.
MIN_ACCUMULATORS = 2


def mark_gemms(lanes: int) -> tvm.transform.Pass:
    """Annotate GEMM-shaped single-block PrimFuncs for the dense or the GEMV template."""

    @tvm.transform.module_pass(opt_level=0, name="MarkGemms")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gv, func in list(mod.functions.items()):
            if isinstance(func, tvm.tirx.PrimFunc):
                marked = _mark(func, lanes)
                if marked is not None:
                    mod[gv] = marked
        return mod

    return transform


# Templates before this attribute left a DAG epilogue unscheduled (a serial loop after the parallel
# kernel); its records' traces replay that schedule. The attribute is part of the workload, so those
# records stop applying and such kernels are tuned again (tuning/templates.py: epilogue_plan).
DAG_EPILOGUE = "tvmopt.epilogue"


def mark_dag_epilogues() -> tvm.transform.Pass:
    """Mark each templated block of a fused kernel whose epilogue the templates inline as a DAG."""

    @tvm.transform.module_pass(opt_level=0, name="MarkDagEpilogues")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        from ..tuning.templates import ANNOTATION, EPILOGUE_TEMPLATES, epilogue_plan

        for gv, func in list(mod.functions.items()):
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            sch = tvm.s_tir.Schedule(func)
            if not _has_root(sch):
                continue
            for block in sch.get_child_blocks(sch.get_sblock("root")):
                rule = sch.get(block).annotations.get(ANNOTATION)
                if rule is not None and str(rule) in EPILOGUE_TEMPLATES and epilogue_plan(sch, block)[2]:
                    sch.annotate(block, DAG_EPILOGUE, "dag")
                    mod[gv] = sch.mod["main"]
                    break
        return mod

    return transform


def _mark(func, lanes: int):
    sch = tvm.s_tir.Schedule(func)
    blocks = [b for b in sch.get_child_blocks(sch.get_sblock("root"))] if _has_root(sch) else []
    kinds = [(b, _gemm_kind(sch.get(b), lanes)) for b in blocks]
    gemms = [(b, kind) for b, kind in kinds if kind is not None]
    if len(gemms) != 1:
        return None
    sch.annotate(gemms[0][0], "schedule_rule", gemms[0][1])
    sch.annotate(gemms[0][0], "tvmopt.lanes", lanes)
    return sch.mod["main"]


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001 - a PrimFunc without a root block (already lowered)
        return False


def _gemm_kind(block, lanes: int) -> str | None:
    """DENSE for C[.., m, n] += A[.., m, k] * B[.., k, n] with n divisible by the vector lanes;
    GEMV for one with at most GEMV_ROWS rows, another narrow n and k divisible by the lanes;
    else None (MetaSchedule's generic rules)."""
    if not _is_nn_gemm(block):
        return None
    *rows, width, depth = (_static(iv.dom.extent) for iv in block.iter_vars)
    if width is None:
        return None  # a symbolic width (dynamic shapes) is left to MetaSchedule's default rules
    if width % lanes == 0 and _register_tile(rows, width // lanes) >= MIN_ACCUMULATORS:
        return DENSE
    if (None not in rows and math.prod(rows) <= GEMV_ROWS and width < GEMV_MAX_WIDTH_VECTORS * lanes
            and depth is not None and depth % lanes == 0):
        return GEMV
    return None


def _register_tile(rows: list[int | None], vectors: int) -> int:
    """The most accumulators the dense template's register tile can hold for this GEMM: it takes
    a divisor of the rows (up to MAX_COLUMNS) times a divisor of the width's vectors (up to
    MAX_CHANNEL_VECTORS)."""
    from ..tuning.templates import MAX_CHANNEL_VECTORS, MAX_COLUMNS

    height = math.prod(rows) if None not in rows else MAX_COLUMNS
    best_rows = max(d for d in range(1, MAX_COLUMNS + 1) if height % d == 0)
    return best_rows * max(d for d in range(1, MAX_CHANNEL_VECTORS + 1) if vectors % d == 0)


def _static(extent) -> int | None:
    return int(extent) if isinstance(extent, tvm.tirx.IntImm) else None


def _is_nn_gemm(block) -> bool:
    """C[.., m, n] = C[.., m, n] + A[.., m, k] * B[.., k, n] in floating point."""
    written = region_buffers(block.writes)
    if not all("float" in str(buffer.dtype) for buffer in written):
        return False  # int8 GEMMs are tensorized by tuning/rules.py, not by the fp32 template
    iters = list(block.iter_vars)
    if len(iters) < 3 or int(iters[-1].iter_type) != 2 or any(int(iv.iter_type) != 0 for iv in iters[:-1]):
        return False
    m, n, k = iters[-3].var, iters[-2].var, iters[-1].var
    value = getattr(block.body, "value", None)
    if type(value).__name__ != "Add":
        return False
    product = value.b if type(value.b).__name__ == "Mul" else value.a if type(value.a).__name__ == "Mul" else None
    if product is None:
        return False
    loads = [_strip_cast(product.a), _strip_cast(product.b)]
    if not all(type(x).__name__ in ("BufferLoad", "TensorLoad") and len(x.indices) >= 2 for x in loads):
        return False
    a, b = loads
    return (_is(a.indices[-2], m) and _is(a.indices[-1], k) and _is(b.indices[-2], k) and _is(b.indices[-1], n))


def _strip_cast(expr):
    while type(expr).__name__ == "Cast":
        expr = expr.value
    return expr


def _is(index, var) -> bool:
    return isinstance(index, tvm.tirx.Var) and index.same_as(var)



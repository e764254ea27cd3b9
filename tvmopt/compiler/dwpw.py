"""A depthwise conv fused into the 1x1 conv that consumes it (MobileNet's inverted residual blocks).

A MobileNetV2 block is expand 1x1 -> depthwise 3x3 (+ bias, ReLU6) -> project 1x1. The depthwise
output is the block's widest tensor (6x the channels); as two kernels it is written to memory by
one and read back by the other. Fused, each output row of the 1x1 conv first computes the
depthwise row it needs (all channels, a few KB, in L1/L2) and reduces over it at once: the
tensor never leaves the cache, and one parallel launch of two goes away.

`fuse_depthwise_pointwise` rewrites the Relax graph (blocked layouts, before legalization):
    conv2d_1x1(clip(add(conv2d_depthwise(x, w_dw), b_dw)), w_pw)
into one call_tir of `depthwise_pointwise`, marked for the tuning/templates.py template of the
same name; the 1x1 conv's bias and residual add then fuse after it as after any conv.
"""

from __future__ import annotations

import tvm
from tvm import relax, te, topi

from .reorders import _is_op

# Output rows the fused kernel needs: its parallel loop runs over rows (the depthwise row is
# shared by all output channels), and 7 rows on 2 threads leave one idle for 1/7 of the time.
MIN_ROWS = 14
OUT_EWISE_FUSABLE = 4  # relax's OpPatternKind kOutEWiseFusable: bias and residual adds fuse after it


def depthwise_pointwise(data: te.Tensor, w_dw: te.Tensor, b_dw: te.Tensor | None, w_pw: te.Tensor, strides,
                        padding, clip: tuple[float | None, float | None]) -> te.Tensor:
    """out[n, k/o, y, x, o] = sum_c act(dw(data)[n, c/i, y, x, c%i]) * w_pw[k/o, c/i, 0, 0, c%i, o],
    dw the depthwise conv (w_dw [C/i, 1, KH, KW, 1, i]) plus b_dw, act the clip (lo, hi)."""
    from ..tuning.templates import ANNOTATION, DEPTHWISE_POINTWISE
    from .layout import _depthwise_nchwc

    dw = _depthwise_nchwc(data, w_dw, strides, padding, (1, 1), data.dtype, templates=False)
    if b_dw is not None:
        dw = topi.add(dw, b_dw)
    lo, hi = clip
    if lo is not None:
        dw = topi.maximum(dw, tvm.tirx.const(lo, data.dtype))
    if hi is not None:
        dw = topi.minimum(dw, tvm.tirx.const(hi, data.dtype))
    n, ic_chunk, out_h, out_w, ic_bn = (int(d) for d in dw.shape)
    oc_chunk, _, _, _, _, oc_bn = (int(d) for d in w_pw.shape)
    ic = te.reduce_axis((0, ic_chunk * ic_bn), name="ic")
    return te.compute(
        (n, oc_chunk, out_h, out_w, oc_bn),
        lambda b, oc, y, x, ob: te.sum(dw[b, ic // ic_bn, y, x, ic % ic_bn] * w_pw[oc, ic // ic_bn, 0, 0, ic % ic_bn, ob],
                                       axis=[ic]),
        name="pointwise_NCHWc",
        attrs={ANNOTATION: DEPTHWISE_POINTWISE},
    )


def fuse_depthwise_pointwise() -> tvm.transform.Pass:
    """The Relax rewrite (see the module docstring). Each intermediate of the chain must have no
    other user; anything else stays two kernels."""

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, mod: tvm.IRModule, values: dict, uses: dict):
            super().__init__(mod)
            self.values, self.uses = values, uses

        def visit_call_(self, call: relax.Call) -> relax.Expr:
            match = _match(call, self.values, self.uses)
            if match is None:
                return super().visit_call_(call)
            x, w_dw, b_dw, attrs, clip, w_pw = match
            args = [self.visit_expr(e) for e in (x, w_dw, *([b_dw] if b_dw is not None else []), w_pw)]

            def compute(x, w_dw, *rest):
                b, w = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
                return depthwise_pointwise(x, w_dw, b, w, attrs.strides, attrs.padding, clip)

            return self.builder_.call_te(compute, *args, primfunc_name_hint="depthwise_pointwise",
                                         primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE})

    @tvm.transform.module_pass(opt_level=0, name="FuseDepthwisePointwise")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                rewriter = Rewriter(mod, relax.analysis.get_var2val(func), _use_counts(func))
                rewritten = rewriter.visit_expr(func)
                mod = rewriter.builder_.get()  # holds the new PrimFuncs
                mod[gv] = rewritten
        return relax.transform.DeadCodeElimination()(mod)

    return transform


def _use_counts(func: relax.Function) -> dict:
    """Var -> how many bindings (and the function's result) read it."""
    counts: dict = {}
    body = func.body
    values = [b.value for block in body.blocks for b in block.bindings] + [body.body]
    for value in values:
        for var in relax.analysis.free_vars(value):
            counts[var] = counts.get(var, 0) + 1
    return counts


def _blocked(conv: relax.Call) -> bool:
    """A conv in NCHW{b}c with static shapes (5-D data, 6-D kernel)."""
    from .layout import static_shapes

    shapes = [conv.args[0].ty.shape, conv.args[1].ty.shape, conv.ty.shape]
    return static_shapes(shapes) and len(shapes[0].values) == 5 and len(shapes[1].values) == 6


def _scalar(expr) -> float | None:
    if isinstance(expr, tvm.ir.expr.Constant) and expr.value.numpy().size == 1:  # 0.27: tvm.ir constants, .value
        return float(expr.value.numpy().reshape(()))
    return None


def _match(call: relax.Call, values: dict, uses: dict):
    """(x, w_dw, b_dw | None, dw attrs, (lo, hi), w_pw) when `call` is a 1x1 conv over a depthwise
    conv's (+ bias, clip) output that nothing else reads; None otherwise."""
    if not _is_op(call, "relax.nn.conv2d") or not _blocked(call):
        return None
    pw = call.attrs
    if int(pw.groups) != 1 or [int(s) for s in pw.strides] != [1, 1] or any(int(p) for p in pw.padding):
        return None
    w_pw_shape = call.args[1].ty.shape
    if w_pw_shape is None or [int(d) for d in w_pw_shape.values[2:4]] != [1, 1] or str(call.ty.dtype) != "float32":
        return None
    node, lo, hi, b_dw = call.args[0], None, None, None

    def producer(var, op_name):
        if not isinstance(var, relax.Var) or uses.get(var, 0) != 1 or var not in values:
            return None
        value = values[var]
        return value if _is_op(value, op_name) else None

    if (m := producer(node, "relax.minimum")) is not None and _scalar(m.args[1]) is not None:
        hi, node = _scalar(m.args[1]), m.args[0]
    if (m := producer(node, "relax.maximum")) is not None and _scalar(m.args[1]) is not None:
        lo, node = _scalar(m.args[1]), m.args[0]
    if (m := producer(node, "relax.add")) is not None:
        bias_shape = m.args[1].ty.shape
        if bias_shape is None or any(int(d) != 1 for i, d in enumerate(bias_shape.values) if i not in (1, 4)):
            return None
        b_dw, node = m.args[1], m.args[0]
    dw = producer(node, "relax.nn.conv2d")
    if dw is None or not _blocked(dw) or [int(d) for d in dw.attrs.dilation] != [1, 1]:
        return None
    data_shape = dw.args[0].ty.shape
    channels = int(data_shape.values[1]) * int(data_shape.values[4]) if data_shape is not None else -1
    out_channels = int(dw.ty.shape.values[1]) * int(dw.ty.shape.values[4])
    if int(dw.attrs.groups) != channels or out_channels != channels or channels < 2 or str(dw.ty.dtype) != "float32":
        return None  # a depthwise conv with one filter per channel only (no channel multiplier)
    if int(call.ty.shape.values[0]) * int(call.ty.shape.values[2]) < MIN_ROWS:
        return None
    return dw.args[0], dw.args[1], b_dw, dw.attrs, (lo, hi), call.args[1]

"""Blocked (NCHWc) layouts for convolutions on CPUs, as ONNX Runtime's NchwcTransformer does.

A conv in NCHW{b}c with weights in OIHW{i}i{b}o reads its b output channels as one vector
register and its weights contiguously; the block follows the vector width (16 floats on
AVX-512, 8 on AVX2, 4 on NEON). Relax's ConvertLayout propagates the blocked layout through
element-wise ops, decomposed batch norm and the pools, so only the graph's entry and exit
(and ops without a layout rule, e.g. flatten) reorder; the weights' reorder is a constant that
FoldConstant packs once at compile time.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax, te, topi
from tvm.target import codegen


@dataclass(frozen=True)
class LayoutDecision:
    """What happened to one conv2d (for `tvmopt inspect`)."""

    name: str
    shape: str  # data and weight shapes, NCHW / OIHW
    layout: str  # the data layout chosen (NCHW = left as is)
    reason: str = ""


def block_size(target: tvm.target.Target) -> int | None:
    """The channel block for this CPU target (floats per vector register), or None (not a CPU)."""
    if target.kind.name != "llvm":
        return None
    with target:
        if codegen.target_has_features("avx512f"):
            return 16
        if codegen.target_has_features("avx2") or codegen.target_has_features("avx"):
            return 8
        if codegen.target_has_features("neon") or str(target.attrs.get("mtriple", "")).startswith("aarch64"):
            return 4
    return None


def channel_block(channels: int, block: int) -> int | None:
    """The block for a conv's channels: the target's, else half of it (a narrower vector, e.g. 24
    channels as 3 x 8 on AVX-512, where they would otherwise stay NCHW with a reorder on each side),
    else None."""
    for candidate in (block, block // 2):
        if candidate >= 4 and channels % candidate == 0:
            return candidate
    return None


def conv_layouts(call: relax.Call, block: int) -> tuple[list[str] | None, str]:
    """The [data, weight, output] layouts for one NCHW conv2d, or (None, why not)."""
    attrs = call.attrs
    if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
        return None, f"layout {attrs.data_layout}/{attrs.kernel_layout} is not NCHW/OIHW"
    data, weight = (arg.ty for arg in call.args[:2])
    shapes = [getattr(t, "shape", None) for t in (data, weight)]
    if any(s is None or not all(isinstance(d, tvm.tirx.IntImm) for d in s.values) for s in shapes):
        return None, "dynamic shape"
    cin = int(shapes[0].values[1])
    cout = int(shapes[1].values[0])
    groups = int(attrs.groups)
    oc_bn = channel_block(cout, block)
    if oc_bn is None:
        return None, f"{cout} output channels are not a multiple of {block} or {block // 2}"
    if groups == 1:
        # Input blocks follow the producer's output block (no reorder between them). Channels
        # that fit no block (the stem's 3) are read as NCHW1c, which is NCHW itself: no reorder
        # of the input image (reorders.py makes that transform a view); the template broadcasts
        # one input value at a time whatever the block, so the kernel loses nothing.
        ic_bn = channel_block(cin, block) or 1
        return [f"NCHW{ic_bn}c", f"OIHW{ic_bn}i{oc_bn}o", f"NCHW{oc_bn}c"], ""
    if groups == cin == cout:  # depthwise
        return [f"NCHW{oc_bn}c", f"OIHW1i{oc_bn}o", f"NCHW{oc_bn}c"], ""
    return None, f"grouped conv ({groups} groups) stays NCHW"


def to_blocked_layout(block: int) -> tvm.transform.Pass:
    """ConvertLayout with conv2d -> NCHW{block}c (see conv_layouts), other ops following."""

    def layout_cb(call: relax.Call):
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.conv2d":
            layouts, _ = conv_layouts(call, block)
            # A conv left out is asked for NCHW explicitly. Workaround: with no desired layout,
            # InferLayoutConv2d propagates its (blocked, 5-D) input layout into its 4-D attrs and
            # fails in TransposeLike ("Layouts must have the same size").
            return {"relax.nn.conv2d": layouts or ["NCHW", "OIHW", "NCHW"]}
        return {}

    convert = relax.transform.ConvertLayout({}, layout_cb)

    @tvm.transform.module_pass(opt_level=0, name="ToBlockedLayout")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        if not _has_conv2d(mod):
            return mod  # nothing to block; and ConvertLayout walks every op (see below)
        try:
            return convert(mod)
        except Exception:  # noqa: BLE001 - 0.27 raises FFI errors as builtin types (tvm.error has no TVMError)
            # Workaround: ConvertLayout's per-op layout inference fails on some graphs that have
            # nothing to do with convolutions ("tvm::String index out of bounds" on an ONNX GRU
            # unrolled by frontends/recurrent.py). The convolutions then stay NCHW: correct,
            # just without the blocked kernels.
            return mod

    return apply


def _has_conv2d(mod: tvm.IRModule) -> bool:
    found = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.nn.conv2d":
            found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
            if found:
                return True
    return False


def legalize_blocked_conv2d(bb: relax.BlockBuilder, call: relax.Call, templates: bool = True,
                            winograd: bool = True) -> relax.Expr:
    """LegalizeOps for conv2d: blocked layouts get TOPI's conv2d_NCHWc, our depthwise compute, or
    (3x3 stride 1, where it pays, `winograd`) Winograd F(4x4, 3x3) or F(2x2, 3x3) (compiler/winograd.py).

    Workaround: Relax's default conv2d legalization leaves 5-D layouts unlegalized, and TOPI's
    grouped conv2d_NCHWc divides by oc_chunk // groups (zero for depthwise convs), while
    topi.nn.depthwise_conv2d_NCHWc needs a registered strategy ("missing register").
    """
    attrs = call.attrs
    if len(attrs.data_layout) == 4:
        from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

        return _nn_conv2d(bb, call)
    out_dtype = str(attrs.out_dtype) if str(attrs.out_dtype) not in ("", "void", "None") else str(call.ty.dtype)
    data, weight = call.args
    args = (data, weight, attrs.strides, attrs.padding, attrs.dilation, out_dtype, templates)
    tile = _winograd_tile(bb, call) if winograd and templates and out_dtype == "float32" else 0
    if tile:
        from . import winograd as wino

        u = bb.emit_te(wino.transform_weight, weight, tile, primfunc_name_hint="winograd_weight")  # folded at compile time
        # Opaque to FuseOps: fused with the previous layer's output transform (both injective), the
        # generic rules recomputed that transform per input tile (734 us against ~100 alone, ResNet-18).
        v = bb.emit_te(wino.transform_input, data, attrs.padding, tile, primfunc_name_hint="winograd_input",
                       primfunc_attrs={"op_pattern": OPAQUE})
        m = bb.emit_te(wino.batched_gemm, v, u, primfunc_name_hint="winograd_gemm")
        return bb.call_te(wino.transform_output, m, [int(d) for d in call.ty.shape],
                          primfunc_name_hint="winograd_output")
    if int(attrs.groups) == 1:
        return bb.call_te(_conv2d_nchwc, *args, primfunc_name_hint="conv2d_NCHWc")
    return bb.call_te(_depthwise_nchwc, *args, primfunc_name_hint="depthwise_conv2d_NCHWc")


# A template whose schedule changed shape gets a new version here: the block attribute is part of
# the workload, so a log's records of the old shape (their traces replay the old schedule, and
# tuning measures kernels alone, where the change may not show) stop applying. 2: the depthwise
# template pads per row tile instead of copying the whole padded input first.
TEMPLATE_VERSIONS = {"tvmopt_depthwise_nchwc": 2}


def _template(name: str, enabled: bool) -> dict:
    """Block attributes that route the block to tvmopt's schedule template `name`."""
    if not enabled:
        return {}
    version = TEMPLATE_VERSIONS.get(name)
    return {"schedule_rule": name, **({"tvmopt.template_version": version} if version else {})}


def _padded(data: te.Tensor, padding) -> te.Tensor:
    top, left, bottom, right = (int(p) for p in padding)
    if not (top or left or bottom or right):
        return data
    return topi.nn.pad(data, (0, 0, top, left, 0), (0, 0, bottom, right, 0), name="data_pad")


OPAQUE = 8  # relax's OpPatternKind kOpaque: FuseOps leaves the kernel alone (AnnotateTIROpPattern keeps a set one)


def _winograd_tile(bb: relax.BlockBuilder, call: relax.Call) -> int:
    """The Winograd output tile (compiler/winograd.py: tile_size) for a blocked conv, 0 for a direct one."""
    from .winograd import tile_size

    data, weight = call.args
    attrs = call.attrs
    shapes = [data.ty.shape, weight.ty.shape]
    if not static_shapes(shapes):
        return 0  # symbolic dims: the direct conv
    if not _constant(bb, weight):
        return 0  # the transformed weight must be a constant, computed once at compile time
    dtypes = {str(data.ty.dtype), str(weight.ty.dtype)}
    return tile_size(shapes[0].values, shapes[1].values, attrs.strides, attrs.padding, attrs.dilation,
                     int(attrs.groups), dtypes.pop() if len(dtypes) == 1 else "mixed")


def static_shapes(shapes) -> bool:
    """Every shape known and made of constants (no symbolic dims)."""
    return all(s is not None and all(isinstance(d, tvm.tirx.IntImm) for d in s.values) for s in shapes)


def _constant(bb: relax.BlockBuilder, expr: relax.Expr, depth: int = 4) -> bool:
    """A constant, or computed from constants only (the blocked weight is layout_transform(constant)
    until FoldConstant runs again after legalization)."""
    if isinstance(expr, tvm.ir.expr.Constant):
        return True
    if isinstance(expr, relax.Tuple):
        return all(_constant(bb, field, depth) for field in expr.fields)
    if isinstance(expr, relax.Var) and depth > 0:
        bound = bb.lookup_binding(expr)
        if isinstance(bound, relax.Call):
            args = [a for a in bound.args if not isinstance(a, (relax.GlobalVar, relax.ExternFunc))]
            return bool(args) and all(_constant(bb, a, depth - 1) for a in args)
    return False


def _out_size(size: int, kernel: int, before: int, after: int, stride: int, dilation: int) -> int:
    return (size + before + after - (kernel - 1) * dilation - 1) // stride + 1


def _geometry(data: te.Tensor, kernel: te.Tensor, strides, padding, dilation):
    """Strides, dilations and output (height, width) of a blocked conv (data [N, C, H, W, c],
    kernel [., ., KH, KW, ., .], padding (top, left, bottom, right))."""
    height, width = (int(d) for d in data.shape[2:4])
    kh_size, kw_size = (int(d) for d in kernel.shape[2:4])
    (sh, sw), (dh, dw) = (int(s) for s in strides), (int(d) for d in dilation)
    top, left, bottom, right = (int(p) for p in padding)
    out = (_out_size(height, kh_size, top, bottom, sh, dh), _out_size(width, kw_size, left, right, sw, dw))
    return (sh, sw), (dh, dw), out


def _conv2d_nchwc(data: te.Tensor, kernel: te.Tensor, strides, padding, dilation, out_dtype: str,
                  templates: bool = True) -> te.Tensor:
    """conv2d: data [N, C/i, H, W, i], kernel [O/o, C/i, KH, KW, i, o] -> [N, O/o, OH, OW, o].

    TOPI's conv2d_NCHWc compute (groups=1), marked for tvmopt's conv template (tuning/templates.py).
    """
    n, ic_chunk, _, _, ic_bn = (int(d) for d in data.shape)
    oc_chunk, _, kh_size, kw_size, _, oc_bn = (int(d) for d in kernel.shape)
    (sh, sw), (dh, dw), (out_h, out_w) = _geometry(data, kernel, strides, padding, dilation)
    padded = _padded(data, padding)
    ic = te.reduce_axis((0, ic_chunk * ic_bn), name="ic")
    kh = te.reduce_axis((0, kh_size), name="kh")
    kw = te.reduce_axis((0, kw_size), name="kw")
    return te.compute(
        (n, oc_chunk, out_h, out_w, oc_bn),
        lambda b, oc, y, x, ob: te.sum(
            padded[b, ic // ic_bn, y * sh + kh * dh, x * sw + kw * dw, ic % ic_bn].astype(out_dtype)
            * kernel[oc, ic // ic_bn, kh, kw, ic % ic_bn, ob].astype(out_dtype),
            axis=[ic, kh, kw],
        ),
        name="conv2d_NCHWc",
        attrs=_template("tvmopt_conv2d_nchwc", templates),
    )


def _depthwise_nchwc(data: te.Tensor, kernel: te.Tensor, strides, padding, dilation, out_dtype: str,
                     templates: bool = True) -> te.Tensor:
    """Depthwise conv: data [N, C/b, H, W, b], kernel [C/b, 1, KH, KW, 1, b] -> [N, C/b, OH, OW, b]."""
    n, c_chunk, _, _, block = (int(d) for d in data.shape)
    kh_size, kw_size = (int(d) for d in kernel.shape[2:4])
    (sh, sw), (dh, dw), (out_h, out_w) = _geometry(data, kernel, strides, padding, dilation)
    padded = _padded(data, padding)
    kh = te.reduce_axis((0, kh_size), name="kh")
    kw = te.reduce_axis((0, kw_size), name="kw")
    return te.compute(
        (n, c_chunk, out_h, out_w, block),
        lambda b, c, y, x, cb: te.sum(
            padded[b, c, y * sh + kh * dh, x * sw + kw * dw, cb].astype(out_dtype)
            * kernel[c, 0, kh, kw, 0, cb].astype(out_dtype),
            axis=[kh, kw],
        ),
        name="depthwise_conv2d_NCHWc",
        attrs=_template("tvmopt_depthwise_nchwc", templates),
    )


def clip_to_min_max() -> tvm.transform.Pass:
    """Turn element-wise max/min against a scalar, emitted as call_tir, into relax.maximum/minimum.

    Workaround: TVM's ONNX importer emits Clip (ReLU6 in MobileNets) as call_tir of
    topi.maximum/minimum, and a call_tir has no layout rule, so ConvertLayout reorders back to
    NCHW around every ReLU6. relax.maximum/minimum with a scalar propagate the layout. Run after
    FoldConstant: the importer wraps the bound in where(isnan(bound), inf, bound).
    """

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def __init__(self, mod: tvm.IRModule):
            super().__init__(mod)
            self.mod_ = mod

        def visit_call_(self, call: relax.Call) -> relax.Expr:
            call = super().visit_call_(call)
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.call_tir"):
                return call
            callee, args = call.args[0], call.args[1].fields
            if not isinstance(callee, relax.GlobalVar):
                return call
            found = _scalar_max_min(self.mod_[callee], len(args))
            if found is None:
                return call
            op, bound = found
            x = args[0]
            if bound is None:  # the scalar is the call's second argument (a 0-d tensor)
                bound = args[1]
            else:
                bound = relax.const(bound, x.ty.dtype)
            return relax.op.maximum(x, bound) if op == "max" else relax.op.minimum(x, bound)

    @tvm.transform.module_pass(opt_level=0, name="ClipToMinMax")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = Rewriter(mod)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function):
                mod[gv] = rewriter.visit_expr(func)
        return relax.transform.DeadCodeElimination()(mod)

    return transform


def _scalar_max_min(func, num_args: int) -> tuple[str, float | None] | None:
    """("max" | "min", c) when a PrimFunc only computes out[i] = max/min(in[i], c) with c an
    immediate, ("max" | "min", None) when c is a 0-d second input; None for anything else."""
    if not isinstance(func, tvm.tirx.PrimFunc) or len(func.params) != num_args + 1 or num_args not in (1, 2):
        return None
    import tvm_ffi

    stores: list = []
    tvm_ffi.structural_walk(func.body, (tvm.tirx.BufferStore, stores.append))
    if len(stores) != 1:
        return None
    value = stores[0].value
    kind = "max" if isinstance(value, tvm.tirx.Max) else "min" if isinstance(value, tvm.tirx.Min) else None
    if kind is None:
        return None
    # TVM 0.27: a PrimFunc's params are its buffers (there is no buffer_map)
    x_buffer = func.params[0]
    scalar_buffer = func.params[1] if num_args == 2 else None
    operands = [value.a, value.b]
    loads = [o for o in operands if _loads_from(o, x_buffer)]
    if len(loads) != 1 or list(map(str, loads[0].indices)) != list(map(str, stores[0].indices)):
        return None
    other = operands[1] if operands[0] is loads[0] else operands[0]
    if scalar_buffer is None and isinstance(other, (tvm.tirx.FloatImm, tvm.tirx.IntImm)):
        return kind, float(other.value)
    if scalar_buffer is not None and _loads_from(other, scalar_buffer) and len(other.indices) == 0:
        return kind, None
    return None


def _loads_from(expr, buffer) -> bool:
    """Whether `expr` is a load of `buffer` (TVM 0.27 calls it TensorLoad, with `.source`)."""
    if type(expr).__name__ not in ("BufferLoad", "TensorLoad"):
        return False
    source = getattr(expr, "buffer", None) or getattr(expr, "source", None)
    return source is not None and source.same_as(buffer)


def layout_decisions(mod: tvm.IRModule, block: int | None) -> list[LayoutDecision]:
    """For `tvmopt inspect`: which convs go blocked, which stay NCHW and why."""
    out: list[LayoutDecision] = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.nn.conv2d":
            data, weight = (arg.ty for arg in expr.args[:2])
            shape = f"{_fmt(data)} * {_fmt(weight)}"
            if block is None:
                out.append(LayoutDecision(f"conv2d#{len(out)}", shape, "NCHW", "target has no vector block"))
                return
            layouts, why = conv_layouts(expr, block)
            out.append(LayoutDecision(f"conv2d#{len(out)}", shape, layouts[0] if layouts else "NCHW", why))

    for _, func in mod.functions.items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return out


def _fmt(ty) -> str:
    shape = getattr(ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return "?"
    return "x".join(str(int(d)) if isinstance(d, tvm.tirx.IntImm) else str(d) for d in shape.values)

"""Int8 matrix products on the CPU's dot-product instructions: a Relax rewrite before fusion.

TVM's ONNX frontend widens MatMulInteger to an int32 x int32 matmul (and constant folding then
stores the int8 weights as int32), and imports a QDQ DequantizeLinear -> MatMul/Gemm as an fp32
matmul on dequantized weights: either way no int8 instruction can apply. This pass finds

    matmul(astype(A, int32) - za, W)                    (MatMulInteger; W an int constant)
    matmul(dequantize(A, sa, za), [permute_dims] dequantize(Wq, sw, zw))      (QDQ MatMul, Gemm)

with A uint8/int8 activations and W a constant of int8 range, and computes the product as

    P = int8_gemm(A', Wp)       A' in the kernel's dtype, Wp = the weights packed [N/L, K/4, L, 4]
    C = P - c[n] * rowsum(A') - za' * colsum(Wz)[n]      (exactly the int32 MatMulInteger result)

where Wz = W - zw, A = A' + s (s = 0 or +-128 to reach the kernel's activation dtype), za' = za - s,
and c[n] a per-column offset that brings Wz into the kernel's weight range (0 for the symmetric
int8 weights ONNX Runtime writes). The packed layout makes every [L, 4] weight tile contiguous, as
the tensor intrinsics (intrinsics.py) load it; MetaSchedule tensorizes the `int8_gemm` block.

Saturating kernels (AVX2 / AVX-512 without VNNI: vpmaddubsw) are used only when no pair of
weights can overflow int16 (255 * (|w0| + |w1|) <= 32767), i.e. 7-bit weights (`reduce_range`);
other weights keep TVM's exact int32 lowering on those targets.

Quantized graphs carry a scale and zero point per layer as scalar constants. Legalization inlines
0-dim constants into the kernels as immediates, which made every layer's GEMM (and quantize)
kernel a structurally different tuning task (BERT-4 int8: 50 tasks instead of 30). We hand
those constants over as data instead (`reshape(const[1], [])`, which legalization sees as a
variable and constant folding turns into a kernel argument), in quantize / dequantize and in
products of two scalars (ONNX Runtime's `x_scale * w_scale`); passes.fuse does it once more
after the blocked-layout step's FoldConstant, which folds them back (pass_scalars_as_data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from .intrinsics import Int8Dot, int8_dot_for

GEMM_BLOCK = "tvmopt_int8_gemm"  # block name of the rewritten product (int8_schedule.py finds it)
_INT16_MAX = 32767


def _op(name: str):
    return tvm.ir.Op.get(name)


@dataclass(frozen=True)
class _Match:
    """One int8 product found in the graph."""

    a: relax.Expr  # the int8/uint8 activations, [..., K]
    za: relax.Expr | int  # their zero point (int32 scalar expression, or 0)
    wz: np.ndarray  # exact zero-point-subtracted weights, int64 [K, N]
    scale: relax.Expr | None  # QDQ: fp32 scale of the result (sa * sw), else None (int32 result)


def lower_int8_matmuls(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Rewrite int8 matmuls of `main` onto the target's int8 dot product (if it has one), and pass
    per-layer quantization scalars as data; an fp32 graph comes back unchanged."""
    return _rewrite(mod, int8_dot_for(target))


def pass_scalars_as_data(mod: tvm.IRModule) -> tvm.IRModule:
    """Pass per-layer quantization scalars as data again, after a FoldConstant (the blocked-layout
    step runs one before legalization) folded `reshape(const[1], [])` back into 0-dim constants."""
    return _rewrite(mod, None)


def _rewrite(mod: tvm.IRModule, dot: Int8Dot | None) -> tvm.IRModule:
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        return mod
    func = mod["main"]
    if not isinstance(func, relax.Function):
        return mod
    rewriter = _Rewriter(mod, dot)
    new_func = rewriter.visit_expr(func)
    if not rewriter.rewritten and not rewriter.lifted:
        return mod
    new_func = relax.analysis.remove_all_unused(new_func)
    mod = tvm.IRModule(dict(rewriter.builder_.get().functions_items()), attrs=mod.attrs)
    mod["main"] = new_func
    return mod


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, dot: Int8Dot | None):
        super().__init__(mod)
        self.dot = dot
        self.rewritten = 0
        self.lifted = 0
        self.bindings: dict = {}

    def visit_var_binding_(self, binding) -> None:
        self.bindings[binding.var] = binding.value
        super().visit_var_binding_(binding)

    def visit_call_(self, call):
        if self.dot is not None and call.op.same_as(_op("relax.matmul")):
            match = _match(call, self.bindings)
            if match is not None:
                plan = _plan(match.wz, self.dot)
                if plan is not None:
                    self.rewritten += 1
                    return self._emit(match, *plan)
        if _holds_per_layer_scalars(call):
            args = [self._as_data(arg) if _is_scalar_const(arg) else self.visit_expr(arg) for arg in call.args]
            return tvm.ir.Call(call.op, args, call.attrs, call.ty_args)
        return super().visit_call_(call)

    def _as_data(self, const):
        """A 0-dim constant that legalization will not inline (see the module docstring)."""
        value = const.value.numpy()
        self.lifted += 1
        return self.builder_.emit(relax.op.reshape(relax.const(value.reshape([1])), []))

    def _emit(self, m: _Match, weights: np.ndarray, offsets: np.ndarray | None):
        """Emit P = int8_gemm(A', packed W) and the zero-point corrections; returns the result."""
        bb, dot = self.builder_, self.dot
        a = self.visit_expr(m.a)
        za = self.visit_expr(m.za) if isinstance(m.za, relax.Expr) else relax.const(int(m.za), "int32")
        k_dim, n_dim = m.wz.shape
        a_dtype = str(a.ty.dtype)
        shift = 0
        if a_dtype != dot.a_dtype:  # uint8 <-> int8 by adding/subtracting 128 (exact in int16)
            shift = 128 if dot.a_dtype == "int8" else -128  # A = A' + shift
            wide = relax.op.astype(a, "int16")
            a = bb.emit(relax.op.astype(relax.op.subtract(wide, relax.const(shift, "int16")), dot.a_dtype))
        za = bb.emit(relax.op.subtract(za, relax.const(shift, "int32"))) if shift else za
        k_pad = -k_dim % 4
        if k_pad:
            ndim = len(a.ty.shape)
            a = bb.emit(relax.op.nn.pad(a, [0, 0] * (ndim - 1) + [0, k_pad], pad_value=0))
        packed = _pack(weights, dot.lanes)
        product = bb.emit_te(_gemm_te, a, relax.const(packed), dot.lanes, primfunc_name_hint="int8_gemm")
        if packed.shape[0] * dot.lanes != n_dim:
            ndim = len(product.ty.shape)
            product = bb.emit(relax.op.strided_slice(product, [ndim - 1], [0], [n_dim]))
        colsum = m.wz.sum(axis=0)
        result = bb.emit(relax.op.subtract(product, relax.op.multiply(za, relax.const(colsum.astype("int32")))))
        if offsets is not None:
            rowsum = relax.op.sum(relax.op.astype(a, "int32"), axis=[-1], keepdims=True)
            result = bb.emit(relax.op.subtract(result, relax.op.multiply(rowsum, relax.const(offsets.astype("int32")))))
        if m.scale is not None:
            result = bb.emit(relax.op.multiply(relax.op.astype(result, "float32"), self.visit_expr(m.scale)))
        return result


def _gemm_te(a, w, lanes: int):
    """P[..., n] = sum_k int32(A[..., k]) * int32(Wp[n // L, k // 4, n % L, k % 4])."""
    from tvm import te

    *lead, k_ext = a.shape
    k = te.reduce_axis((0, k_ext), name="k")

    def body(*idx):
        *outer, n = idx
        return te.sum(a[(*outer, k)].astype("int32")
                      * w[n // lanes, k // 4, n % lanes, k % 4].astype("int32"), axis=k)

    return te.compute((*lead, w.shape[0] * lanes), body, name=GEMM_BLOCK)


def _pack(weights: np.ndarray, lanes: int) -> np.ndarray:
    """[K, N] int8 -> [N/L, K/4, L, 4] (zero-padded), so that each [L, 4] tile is contiguous."""
    k_dim, n_dim = weights.shape
    k4, nl = -(-k_dim // 4) * 4, -(-n_dim // lanes) * lanes
    padded = np.zeros((k4, nl), np.int8)
    padded[:k_dim, :n_dim] = weights
    return np.ascontiguousarray(padded.reshape(k4 // 4, 4, nl // lanes, lanes).transpose(2, 0, 3, 1))


def _plan(wz: np.ndarray, dot: Int8Dot) -> tuple[np.ndarray, np.ndarray | None] | None:
    """int8 weights W = Wz + c (per-column offsets c, None when all 0) that the kernel computes
    exactly, or None when the weights do not fit it (the matmul then stays int32)."""
    lo, hi = wz.min(axis=0), wz.max(axis=0)
    fits = (lo >= -128) & (hi <= 127)
    if dot.saturating:
        fits &= (lo >= -64) & (hi <= 64)
    # centre columns that do not fit: lo + c >= -128 and hi + c <= 127 (ceil, so that [0, 255] fits)
    offsets = np.where(fits, 0, -((lo + hi + 1) // 2))
    weights = wz + offsets
    if weights.min() < -128 or weights.max() > 127:
        return None
    if dot.saturating and not _pairs_fit_int16(weights):
        return None
    return weights.astype(np.int8), (offsets if offsets.any() else None)


def _pairs_fit_int16(weights: np.ndarray) -> bool:
    """True when u8 x s8 products of adjacent k (vpmaddubsw's pairs) cannot saturate int16."""
    k_dim = weights.shape[0]
    padded = np.zeros((k_dim + k_dim % 2, weights.shape[1]), np.int64)
    padded[:k_dim] = np.abs(weights)
    return bool((255 * (padded[0::2] + padded[1::2])).max(initial=0) <= _INT16_MAX)


# --------------------------------------------------------------------------- matching


def _match(call, bindings: dict) -> _Match | None:
    lhs, rhs = (_resolve(arg, bindings) for arg in call.args)
    if len(getattr(call.args[1].ty, "shape", ()) or ()) != 2 or len(call.args[0].ty.shape or ()) < 2:
        return None
    out_dtype = str(call.ty.dtype)
    if out_dtype == "int32":
        act = _int_activation(lhs, bindings)
        weights = _const_int(rhs, bindings)
        if act is None or weights is None:
            return None
        return _Match(act[0], act[1], weights, None)
    if out_dtype == "float32":
        act = _dequantized_activation(lhs, bindings)
        deq = _dequantized_const(rhs, bindings)
        if act is None or deq is None:
            return None
        q, scale = deq
        column_scale = scale[:1]  # per-column (or per-tensor) weight scale only
        if not np.all(scale == column_scale):
            return None
        a, za, sa = act
        return _Match(a, za, q, relax.op.multiply(sa, relax.const(column_scale[0].astype("float32"))))
    return None


def _is_scalar_const(expr) -> bool:
    return isinstance(expr, tvm.ir.expr.Constant) and getattr(expr.ty, "ndim", -1) == 0


def _holds_per_layer_scalars(call) -> bool:
    """quantize / dequantize with constant scale or zero point, or scalar * scalar constant."""
    if _is_call(call, "relax.quantize") or _is_call(call, "relax.dequantize"):
        return any(_is_scalar_const(arg) for arg in call.args[1:])
    if _is_call(call, "relax.multiply"):
        shapes = [getattr(arg.ty, "ndim", -1) for arg in call.args]
        return shapes == [0, 0] and any(_is_scalar_const(arg) for arg in call.args)
    return False


def _resolve(expr, bindings: dict):
    while isinstance(expr, relax.Var) and expr in bindings:
        expr = bindings[expr]
    return expr


def _is_call(expr, name: str) -> bool:
    return isinstance(expr, tvm.ir.Call) and expr.op.same_as(_op(name))


def _is_int8(expr) -> bool:
    return str(getattr(expr.ty, "dtype", "")) in ("uint8", "int8")


def _is_scalar(expr) -> bool:
    shape = getattr(expr.ty, "shape", None)
    return shape is not None and (len(shape) == 0 or all(int(d) == 1 for d in shape))


def _int_activation(expr, bindings: dict):
    """astype(A, int32) [- za] with A int8/uint8 and za a scalar -> (A, za)."""
    za = 0
    if _is_call(expr, "relax.subtract"):
        left, za = _resolve(expr.args[0], bindings), expr.args[1]
        if not _is_scalar(za):
            return None
        expr = left
    if not _is_call(expr, "relax.astype") or not _is_int8(expr.args[0]):
        return None
    return expr.args[0], za


def _dequantized_activation(expr, bindings: dict):
    """dequantize(A, sa, za) with per-tensor sa, za -> (A, astype(za, int32), sa)."""
    if not _is_call(expr, "relax.dequantize") or not _is_int8(expr.args[0]):
        return None
    a, scale, zero = expr.args
    if not (_is_scalar(scale) and _is_scalar(zero)) or str(scale.ty.dtype) != "float32":
        return None
    return a, relax.op.reshape(relax.op.astype(zero, "int32"), []), relax.op.reshape(scale, [])


def _const_array(expr, bindings: dict) -> np.ndarray | None:
    expr = _resolve(expr, bindings)
    if isinstance(expr, tvm.ir.expr.Constant):
        return expr.value.numpy()
    return None


def _const_int(expr, bindings: dict) -> np.ndarray | None:
    """The exact integer value (int64) of a constant int expression built from astype, subtract,
    expand_dims, permute_dims and reshape over integer constants; None otherwise."""
    expr = _resolve(expr, bindings)
    value = _const_array(expr, bindings)
    if value is not None:
        return value.astype(np.int64) if np.issubdtype(value.dtype, np.integer) else None
    if _is_call(expr, "relax.astype") and str(expr.ty.dtype) in ("int32", "int64"):
        return _const_int(expr.args[0], bindings)
    if _is_call(expr, "relax.subtract"):
        left, right = (_const_int(arg, bindings) for arg in expr.args)
        return None if left is None or right is None else left - right
    return _layout_op(expr, lambda e: _const_int(e, bindings))


def _dequantized_const(expr, bindings: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(q - zero_point, scale broadcast to q's shape) of a dequantized integer constant, through
    permute_dims / reshape (ONNX Gemm's transB); None otherwise."""
    expr = _resolve(expr, bindings)
    if _is_call(expr, "relax.dequantize"):
        q, scale, zero = (_const_array(arg, bindings) for arg in expr.args)
        if q is None or scale is None or zero is None or not np.issubdtype(q.dtype, np.integer):
            return None
        axis = int(expr.attrs.axis) % q.ndim
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[axis] = -1
        zero = zero.reshape(shape) if zero.size > 1 else zero.reshape(())
        return q.astype(np.int64) - zero.astype(np.int64), np.broadcast_to(scale.reshape(shape), q.shape)
    inner = _layout_op(expr, lambda e: _dequantized_const(e, bindings))
    return inner


def _layout_op(expr, inner):
    """Apply permute_dims / expand_dims / reshape of `expr` to what `inner` returns for its input
    (an array, or a tuple of same-shaped arrays)."""
    if not (_is_call(expr, "relax.permute_dims") or _is_call(expr, "relax.reshape")
            or _is_call(expr, "relax.expand_dims")):
        return None
    value = inner(expr.args[0])
    if value is None:
        return None
    shape = [int(d) for d in expr.ty.shape]

    def apply(array: np.ndarray) -> np.ndarray:
        if _is_call(expr, "relax.permute_dims"):
            axes = expr.attrs.axes
            return np.transpose(array, None if axes is None else [int(a) for a in axes])
        return np.reshape(array, shape)

    return tuple(apply(v) for v in value) if isinstance(value, tuple) else apply(value)

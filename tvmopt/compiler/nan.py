"""NaN semantics of compiled CPU kernels: a NaN reaching max/min comes out as NaN.

Workaround: TVM's LLVM codegen lowers float `max(a, b)` to `a > b ? a : b` (min alike), which
drops a NaN in `a` and keeps one in `b`. ReLU is `max(x, 0)`, so a NaN input came out as 0,
where ONNX Runtime (ReLU, Clip, Max, Min, ReduceMax), NumPy and PyTorch give NaN. Applied to
the scheduled kernels just before codegen (compile and the tuning builder alike), so workloads,
their hashes and tuning records are unchanged:
- `max(x, c)` with a constant c becomes `max(c, x)`: the same single instruction, NaN kept;
- `max(a, b)` of two values (Max of two tensors, max reductions, pooling) becomes
  `isnan(a) ? a : max(a, b)`, one compare and blend more; inside a vectorized loop, isnan is
  tested on the value's bits (_vectorizable_isnan).
"""

from __future__ import annotations

import functools

import tvm

from .._compat import PrimFunc, tirx


def propagate_nan(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """`mod` with every float max/min of its TIR functions NaN-propagating (LLVM targets only).

    Other targets are returned as they are: CUDA lowers max to fmaxf, which drops NaN on either
    side, and its cross-thread reductions must still recognise a plain max.
    """
    if target.kind.name != "llvm":
        return mod
    import tvm_ffi

    updates = {}
    for gvar, func in mod.functions.items():
        if isinstance(func, PrimFunc):
            # Post-order: a loop is mapped after its body, so its isnan tests already exist.
            new = tvm_ffi.structural_map(func, [(tirx.Max, _max_min), (tirx.Min, _max_min),
                                                (tirx.For, _vectorizable_isnan)])
            if not new.same_as(func):
                updates[gvar] = new
    if not updates:
        return mod
    mod = mod.clone()  # the caller's module stays as it was
    for gvar, func in updates.items():
        mod[gvar] = func
    return mod


def _max_min(expr):
    if "float" not in str(expr.ty):
        return expr
    a, b = expr.a, expr.b
    if isinstance(a, tirx.FloatImm):
        return expr  # codegen keeps b's NaN
    if isinstance(b, tirx.FloatImm):
        return type(expr)(b, a)
    return tirx.Select(tirx.isnan(a), a, expr)


# Float dtype -> (the integer of its width, its exponent bits): a value whose bits without the sign
# exceed the exponent bits (infinity) is a NaN.
_NAN_BITS = {"float64": ("int64", 0x7FF0000000000000), "float32": ("int32", 0x7F800000),
             "float16": ("int16", 0x7C00), "bfloat16": ("int16", 0x7F80)}


def _vectorizable_isnan(loop):
    """A vectorized loop with each isnan(x) in it tested on x's bits.

    Workaround: TVM's loop vectorizer has no vector form of tir.isnan and turns the whole loop back
    into scalar code, which LLVM then vectorized along the loop around it with gathers and scatters
    (bert4's softmax 47.4 -> 42.7 us with the bit test; a max pool scheduled as a register tile
    455 -> 99 us). `x != x` would vectorize, but TVM's simplifier folds it to false; reinterpret,
    bitwise and, and a compare all vectorize.
    Loops TVM leaves scalar keep tir.isnan: LLVM's own vectorizer handles it better than the bit
    test (ResNet-18's generically scheduled pool: 80 against 219 us).
    """
    import tvm_ffi

    if int(loop.kind) != int(tirx.ForKind.VECTORIZED):
        return loop
    body = tvm_ffi.structural_map(loop.body, [(tvm.ir.expr.Call, _isnan_on_bits)])
    if body.same_as(loop.body):
        return loop
    return tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding, loop.annotations,
                    getattr(loop, "step", None))


def _isnan_on_bits(call):
    if not (len(call.args) == 1 and call.op.same_as(_isnan_op())):
        return call
    value = call.args[0]
    entry = _NAN_BITS.get(str(value.ty))
    if entry is None:  # already a vector, or a float type without an entry
        return call
    int_dtype, exponent = entry
    width = int(int_dtype[3:])
    magnitude = tirx.bitwise_and(tirx.reinterpret(int_dtype, value), tirx.const((1 << (width - 1)) - 1, int_dtype))
    return tirx.GT(magnitude, tirx.const(exponent, int_dtype))


@functools.lru_cache(maxsize=1)
def _isnan_op():
    return tirx.isnan(tirx.Var("x", "float32")).op  # "tir.isnan", "tirx.isnan" in 0.27

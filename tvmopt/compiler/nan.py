"""NaN semantics of compiled CPU kernels: a NaN reaching max/min comes out as NaN.

Workaround: TVM's LLVM codegen lowers float `max(a, b)` to `a > b ? a : b` (min alike), which
drops a NaN in `a` and keeps one in `b`. ReLU is `max(x, 0)`, so a NaN input came out as 0,
where ONNX Runtime (ReLU, Clip, Max, Min, ReduceMax), NumPy and PyTorch give NaN. Applied to
the scheduled kernels just before codegen (compile and the tuning builder alike), so workloads,
their hashes and tuning records are unchanged:
- `max(x, c)` with a constant c becomes `max(c, x)`: the same single instruction, NaN kept;
- `max(a, b)` of two values (Max of two tensors, max reductions, pooling) becomes
  `isnan(a) ? a : max(a, b)`, one compare and blend more.
"""

from __future__ import annotations

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
            new = tvm_ffi.structural_map(func, [(tirx.Max, _max_min), (tirx.Min, _max_min)])
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

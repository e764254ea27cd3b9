"""Layout transforms the blocked layout leaves that need not run as kernels.

- A blocked feature map flattened into a dense layer: a classifier written as conv -> flatten ->
  linear runs layout_transform(NCHW16c -> NCHW) -> reshape -> matmul(., W) after
  `to_blocked_layout`. The reorder only permutes the flattened features, so permuting W's rows
  instead (once, at compile time) gives the same products without the kernel and its pass over
  the feature map: reshape(x_blocked) -> matmul(., W_permuted). (ONNX Runtime's NCHWc path still
  runs its ReorderOutput there.)
- A transform that moves no element (NCHW -> NCHW1c, the stem's input when its channels fit no
  block; NCHW16c -> NCHW on a 1x1 map) becomes a reshape, which the VM runs as a view instead of a
  copy kernel; a reshape of a reshape becomes one reshape (fused, the two would be a copy kernel).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def drop_reorders() -> tvm.transform.Pass:
    """Rewrite matmul(reshape(layout_transform(x)), constant) as matmul(reshape(x), permuted
    constant), and layout transforms that keep every element in place as reshapes."""

    @tvm.transform.module_pass(opt_level=0, name="DropReorders")
    def apply(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                rewritten = _Folder(mod).visit_expr(func)
                if not rewritten.same_as(func):
                    mod[gv] = relax.analysis.remove_all_unused(rewritten)
        return mod

    return apply


def _static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    shape = getattr(getattr(expr, "ty", None), "shape", None)  # 0.27: Expr.ty (was struct_info)
    values = getattr(shape, "values", shape)
    if values is None or not all(isinstance(d, tvm.tirx.IntImm) for d in values):
        return None
    return tuple(int(d) for d in values)


def row_permutation(index_map: tvm.tirx.IndexMap, in_shape: tuple[int, ...], rows: int) -> np.ndarray | None:
    """Where each feature of the transformed, flattened tensor comes from in the untransformed one,
    as positions within a row of `rows` rows; None unless the transform only permutes within rows."""
    size = int(np.prod(in_shape))
    if size % rows or size >= 2**31:
        return None
    source = tvm.runtime.tensor(np.arange(size, dtype="int32").reshape(in_shape))
    try:
        moved = index_map.map_tensor(source).numpy()
    except RuntimeError:  # 0.27: map_tensor fails on a padding transform (InternalError: size mismatch)
        return None
    if moved.size != size:
        return None  # the transform pads
    width = size // rows
    relative = moved.reshape(rows, width) - np.arange(rows, dtype="int64")[:, None] * width
    if relative.min() < 0 or relative.max() >= width:
        return None  # the transform mixes rows (batch items)
    if not (relative == relative[0]).all():
        return None
    return relative[0]


@relax.expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: D102 - the rewrite, see the module
        call = super().visit_call_(call)
        if _is_op(call, "relax.layout_transform"):
            return self._as_reshape(call)
        if _is_op(call, "relax.reshape") and _is_op(self._bound(call.args[0]), "relax.reshape"):
            return relax.op.reshape(self._unreshaped(call.args[0]), call.args[1])
        if not _is_op(call, "relax.matmul") or not isinstance(call.args[1], tvm.ir.expr.Constant):
            return call
        flat, weight = call.args
        reshape = self._bound(flat)
        if not _is_op(reshape, "relax.reshape"):
            return call
        transform = self._bound(reshape.args[0])
        if not _is_op(transform, "relax.layout_transform") or transform.attrs.pad_value is not None:
            return call
        data = transform.args[0]
        in_shape, flat_shape = _static_shape(data), _static_shape(flat)
        weight_shape = tuple(weight.value.shape)
        if in_shape is None or flat_shape is None or len(flat_shape) != 2 or len(weight_shape) != 2:
            return call
        if weight_shape[0] != flat_shape[1]:
            return call
        perm = row_permutation(transform.attrs.index_map, in_shape, flat_shape[0])
        if perm is None:
            return call
        # flat[j] = x_row[perm[j]], so sum_j flat[j] W[j] = sum_i x_row[i] W'[i] with W'[perm[j]] = W[j].
        w = weight.value.numpy()
        permuted = np.empty_like(w)
        permuted[perm] = w
        new_flat = self.builder_.emit(relax.op.reshape(self._unreshaped(data), flat_shape))
        return relax.op.matmul(new_flat, relax.const(permuted), out_dtype=call.attrs.out_dtype)

    def _as_reshape(self, call: relax.Call) -> relax.Expr:
        in_shape, out_shape = _static_shape(call.args[0]), _static_shape(call)
        if in_shape is None or out_shape is None or call.attrs.pad_value is not None:
            return call
        order = row_permutation(call.attrs.index_map, in_shape, 1)
        if order is None or not (order == np.arange(order.size)).all():
            return call
        return relax.op.reshape(self._unreshaped(call.args[0]), out_shape)

    def _unreshaped(self, expr: relax.Expr) -> relax.Expr:
        """The tensor under a chain of reshapes (row-major views compose into one): a reshape of
        a reshape would otherwise fuse into a copy kernel, which a single reshape is not."""
        while _is_op(self._bound(expr), "relax.reshape"):
            expr = self._bound(expr).args[0]
        return expr

    def _bound(self, expr: relax.Expr):
        return self.lookup_binding(expr) if isinstance(expr, relax.Var) else None


def _is_op(expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name

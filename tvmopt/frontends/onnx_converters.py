"""tvmopt's ONNX converters that replace TVM's for some op types (see onnx_importer.py).

Each class says which upstream (TVM 0.27 Relax ONNX frontend) behaviour it works around and
falls back to TVM's converter for every case it does not need to change.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _frontend


def _known_int(value):
    """An int (constant scalar) or a symbolic PrimExpr for an integer scalar input; None when
    the value is only known at run time (a tensor computed by the graph)."""
    if isinstance(value, tvm.ir.GenericConst):
        array = value.value.numpy()
        if array.size == 1 and np.issubdtype(array.dtype, np.integer):
            return int(array.reshape(()))
        return None
    if tvm.ir.is_prim_expr(value) and "int" in str(value.ty):
        return value
    return None


class Range(_frontend.OnnxOpConverter):
    """Range whose bounds are symbolic dims gets a shape in those dims.

    Workaround: TVM's Range converter turns a symbolic limit (torch's `arange(seq)`, which the
    dynamo exporter writes as Range(0, Squeeze(Shape(input_ids)[1]), 1)) into a tensor and back
    into a fresh shape var `range_len_0`. Nothing ties that var to `seq` again, so the attention
    mask built from it has shape (range_len_0, 1, range_len_0, range_len_0), adding it to the
    (batch, heads, seq, seq) scores loses the shape, and the next Reshape fails ("Reshape expects
    the input tensor to have known shape"). relax.op.arange takes PrimExprs and infers (seq,).
    """

    @classmethod
    def _impl_v11(cls, bb, inputs, attr, params):
        bounds = [_known_int(_frontend.get_constant(x, params)) for x in inputs[:3]]
        dtype = str(getattr(inputs[0].ty, "dtype", None) or inputs[0].ty)
        if any(b is None for b in bounds) or "int" not in dtype or isinstance(bounds[2], tvm.ir.Expr):
            return _frontend.Range._impl_v12(bb, inputs, attr, params)
        start, limit, delta = bounds
        if all(isinstance(b, int) for b in bounds):
            return relax.const(np.arange(start, limit, delta, dtype=dtype), dtype)
        return relax.op.arange(start, limit, delta, dtype)


class ConstantOfShape(_frontend.OnnxOpConverter):
    """ConstantOfShape with a scalar value broadcast to any rank, rank 0 included.

    Workaround: TVM's converter keeps the `value` attribute as a rank-1 constant and broadcasts
    it to the requested shape; for an empty shape (a scalar result, e.g. the bool
    `/m/ConstantOfShape` feeding an `And` in BERT/DistilBERT/GPT-2 masks from transformers 5
    through torch's legacy exporter) broadcast_to refuses "ndim 1 while the target shape has
    ndim 0", and the constant-folding retry cannot help since the shape is already constant.
    """

    @classmethod
    def _impl_v9(cls, bb, inputs, attr, params):
        value = attr.get("value")
        scalar = _frontend.get_numpy(value).reshape(()) if value is not None else np.zeros((), "float32")
        dtype = str(scalar.dtype)
        shape = _frontend.get_constant(inputs[0], params)
        if isinstance(shape, tvm.ir.GenericConst):
            dims = [int(d) for d in shape.value.numpy().reshape(-1)]
            if int(np.prod(dims)) <= 4096:  # small constants fold; large ones stay a broadcast
                return relax.const(np.full(dims, scalar, dtype), dtype)
            shape = relax.ShapeExpr(dims)
        elif isinstance(shape, relax.ShapeExpr) and all(isinstance(d, tvm.tirx.IntImm) for d in shape.values):
            dims = [int(d) for d in shape.values]  # Shape() of a shape: fold, as for a constant
            if int(np.prod(dims)) <= 4096:
                return relax.const(np.full(dims, scalar, dtype), dtype)
        elif not isinstance(shape, relax.ShapeExpr):
            shape = relax.op.tensor_to_shape(shape)
        return relax.op.broadcast_to(relax.const(scalar, dtype), shape)


class Equal(_frontend.OnnxOpConverter):
    """Equal on shape values decides only what holds for every value of a symbolic dim.

    Workaround: TVM's converter compares a shape (`Shape(x)` with symbolic dims) and a constant
    element-wise with structural equality, so `batch == 1` becomes the constant False although
    batch may be 1 at run time. A dim against a negative constant (the legacy exporter's
    `Equal(shape, -1)` before Expand) is decidably False; anything undecided is computed at run
    time on the shape as a tensor.
    """

    @classmethod
    def _impl_v11(cls, bb, inputs, attr, params):
        lhs, rhs = inputs[0], inputs[1]
        if not any(isinstance(x, relax.ShapeExpr) for x in (lhs, rhs)) or not all(
            isinstance(x, (relax.ShapeExpr, tvm.ir.GenericConst)) for x in (lhs, rhs)
        ):
            return _frontend.Equal._impl_v13(bb, inputs, attr, params)
        left, right = _frontend.get_prim_expr_list(lhs), _frontend.get_prim_expr_list(rhs)
        n = max(len(left), len(right))
        left, right = (v * n if len(v) == 1 else v for v in (left, right))
        decided = [_decide_equal(a, b) for a, b in zip(left, right)]
        if len(left) == len(right) and all(d is not None for d in decided):
            return relax.const(np.array(decided, dtype=bool), "bool")
        as_tensor = [relax.op.shape_to_tensor(x) if isinstance(x, relax.ShapeExpr) else x for x in (lhs, rhs)]
        return relax.op.equal(*as_tensor)


class Reshape(_frontend.OnnxOpConverter):
    """Reshape of a scalar shape value (a symbolic dim) to [1] stays a shape value.

    Workaround: TVM's frontend keeps `Shape(x)[i] * 4` (torch MultiheadAttention's
    `bsz * num_heads` in dynamo exports) as a PrimExpr, and its Reshape converter then fails
    ("Reshape expects the input data to be a Tensor. However, the given input is ir.PrimType")
    on the `Reshape(.., [1])` that precedes the Concat building a view shape. A rank-1 result
    becomes a one-element ShapeExpr, the form the frontend's Concat/Reshape handle symbolically.
    """

    @classmethod
    def _impl_v5(cls, bb, inputs, attr, params):
        data = inputs[0]
        if tvm.ir.is_prim_expr(data) and "int" in str(data.ty):
            shape = _frontend.get_constant(inputs[1], params)
            if isinstance(shape, tvm.ir.GenericConst):
                dims = [int(d) for d in shape.value.numpy().reshape(-1)]
                if dims in ([], [1], [-1]):
                    return data if not dims else relax.ShapeExpr([data])
        return _frontend.Reshape.get_converter(14)(bb, inputs, attr, params)


class Expand(_frontend.OnnxOpConverter):
    """Expand to a constant shape of a tensor with symbolic dims.

    Workaround: TVM's converter reads `dim.value` of every input dim when the target shape is a
    constant, which fails on a symbolic dim ("'Var' object has no attribute 'value'"; torch's
    MultiheadAttention key-padding mask in dynamo exports). Its ShapeExpr branch applies the same
    broadcasting rules to symbolic dims, so a constant shape goes there as a ShapeExpr.
    """

    @classmethod
    def _impl_v8(cls, bb, inputs, attr, params):
        data, shape = inputs[0], _frontend.get_constant(inputs[1], params)
        data_shape = getattr(data.ty, "shape", None)
        symbolic = isinstance(data_shape, relax.ShapeExpr) and not all(
            isinstance(d, tvm.tirx.IntImm) for d in data_shape.values
        )
        if symbolic and isinstance(shape, tvm.ir.GenericConst):
            shape = relax.ShapeExpr([int(v) for v in shape.value.numpy().reshape(-1)])
            return _frontend.Expand._impl_v13(bb, [data, shape], attr, params)
        return _frontend.Expand._impl_v13(bb, inputs, attr, params)


def _decide_equal(a, b) -> bool | None:
    """a == b for two shape entries (int or PrimExpr), or None when it depends on the dims."""
    a, b = (int(x) if isinstance(x, (int, tvm.tirx.IntImm)) else x for x in (a, b))
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, int) or isinstance(b, int):
        const = a if isinstance(a, int) else b
        return False if const < 0 else None  # a dim is never negative
    from tvm.sym.analyzer import Analyzer

    analyzer = Analyzer()
    if analyzer.can_prove_equal(a, b):
        return True
    return None


from .recurrent import CONVERTERS as _RECURRENT  # noqa: E402 - RNN, GRU, LSTM (no upstream converter)

OVERRIDES: dict[str, type[_frontend.OnnxOpConverter]] = {
    **_RECURRENT,
    "Range": Range,
    "ConstantOfShape": ConstantOfShape,
    "Equal": Equal,
    "Reshape": Reshape,
    "Expand": Expand,
}

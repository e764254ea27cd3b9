"""GEMMs whose shapes no perfect tile splits, padded to whole tiles: a language model's
vocabulary head, a vision transformer's 197 tokens.

MetaSchedule splits loops into perfect tiles only. GPT-2's LM head multiplies by a 768 x 50257
weight, and 50257 = 29 x 1733: no split vectorizes its columns, every schedule of the tuning space
ran 200-1800 ms where ONNX Runtime takes 39 (BERT's 30522 = 2 x 3 x 5087 is no better). ViT-B's
GEMMs have 197 rows, a prime: no split tiles them (3.3x ORT with zero trials). A constant weight
with at least MIN_COLUMNS columns is padded with zero columns to a multiple of the vector width,
an input of more than 16 rows with zero rows to a multiple of 8, and the product sliced back:
a little more arithmetic and a copy; the kernel then tiles as any GEMM does (ViT 1.76x). A
1000-class head keeps its shape (it tiles well enough, and the shipped logs' records for those
kernels keep matching), as do inputs of 16 rows or fewer (GEMVs, small batches).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

MIN_COLUMNS = 8192


def pad_wide_gemms(lanes: int, min_columns: int = MIN_COLUMNS) -> tvm.transform.Pass:
    """matmul(x [..., M, K], W) with a constant W [K, N] -> strided_slice(matmul(x padded to M'
    rows, W padded to N' columns)) back to [..., M, N], where N >= min_columns is not a multiple
    of `lanes` (N' is) or M > 16 is not a multiple of 8 (M' is)."""

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_call_(self, call: relax.Call) -> relax.Expr:
            call = super().visit_call_(call)
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.matmul"):
                return call
            weight = call.args[1]
            if not isinstance(weight, tvm.ir.expr.Constant) or len(weight.value.shape) != 2:  # 0.27: .value
                return call
            columns = int(weight.value.shape[1])
            x = call.args[0]
            shape = getattr(x.ty, "shape", None)
            rows = shape.values[-2] if isinstance(shape, relax.ShapeExpr) and len(shape.values) >= 2 else None
            rows = int(rows.value) if isinstance(rows, tvm.tirx.IntImm) else None
            pad_columns = columns >= min_columns and columns % lanes != 0
            pad_rows = rows is not None and rows > 16 and rows % 8 != 0
            if not pad_columns and not pad_rows:
                return call
            try:
                data = weight.value.numpy()
            except Exception:  # noqa: BLE001 - a dtype numpy cannot hold (bfloat16): left as it is
                return call
            ndim = call.ty.ndim
            w = relax.const(np.pad(data, ((0, 0), (0, -columns % lanes)))) if pad_columns else weight
            if pad_rows:
                x = self.builder_.emit(relax.op.nn.pad(x, [0, 0] * (ndim - 2) + [0, -rows % 8, 0, 0]))
            product = self.builder_.emit(relax.op.matmul(x, w, call.attrs.out_dtype))
            axes, ends = [], []
            if pad_rows:
                axes.append(ndim - 2)
                ends.append(rows)
            if pad_columns:
                axes.append(ndim - 1)
                ends.append(columns)
            return relax.op.strided_slice(product, axes=axes, begin=[0] * len(axes), end=ends)

    @tvm.transform.module_pass(opt_level=0, name="PadGemmsToTiles")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = Rewriter(mod)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return transform

"""Vocabulary-sized GEMMs padded to whole vectors: a language model's output head.

MetaSchedule splits loops into perfect tiles only. GPT-2's LM head multiplies by a 768 x 50257
weight, and 50257 = 29 x 1733: no split vectorizes its columns, every schedule of the tuning space
ran 200-1800 ms where ONNX Runtime takes 39 (BERT's 30522 = 2 x 3 x 5087 is no better). Padding the
constant weight with zero columns to a multiple of the vector width and slicing the product back
costs 0.03% more arithmetic and a copy of the output; the kernel then tiles as any GEMM does.
Only weights with at least MIN_COLUMNS columns are touched (a 1000-class head tiles well enough,
and the shipped logs' records for those kernels keep matching).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

MIN_COLUMNS = 8192


def pad_wide_gemms(lanes: int, min_columns: int = MIN_COLUMNS) -> tvm.transform.Pass:
    """matmul(x, W) with a constant W [K, N], N >= min_columns and not a multiple of `lanes` ->
    strided_slice(matmul(x, W padded to N' columns), last axis, 0..N)."""

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
            if columns < min_columns or columns % lanes == 0:
                return call
            try:
                data = weight.value.numpy()
            except Exception:  # noqa: BLE001 - a dtype numpy cannot hold (bfloat16): left as it is
                return call
            padded = np.pad(data, ((0, 0), (0, -columns % lanes)))
            product = self.builder_.emit(relax.op.matmul(call.args[0], relax.const(padded), call.attrs.out_dtype))
            return relax.op.strided_slice(product, axes=[call.ty.ndim - 1], begin=[0], end=[columns])

    @tvm.transform.module_pass(opt_level=0, name="PadWideGemms")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = Rewriter(mod)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return transform

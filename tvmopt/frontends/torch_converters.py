"""Fixes between torch.export and TVM's ExportedProgram translator: a decomposition table and
converters passed through `from_exported_program(custom_convert_map=...)`, each naming the
upstream behaviour it works around."""

from __future__ import annotations

from typing import Any, Callable


def decomposition_table() -> dict:
    """torch.export's default decompositions, with SDPA decomposed the way eager lays it out.

    Workaround: torch's default decomposition of `aten.scaled_dot_product_attention` returns a
    tensor whose strides differ from what eager SDPA returned at export time. transformers'
    attention then does `out.transpose(1, 2).reshape(...)`, which torch.export recorded as a
    `view` (valid for eager's strides), and re-tracing fails with "Cannot view a tensor with
    shape [2, 8, 32] and strides (32, 64, 1)": every transformers-5 model with the default
    `attn_implementation="sdpa"` (GPT-2, BERT, ...) failed on the PyTorch path. We decompose into
    the math kernel (bool masks converted to additive -inf first, as `F.scaled_dot_product_attention`
    does and the math op does not) and give the result eager's (batch, seq, heads, dim) layout.
    """
    import torch

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.where(attn_mask, 0.0, float("-inf")).to(query.dtype)
        out = torch.ops.aten._scaled_dot_product_attention_math.default(
            query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa
        )[0]
        if out.dim() != 4:
            return out
        return out.transpose(1, 2).contiguous().transpose(1, 2)

    table = torch.export.default_decompositions()
    table[torch.ops.aten.scaled_dot_product_attention.default] = sdpa
    return table


def _cumsum(node, importer) -> Any:
    """cumsum of a bool or narrow-int tensor sums in int64, as torch does.

    Workaround: TVM's translator keeps the input dtype when cumsum has no `dtype` argument, so
    `(position_diff != 1).cumsum(-1)` (transformers' packed-sequence check, run by every causal
    LM called without an attention mask) gives a bool result; LLVM codegen then adds two bools
    and the build fails with "Check failed: (t.MatchesCode(DLDataTypeCode::kDLFloat)) is false:".
    """
    from tvm import relax

    x = importer.env[node.args[0]]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dtype = node.kwargs.get("dtype")
    dtype = importer._convert_data_type(str(dtype), importer.env) if dtype is not None else None
    in_dtype = str(x.ty.dtype)
    if dtype is None and (in_dtype == "bool" or (in_dtype.startswith(("int", "uint")) and in_dtype != "int64")):
        dtype = "int64"
    return importer.block_builder.emit(relax.op.cumsum(x, dim, dtype))


CONVERTERS: dict[str, Callable] = {
    "cumsum.default": _cumsum,
}

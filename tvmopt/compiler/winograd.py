"""3x3 stride-1 convolutions as Winograd F(2x2, 3x3) on CPUs: 2.25x fewer multiplications.

A blocked (NCHWc) 3x3 conv computes each 2x2 output tile from a 4x4 input tile. In the Winograd
domain that is 16 independent GEMMs (one per point of the 4x4 transform):
    V[e, tile, c]  = B^T d B          input transform (its own kernel, memory-bound)
    M[e, tile, k]  = V[e] x U[e]      16 batched GEMMs: tvmopt's dense template, U prepacked
    Y[.., 2x2, k]  = A^T M A          output transform, fused with bias, residual add, ReLU
where U[e] = G g G^T is the transformed weight, a constant computed once at compile time
(FoldConstant). ONNX Runtime's MLAS runs these convs directly (~86% of this machine's peak), so a
direct conv cannot beat it by much; a transform that removes 56% of the arithmetic can.

Only where it pays: the GEMMs need rows (output tiles) to reuse the transformed weights, which
are 16/9 the size of the direct ones, and the transforms cost memory traffic, so small feature maps
and thin channel counts stay direct. ResNet-18's 7x7 layer (16 tiles, 16 MB of transformed
weights) still gains: 1010 -> 807 us a conv on AVX-512, the model 0.77x -> 0.71x ONNX Runtime.
Float32 only; the rounding differs from the direct conv's by ~1e-6 relative.
"""

from __future__ import annotations

import tvm
from tvm import te, topi

# Output tiles (2x2 each) a conv needs for the GEMMs to reuse the transformed weights (7x7: 16).
MIN_TILES = 16
ROW_MULTIPLE = 8  # the GEMMs' rows are padded to a multiple of this (gemm_rows)
# Input x output channels below which the transforms' memory traffic outweighs the saving.
MIN_CHANNEL_PRODUCT = 64 * 64


def eligible(data_shape, kernel_shape, strides, padding, dilation, groups: int, dtype: str) -> bool:
    """Whether a blocked conv (data [N, C/i, H, W, i], kernel [O/o, C/i, KH, KW, i, o]) runs as
    Winograd F(2x2, 3x3)."""
    n, ic_chunk, height, width, ic_bn = (int(d) for d in data_shape)
    oc_chunk, _, kh, kw, _, oc_bn = (int(d) for d in kernel_shape)
    if (kh, kw) != (3, 3) or tuple(int(s) for s in strides) != (1, 1) or tuple(int(d) for d in dilation) != (1, 1):
        return False
    if groups != 1 or dtype != "float32" or ic_bn == 1:
        return False
    top, left, bottom, right = (int(p) for p in padding)
    tiles_h, tiles_w = _tile_grid(height + top + bottom - 2, width + left + right - 2)
    return n * tiles_h * tiles_w >= MIN_TILES and ic_chunk * ic_bn * oc_chunk * oc_bn >= MIN_CHANNEL_PRODUCT


def _tile_grid(out_h: int, out_w: int) -> tuple[int, int]:
    """2x2 output tiles down and across (the last one half outside an odd-sized output)."""
    return (out_h + 1) // 2, (out_w + 1) // 2


def _select(index, values):
    """values[index] for a small constant table, as nested if_then_else on a loop variable."""

    def const(v):
        if isinstance(v, float):
            return tvm.tirx.const(v, "float32")
        return tvm.tirx.const(v, str(index.ty)) if isinstance(v, int) else v

    expr = const(values[-1])
    for i in range(len(values) - 2, -1, -1):
        expr = tvm.tirx.if_then_else(index == i, const(values[i]), expr)
    return expr


def transform_weight(kernel: te.Tensor) -> te.Tensor:
    """U[e, c, k] = (G g G^T)[e // 4, e % 4] for the blocked kernel [O/o, C/i, 3, 3, i, o]."""
    oc_chunk, ic_chunk, _, _, ic_bn, oc_bn = (int(d) for d in kernel.shape)
    g_rows = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))

    def g(row, col):
        return _select(row, [_select(col, list(r)) for r in g_rows])

    r1 = te.reduce_axis((0, 3), name="r1")
    r2 = te.reduce_axis((0, 3), name="r2")
    return te.compute(
        (16, ic_chunk * ic_bn, oc_chunk * oc_bn),
        lambda e, c, k: te.sum(
            g(e // 4, r1) * kernel[k // oc_bn, c // ic_bn, r1, r2, c % ic_bn, k % oc_bn] * g(e % 4, r2), axis=[r1, r2]
        ),
        name="winograd_weight",
    )


# B^T d for one 4-row column of the input tile: row e of the result is d[FIRST[e]] + SIGN[e] * d[SECOND[e]].
FIRST, SECOND, SIGN = (0, 1, 2, 1), (2, 2, 1, 3), (-1.0, 1.0, -1.0, -1.0)


def transform_input(data: te.Tensor, padding) -> te.Tensor:
    """V[e, tile, c] = (B^T d B)[e // 4, e % 4] of each 4x4 input tile (stride 2, overlapping)."""
    n, ic_chunk, height, width, ic_bn = (int(d) for d in data.shape)
    top, left, bottom, right = (int(p) for p in padding)
    out_h, out_w = height + top + bottom - 2, width + left + right - 2
    tiles_h, tiles_w = _tile_grid(out_h, out_w)
    # Pad to whole tiles: the last tile of an odd output reads one row/column past the padding.
    padded = topi.nn.pad(data, (0, 0, top, left, 0),
                         (0, 0, 2 * tiles_h + 2 - height - top, 2 * tiles_w + 2 - width - left, 0), name="data_pad")

    tiles = n * tiles_h * tiles_w

    def tile_value(e, p, c):
        b, rest = p // (tiles_h * tiles_w), p % (tiles_h * tiles_w)
        y0, x0 = rest // tiles_w * 2, rest % tiles_w * 2
        eps, nu = e // 4, e % 4

        def d(i, j):
            return padded[b, c // ic_bn, y0 + i, x0 + j, c % ic_bn]

        def row(j):  # (B^T d)[eps, j]
            return d(_select(eps, FIRST), j) + _select(eps, SIGN) * d(_select(eps, SECOND), j)

        value = row(_select(nu, FIRST)) + _select(nu, SIGN) * row(_select(nu, SECOND))
        return value if tiles == gemm_rows(tiles) else tvm.tirx.if_then_else(p < tiles, value, tvm.tirx.const(0.0, data.dtype))

    from ..tuning.templates import ANNOTATION, WINOGRAD_INPUT  # the registry owns its templates' names

    attrs = {ANNOTATION: WINOGRAD_INPUT, "tvmopt.lanes": ic_bn}
    return te.compute((16, gemm_rows(tiles), ic_chunk * ic_bn), tile_value, name="winograd_input", attrs=attrs)


def gemm_rows(tiles: int) -> int:
    """The GEMMs' rows: the tiles, rounded up to a multiple of ROW_MULTIPLE (zero rows, never read
    back). The dense template's register tile takes a divisor of the rows: 49 tiles (ResNet-18's
    14x14 layer) offered 1 or 7 rows, and 7 x 1 vectors ran at 143 GFLOP/s on AVX2."""
    return -(-tiles // ROW_MULTIPLE) * ROW_MULTIPLE


def batched_gemm(v: te.Tensor, u: te.Tensor) -> te.Tensor:
    """M[e, tile, k] = sum_c V[e, tile, c] U[e, c, k]: 16 GEMMs, marked for the dense template
    by compiler/annotate.py like any GEMM with a constant right operand."""
    channels = te.reduce_axis((0, int(v.shape[2])), name="c")
    return te.compute(
        (16, int(v.shape[1]), int(u.shape[2])),
        lambda e, p, k: te.sum(v[e, p, channels] * u[e, channels, k], axis=channels),
        name="winograd_gemm",
    )


def transform_output(m: te.Tensor, out_shape) -> te.Tensor:
    """Y[n, k/o, y, x, o] = (A^T M A)[y % 2, x % 2] of the tile holding (y, x)."""
    n, oc_chunk, out_h, out_w, oc_bn = (int(d) for d in out_shape)
    tiles_h, tiles_w = _tile_grid(out_h, out_w)

    def value(b, kc, y, x, kb):
        p = (b * tiles_h + y // 2) * tiles_w + x // 2
        k = kc * oc_bn + kb

        def at(eps, j):  # (M A)[eps, j]: A^T's row 0 sums points 0-2, row 1 is 1 - 2 - 3
            points = [m[eps * 4 + nu, p, k] for nu in range(4)]
            return tvm.tirx.if_then_else(j == 0, points[0] + points[1] + points[2], points[1] - points[2] - points[3])

        i, j = y % 2, x % 2
        return tvm.tirx.if_then_else(
            i == 0, at(0, j) + at(1, j) + at(2, j), at(1, j) - at(2, j) - at(3, j)
        )

    return te.compute((n, oc_chunk, out_h, out_w, oc_bn), value, name="winograd_output")

"""3x3 stride-1 convolutions as Winograd F(4x4, 3x3) or F(2x2, 3x3) on CPUs: 4x or 2.25x fewer
multiplications.

A blocked (NCHWc) 3x3 conv computes each m x m output tile from an (m+2) x (m+2) input tile. In
the Winograd domain that is (m+2)^2 independent GEMMs (one per point of the transform):
    V[e, tile, c]  = B^T d B          input transform (its own kernel, memory-bound)
    M[e, tile, k]  = V[e] x U[e]      batched GEMMs: tvmopt's dense template, U prepacked
    Y[.., m x m, k] = A^T M A         output transform, fused with bias, residual add, ReLU
where U[e] = G g G^T is the transformed weight, a constant computed once at compile time
(FoldConstant). ONNX Runtime's MLAS runs these convs directly (~86% of this machine's peak), so a
direct conv cannot beat it by much; a transform that removes most of the arithmetic can.

Only where it pays: the GEMMs need rows (output tiles) to reuse the transformed weights, which
are (m+2)^2/9 the size of the direct ones, and the transforms cost memory traffic, so small feature
maps and thin channel counts stay direct. 4x4 tiles where a map has enough of them (ResNet-18's
56x56 to 14x14 layers), 2x2 tiles below that (its 7x7 layer: 16 tiles of 2x2, 4 of 4x4).
Float32 only; the rounding differs from the direct conv's by ~1e-6 (2x2) to ~1e-5 (4x4) relative.
"""

from __future__ import annotations

import tvm
from tvm import te, topi

# Output tiles a conv needs for the GEMMs to reuse the transformed weights: the largest tile (4x4,
# else 2x2) that gives at least this many. ResNet-18's 14x14 layer in 4x4 tiles (16; 9.4 MB of
# transformed weights): 383 us a conv against 554 in 2x2 tiles, the model 1-2% faster; its 7x7 layer
# has 4 such tiles and takes 2x2 ones.
MIN_TILES = 16
ROW_MULTIPLE = 8  # the GEMMs' rows are padded to a multiple of this (gemm_rows)
# Input x output channels below which the transforms' memory traffic outweighs the saving.
MIN_CHANNEL_PRODUCT = 64 * 64
# GEMM rows (tiles) from which the batched GEMMs split the tiles between threads, not the points:
# each thread then reads the transformed weights whole (0.6 MB at 56x56, 2.4 at 28x28).
OWNED_ROWS = 32

# The transforms (Lavin & Gray, interpolation points 0, +-1, +-2, infinity), per output tile size m:
# Y = A^T [(G g G^T) * (B^T d B)] A.
MATRICES = {
    2: {"AT": ((1, 1, 1, 0), (0, 1, -1, -1)),
        "G": ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
        "BT": ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))},
    4: {"AT": ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
        "G": ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
              (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        "BT": ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
               (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))},
}


def tile_size(data_shape, kernel_shape, strides, padding, dilation, groups: int, dtype: str) -> int:
    """The output tile (4 or 2) a blocked conv (data [N, C/i, H, W, i], kernel [O/o, C/i, KH, KW,
    i, o]) runs Winograd with, or 0 where it stays a direct conv."""
    n, ic_chunk, height, width, ic_bn = (int(d) for d in data_shape)
    oc_chunk, _, kh, kw, _, oc_bn = (int(d) for d in kernel_shape)
    if (kh, kw) != (3, 3) or tuple(int(s) for s in strides) != (1, 1) or tuple(int(d) for d in dilation) != (1, 1):
        return 0
    if groups != 1 or dtype != "float32" or ic_bn == 1:
        return 0
    if ic_chunk * ic_bn * oc_chunk * oc_bn < MIN_CHANNEL_PRODUCT:
        return 0
    top, left, bottom, right = (int(p) for p in padding)
    out_h, out_w = height + top + bottom - 2, width + left + right - 2
    for m in (4, 2):
        tiles_h, tiles_w = _tile_grid(out_h, out_w, m)
        if n * tiles_h * tiles_w >= MIN_TILES:
            return m
    return 0


def eligible(data_shape, kernel_shape, strides, padding, dilation, groups: int, dtype: str) -> bool:
    """Whether a blocked conv runs as Winograd at all (tile_size)."""
    return tile_size(data_shape, kernel_shape, strides, padding, dilation, groups, dtype) > 0


def _tile_grid(out_h: int, out_w: int, m: int) -> tuple[int, int]:
    """m x m output tiles down and across (the last ones partly outside an output not a multiple of m)."""
    return -(-out_h // m), -(-out_w // m)


def _tile_of(points: int) -> int:
    """m from the (m+2)^2 transform points of a kernel's first axis."""
    alpha = int(round(points ** 0.5))
    return alpha - 2


def _select(index, values):
    """values[index] for a small table, as nested Selects on a loop variable: the templates unroll
    that loop, and each copy folds to its one entry. Select, not if_then_else: TVM's FLOP estimate
    counts every branch of an if_then_else (36 points: 36x the work) and one of a Select."""
    expr = values[-1]
    for i in range(len(values) - 2, -1, -1):
        expr = tvm.tirx.Select(index == i, values[i], expr)
    return expr


def _combine(coefficients, terms):
    """sum_i coefficients[i] * terms(i) with the zero terms left out and +-1 as adds/subtracts:
    the transforms' tables are mostly 0 and +-1."""
    expr = None
    for i, c in enumerate(coefficients):
        if c == 0:
            continue
        term = terms(i)
        if expr is None:
            expr = term if c == 1 else (-term if c == -1 else term * float(c))
        elif c == 1:
            expr = expr + term
        elif c == -1:
            expr = expr - term
        else:
            expr = expr + term * float(c)
    return expr


def transform_weight(kernel: te.Tensor, m: int = 2) -> te.Tensor:
    """U[e, c, k] = (G g G^T)[e // (m+2), e % (m+2)] for the blocked kernel [O/o, C/i, 3, 3, i, o]."""
    oc_chunk, ic_chunk, _, _, ic_bn, oc_bn = (int(d) for d in kernel.shape)
    alpha = m + 2
    rows = MATRICES[m]["G"]

    def g(row, col):
        return _select(row, [_select(col, [tvm.tirx.const(float(v), "float32") for v in r]) for r in rows])

    r1 = te.reduce_axis((0, 3), name="r1")
    r2 = te.reduce_axis((0, 3), name="r2")
    return te.compute(
        (alpha * alpha, ic_chunk * ic_bn, oc_chunk * oc_bn),
        lambda e, c, k: te.sum(
            g(e // alpha, r1) * kernel[k // oc_bn, c // ic_bn, r1, r2, c % ic_bn, k % oc_bn] * g(e % alpha, r2),
            axis=[r1, r2]),
        name="winograd_weight",
    )


def transform_input(data: te.Tensor, padding, m: int = 2) -> te.Tensor:
    """V[e, tile, c] = (B^T d B)[e // (m+2), e % (m+2)] of each (m+2)^2 input tile (stride m,
    overlapping). Each point is its own expression of the loads it needs, picked by the point index."""
    n, ic_chunk, height, width, ic_bn = (int(d) for d in data.shape)
    top, left, bottom, right = (int(p) for p in padding)
    alpha = m + 2
    bt = MATRICES[m]["BT"]
    out_h, out_w = height + top + bottom - 2, width + left + right - 2
    tiles_h, tiles_w = _tile_grid(out_h, out_w, m)
    # Pad to whole tiles: the last tiles of an output not a multiple of m read past the padding.
    padded = topi.nn.pad(data, (0, 0, top, left, 0),
                         (0, 0, m * tiles_h + 2 - height - top, m * tiles_w + 2 - width - left, 0), name="data_pad")

    tiles = n * tiles_h * tiles_w

    def tile_value(e, p, c):
        b, rest = p // (tiles_h * tiles_w), p % (tiles_h * tiles_w)
        y0, x0 = rest // tiles_w * m, rest % tiles_w * m

        def d(i, j):
            return padded[b, c // ic_bn, y0 + i, x0 + j, c % ic_bn]

        def point(eps, nu):  # sum_i B^T[eps, i] (sum_j d[i, j] B^T[nu, j])
            return _combine(bt[eps], lambda i: _combine(bt[nu], lambda j: d(i, j)))

        value = _select(e, [point(eps, nu) for eps in range(alpha) for nu in range(alpha)])
        return value if tiles == gemm_rows(tiles) else tvm.tirx.if_then_else(p < tiles, value, tvm.tirx.const(0.0, data.dtype))

    from ..tuning.templates import ANNOTATION, WINOGRAD_INPUT  # the registry owns its templates' names

    attrs = {ANNOTATION: WINOGRAD_INPUT, "tvmopt.lanes": ic_bn}
    return te.compute((alpha * alpha, gemm_rows(tiles), ic_chunk * ic_bn), tile_value, name="winograd_input", attrs=attrs)

def gemm_rows(tiles: int) -> int:
    """The GEMMs' rows: the tiles, rounded up to a multiple of ROW_MULTIPLE (zero rows, never read
    back). The dense template's register tile takes a divisor of the rows: 49 tiles (ResNet-18's
    14x14 layer) offered 1 or 7 rows, and 7 x 1 vectors ran at 143 GFLOP/s on AVX2."""
    return -(-tiles // ROW_MULTIPLE) * ROW_MULTIPLE


def batched_gemm(v: te.Tensor, u: te.Tensor) -> te.Tensor:
    """M[e, tile, k] = sum_c V[e, tile, c] U[e, c, k]: one GEMM per transform point, marked for the dense template
    by compiler/annotate.py like any GEMM with a constant right operand."""
    channels = te.reduce_axis((0, int(v.shape[2])), name="c")
    rows = int(v.shape[1])
    # Many rows: each thread takes its share of the tiles for every point (tuning/templates.py:
    # dense, ROWS_OUTER), the tiles the same thread's input transform wrote and whose outputs its
    # output transform reads.
    from ..tuning.templates import ROWS_OUTER

    attrs = {ROWS_OUTER: 1} if rows >= OWNED_ROWS else {}
    return te.compute(
        (int(v.shape[0]), rows, int(u.shape[2])),
        lambda e, p, k: te.sum(v[e, p, channels] * u[e, channels, k], axis=channels),
        name="winograd_gemm", attrs=attrs,
    )


def transform_output(products: te.Tensor, out_shape) -> te.Tensor:
    """Y[n, k/o, y, x, o] = (A^T M A)[y % m, x % m] of the tile holding (y, x)."""
    n, oc_chunk, out_h, out_w, oc_bn = (int(d) for d in out_shape)
    m = _tile_of(int(products.shape[0]))
    alpha = m + 2
    at = MATRICES[m]["AT"]
    tiles_h, tiles_w = _tile_grid(out_h, out_w, m)

    def value(b, kc, y, x, kb):
        p = (b * tiles_h + y // m) * tiles_w + x // m
        k = kc * oc_bn + kb

        def out(i, j):  # sum_eps A^T[i, eps] (sum_nu M[eps, nu] A^T[j, nu])
            return _combine(at[i], lambda eps: _combine(at[j], lambda nu: products[eps * alpha + nu, p, k]))

        return _select(y % m, [_select(x % m, [out(i, j) for j in range(m)]) for i in range(m)])

    from ..tuning.templates import ANNOTATION, WINOGRAD_OUTPUT

    attrs = {ANNOTATION: WINOGRAD_OUTPUT, "tvmopt.tile": m}
    return te.compute((n, oc_chunk, out_h, out_w, oc_bn), value, name="winograd_output", attrs=attrs)

"""Schedule templates for the kernels that dominate CPU inference, as MetaSchedule custom rules.

MetaSchedule's generic multi-level tiling can express a fast blocked convolution or GEMM, but in
the 40-60 trials a 15-minute session gives each kernel it rarely finds one: a ResNet-18 conv
reached 33 GFLOP/s after 64 trials, ONNX Runtime's MLAS runs it at ~85 per core. These
templates fix the structure a hand-written kernel has (MLAS, TOPI's x86 NCHWc schedule): a
register tile of accumulators (output channels x output columns, or GEMM rows x columns),
vectorized over the channel block, the whole reduction inside it, epilogue fused, parallel
over the outer tiles (a classifier head's GEMV, whose width no vector divides, is vectorized
along the reduction instead). Only the tile sizes are left to search: the dense, GEMV and depthwise templates
sample them (sample_perfect_tile, so MetaSchedule's tile-size mutator and cost model work on
them); the conv template enumerates the register tiles that fit, one design space each
(register_tiles). Weights are re-laid-out for the chosen tiling by MetaSchedule's RewriteLayout
postproc and packed once at compile time.

The compiler marks a block with `schedule_rule = <name>` (compiler/layout.py, compiler/passes.py);
MetaSchedule's ApplyCustomRule then calls `s_tir.meta_schedule.<target key>.<name>` instead of
its generic rules. A template that does not recognise the block's structure unmarks it, and the
generic rules take over.
"""

from __future__ import annotations

import math
from typing import Callable

from tvm.s_tir import Schedule

from .._compat import region_buffers

CONV2D_NCHWC = "tvmopt_conv2d_nchwc"
DEPTHWISE_NCHWC = "tvmopt_depthwise_nchwc"
DENSE = "tvmopt_dense"
GEMV = "tvmopt_gemv"
WINOGRAD_INPUT = "tvmopt_winograd_input"
WINOGRAD_OUTPUT = "tvmopt_winograd_output"
DEPTHWISE_POINTWISE = "tvmopt_depthwise_pointwise"
# TOPI marks its max pools with this rule name itself; no rule of TVM's answers to it on CPUs.
MAX_POOL = "meta_schedule.pool_max"
ANNOTATION = "schedule_rule"
ROWS_OUTER = "tvmopt.rows_outer"  # dense: parallel over the rows first (compiler/winograd.py)

# Register tile limits (accumulator vectors = product of the inner tiles). 16 vector registers
# on AVX2 hold up to ~12 accumulators plus operands; AVX-512 and NEON have 32.
MAX_CHANNEL_VECTORS = 4
MAX_COLUMNS = 8
# GEMV: columns whose lane-wise partial sums stay in registers at once.
MAX_GEMV_COLUMNS = 16


def _fallback(sch: Schedule, block) -> list[Schedule]:
    """Let MetaSchedule's generic rules schedule this block after all."""
    sch.unannotate(block, ANNOTATION)
    return [sch]


def _epilogue(sch: Schedule, block):
    """Inline the element-wise blocks after `block` (bias, residual add, activation) into the last
    one, which is returned (None when nothing follows)."""
    inline, out, _ = epilogue_plan(sch, block)
    for intermediate in inline:
        sch.compute_inline(intermediate)
    return out


def epilogue_plan(sch: Schedule, block) -> tuple[list, object, bool]:
    """(blocks to inline, the block computed per tile, whether the epilogue is a DAG) of `block`.

    The blocks after it form a chain (bias, ReLU) or a DAG: in GELU's x * erf(x / sqrt 2) and
    SiLU's x * sigmoid(x) the biased value feeds two blocks. Only the chain used to be taken; the
    rest of a DAG was left to the generic rules, which the annotated root keeps off the
    parallel/vectorize pass: a serial loop after the parallel kernel (bert4's FFN GEMM + GELU).
    Now every element-wise block after `block` is inlined into the last; if something else
    follows (a reduction, a second output), still the single-consumer chain only.
    compiler/annotate.py marks DAG epilogues, so that records scheduled the old way stop applying.
    """
    chain = []
    current = block
    while len(consumers := sch.get_consumers(current)) == 1:
        current = consumers[0]
        chain.append(current)
    after = _blocks_after(sch, block)
    if len(after) > len(chain) and all(_inlinable(sch, b) for b in after[:-1]):
        return after[:-1], after[-1], True
    return chain[:-1], (chain[-1] if chain else None), False


def _blocks_after(sch: Schedule, block) -> list:
    """The blocks that follow `block` in the function (its epilogue, in a fused kernel)."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    position = next(i for i, b in enumerate(blocks) if sch.get(b).same_as(sch.get(block)))
    return blocks[position + 1:]


def _inlinable(sch: Schedule, block) -> bool:
    """An element-wise block that writes an intermediate buffer, not one of the function's outputs."""
    stmt = sch.get(block)
    params = sch.mod["main"].params  # 0.27: a PrimFunc's params are its buffers (no buffer_map)
    written = region_buffers(stmt.writes)
    return (all(int(iv.iter_type) == 0 for iv in stmt.iter_vars) and len(written) == 1
            and not any(written[0].same_as(p) for p in params))


def _schedule_pad(sch: Schedule, block, rows_first: bool = False) -> None:
    """The padded-input stage stays its own loop nest (a branch-free kernel), parallel and vectorized.

    `rows_first` (the consumer splits rows between threads): the pad splits rows too, (n, h, c)
    instead of (n, c, h), so each thread pads the rows it will read, from rows the previous kernel's
    same thread wrote, instead of half of every row crossing cores twice (see _conv_tile)."""
    for producer in sch.get_producers(block):
        loops = sch.get_loops(producer)
        if sch.get(producer).name_hint.endswith("pad") and len(loops) >= 3:
            if rows_first and len(loops) >= 4:
                sch.reorder(loops[0], loops[2], loops[1])
                loops = sch.get_loops(producer)
            sch.parallel(sch.fuse(*loops[:3]))
            sch.vectorize(loops[-1])
            sch.annotate(producer, ANNOTATION, "None")  # scheduled: keep the generic rules off it


def _pad_under(sch: Schedule, block, loop) -> None:
    """The padded-input stage computed under `loop`, for the region one iteration reads, vectorized."""
    for producer in sch.get_producers(block):
        if sch.get(producer).name_hint.endswith("pad"):
            sch.compute_at(producer, loop, preserve_unit_loops=True)
            sch.vectorize(sch.get_loops(producer)[-1])
            sch.annotate(producer, ANNOTATION, "None")


def conv2d_nchwc(sch: Schedule, conv) -> list[Schedule]:
    """conv2d_NCHWc (loops n, oc_chunk, oh, ow, oc_block | ic, kh, kw): a register tile of
    oc_chunk x ow accumulator vectors over the whole ic x kh x kw reduction.

    One design space per register tile that fits the register file (register_tiles): the tile
    widths need not divide the output width (a 7-wide row gets 4 + 3 columns, as MLAS does,
    instead of 7 x 1 or 1 x 7), so they are fixed numbers, not sample_perfect_tile decisions.
    """
    loops = sch.get_loops(conv)
    ic_block = _ic_block(sch, conv)
    if len(loops) != 8 or ic_block is None:
        return _fallback(sch, conv)
    extents = [_extent(sch, loop) for loop in loops]
    if any(e is None for e in extents):
        return _fallback(sch, conv)
    oc_chunks, out_width, lanes = extents[1], extents[3], extents[4]
    spaces = []
    for channels, columns, columns_outer in register_tiles(oc_chunks, out_width, vector_registers(lanes)):
        space = sch.copy()  # random variables of `sch` stay valid in the copy
        _conv_tile(space, conv, ic_block, channels, columns, columns_outer)
        spaces.append(space)
    return spaces


def _conv_tile(sch: Schedule, conv, ic_block: int, channels: int, columns: int, columns_outer: bool) -> None:
    n, occ, oh, ow, ocb, ic, kh, kw = sch.get_loops(conv)
    ragged = _extent(sch, ow) % columns != 0
    rows_first = _rows_first(sch, conv, oh)
    occ_o, occ_i = sch.split(occ, [None, channels])
    ow_o, ow_i = sch.split(ow, [None, columns])
    ic_o, ic_i = sch.split(ic, [None, ic_block])
    tile = (ow_i, occ_i) if columns_outer else (occ_i, ow_i)
    # Rows first: each thread takes a band of output rows (all channels), and the next kernel,
    # parallel over rows too (a fused depthwise+1x1, a Winograd input transform, the next conv),
    # reads the rows its own thread wrote. Split by channels first, half of every row it reads
    # comes from the other core's cache: ~340 ns a line when the two vCPUs share no L3
    # (benchmarks/cross_core.py); MobileNetV2 ran 15% faster in that state with rows first.
    parallel = (n, oh, occ_o) if rows_first else (n, occ_o, oh)
    sch.reorder(*parallel, ow_o, ic_o, kh, kw, ic_i, *tile, ocb)
    if ragged:
        # The last tile of a row is narrower: LoopPartition (hinted) gives it its own copy of the
        # body, so the full tiles run without the bounds predicate in the unrolled register tile.
        sch.annotate(ow_o, "pragma_loop_partition_hint", 1)
    _finish(sch, conv, outer=sch.fuse(*parallel), tile=ow_o, reduction=ic_o, unrolled=tile, vector=ocb,
            rows_first=rows_first)


# A conv splits its output rows between threads, not its channels, where the map has at least this
# many rows (7+ per thread) and its weights are small enough for each thread to read them whole
# (ResNet-18's stride-2 conv to 14x14, 1.2 MB of weights, keeps splitting its channels).
ROWS_FIRST_MIN_ROWS = 14
ROWS_FIRST_MAX_WEIGHT_BYTES = 512 * 1024


def _rows_first(sch: Schedule, conv, oh) -> bool:
    """Whether the conv's parallel loop takes output rows first (see _conv_tile)."""
    rows = _extent(sch, oh)
    reads = region_buffers(sch.get(conv).reads)
    weights = [b for b in reads if len(b.shape) == 6]  # OIHWio
    if rows is None or not weights or not all(hasattr(d, "value") for d in weights[0].shape):
        return False
    weight_bytes = weights[0].dtype.bits // 8 * math.prod(int(d) for d in weights[0].shape)
    return rows >= ROWS_FIRST_MIN_ROWS and weight_bytes <= ROWS_FIRST_MAX_WEIGHT_BYTES


def vector_registers(lanes: int) -> int:
    """Vector registers of the CPU a block of `lanes` floats was chosen for: 16 on AVX2 (8 lanes),
    32 on AVX-512 (16 lanes) and on NEON (4 lanes). Half blocks (compiler/layout.py: 8 lanes on
    AVX-512, 4 on AVX2) get the budget of the block that width usually is: conservative on AVX-512,
    too generous on AVX2 (a tile may spill; such channel counts, 4 mod 8, are rare). The rule sees
    only the block, not the target."""
    return 16 if lanes == 8 else 32


def register_tiles(oc_chunks: int, out_width: int, registers: int) -> list[tuple[int, int, bool]]:
    """(channel blocks, output columns, columns outer) register tiles worth measuring.

    The accumulators, one weight vector per channel block and one broadcast input must fit the
    register file (a spill costs more than the tile gains: on ResNet-18's 7x7 layer on AVX2, 4 x 3
    accumulators ran at 87 GFLOP/s, 2 x 5 at 107). Channel blocks divide the chunk count (the
    weights are packed per tile); tiles far below the register budget (fewer than 4 accumulators) are left out
    unless nothing bigger fits. Both orders of the unrolled tile are kept: which one LLVM
    schedules better varies by layer (2 x 4 on ResNet-18's 28x28 layer: 147 vs 135 GFLOP/s,
    on its 7x7 layer: 105 vs 112).
    """
    tiles = []
    for channels in (c for c in range(1, MAX_CHANNEL_VECTORS + 1) if oc_chunks % c == 0):
        for columns in range(1, min(out_width, MAX_COLUMNS) + 1):
            if channels * columns + channels + 1 <= registers:
                tiles.append((channels, columns))
    big = [t for t in tiles if t[0] * t[1] >= 4]
    tiles = big or [max(tiles, key=lambda t: t[0] * t[1])]
    return [(c, w, outer) for c, w in tiles for outer in (False, True) if not (outer and (c == 1 or w == 1))]


def _extent(sch: Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if hasattr(extent, "value") else None


def depthwise_nchwc(sch: Schedule, conv) -> list[Schedule]:
    """depthwise_conv2d_NCHWc (loops n, c_chunk, oh, ow, c_block | kh, kw): a register tile of
    output rows x columns over the kh x kw window, vectorized over the channel block.

    The padded input is built per tile of output rows (a few rows, in L1/L2), not for the whole
    map first: a depthwise conv does little arithmetic per byte, and in a model its input comes
    from memory, not from the cache a kernel timed alone enjoys. MobileNetV2's 96-channel
    112x112 stride-2 one, caches flushed before each call: 320-390 us with the whole padded copy
    (5 MB written and read again), 256-272 us per row tile; warm, alone, both ~100 us."""
    loops = sch.get_loops(conv)
    if len(loops) != 7:
        return _fallback(sch, conv)
    n, cc, oh, ow, cb, kh, kw = loops
    oh_o, oh_i = sch.split(oh, sch.sample_perfect_tile(oh, n=2, max_innermost_factor=2))
    ow_o, ow_i = sch.split(ow, sch.sample_perfect_tile(ow, n=2, max_innermost_factor=MAX_COLUMNS))
    sch.reorder(n, cc, oh_o, ow_o, kh, kw, oh_i, ow_i, cb)
    sch.unroll(kw)
    outer = sch.fuse(n, cc, oh_o)
    _finish(sch, conv, outer=outer, tile=ow_o, reduction=kh, unrolled=(oh_i, ow_i), vector=cb, pad_at=outer)
    return [sch]


def _ic_block(sch: Schedule, conv) -> int | None:
    """The input-channel block of a conv2d_NCHWc block (the data buffer's last dimension)."""
    block = sch.get(conv)
    reads = region_buffers(block.reads)
    shapes = [tuple(int(d) for d in b.shape) for b in reads if len(b.shape) == 5]
    return shapes[0][-1] if shapes else None


def _finish(sch: Schedule, block, outer, tile, reduction, unrolled, vector, pad_at=None,
            rows_first: bool = False) -> None:
    """Common tail: parallel outer loop, vectorized and unrolled register tile, epilogue computed
    per tile from the (local) accumulators, reduction init split off, padding stage scheduled
    (its own parallel loop nest, or computed under `pad_at` for just the rows that loop needs).

    Everything is expressed on the block's own loops (split keeps unit loops), so the trace
    replays for any sampled tile sizes; compute_at would drop unit loops and shift positions.

    """
    sch.parallel(outer)
    _register_tile(sch, block, tile, reduction, unrolled, vector)
    if pad_at is None:
        _schedule_pad(sch, block, rows_first)
    else:
        _pad_under(sch, block, pad_at)
    # The whole function is scheduled: keep MetaSchedule's ParallelizeVectorizeUnroll off the root
    # block (its postproc would try to parallelize loops this schedule already parallelized).
    sch.annotate(sch.get_sblock("root"), ANNOTATION, "None")


def _register_tile(sch: Schedule, block, tile, reduction, unrolled, vector) -> None:
    """The register tile: vectorized and unrolled, the epilogue computed per `tile` from the
    (local) accumulators, the reduction's init split off."""
    sch.vectorize(vector)
    for loop in unrolled:
        sch.unroll(loop)
    out = _epilogue(sch, block)
    if out is not None:
        _from_registers(sch, block, out, tile)
    sch.decompose_reduction(block, reduction)


def _from_registers(sch: Schedule, block, out, tile) -> None:
    """`out`, the element-wise block after `block`, computed per `tile` from `block`'s accumulators,
    which become local (registers)."""
    # preserve_unit_loops: the epilogue gets the same number of loops whatever the sampled tile
    # sizes, so the trace replays (an instruction whose output count varies cannot).
    sch.reverse_compute_at(out, tile, preserve_unit_loops=True)
    sch.set_scope(block, 0, "local")
    sch.vectorize(sch.get_loops(out)[-1])
    sch.annotate(out, ANNOTATION, "None")


def dense(sch: Schedule, gemm) -> list[Schedule]:
    """C[.., m, n] += A[.., m, k] * B[.., k, n]: a register tile of m rows x n vectors over the whole
    k reduction (B broadcast-free: a row of B is loaded as vectors, A's element broadcast),
    parallel over the tiles, column panels outermost so a panel of B stays in cache."""
    loops = sch.get_loops(gemm)
    lanes = int(sch.get(gemm).annotations.get("tvmopt.lanes", 8))
    if len(loops) < 3:
        return _fallback(sch, gemm)
    *batch, m, n, k = loops
    _inline_producers(sch, gemm)
    n_o, n_v = sch.split(n, [None, lanes])
    n_oo, n_i = sch.split(n_o, sch.sample_perfect_tile(n_o, n=2, max_innermost_factor=MAX_CHANNEL_VECTORS))
    m_o, m_i = sch.split(m, sch.sample_perfect_tile(m, n=2, max_innermost_factor=MAX_COLUMNS))
    # The threads split the column panels (and the batch) first, or, for a GEMM marked ROWS_OUTER
    # (compiler/winograd.py: batched_gemm), the rows.
    rows_outer = int(sch.get(gemm).annotations.get(ROWS_OUTER, 0))
    parallel = (m_o, *batch, n_oo) if rows_outer else (*batch, n_oo, m_o)
    sch.reorder(*parallel, k, m_i, n_i, n_v)
    outer = sch.fuse(*parallel)
    _finish(sch, gemm, outer=outer, tile=outer, reduction=k, unrolled=(m_i, n_i), vector=n_v)
    return [sch]


def gemv(sch: Schedule, gemm) -> list[Schedule]:
    """C[.., m, n] += A[.., m, k] * B[k, n] with few rows (a classifier head at batch 1, whose n
    is rarely a multiple of the vector width): vectorized along k instead of n. Each of a tile of
    n columns keeps a vector of lane-wise partial sums in registers while A's row and B's columns
    stream by (B re-laid-out by RewriteLayout so each column tile's k run is contiguous), then the
    lanes are summed; parallel over the column tiles. B must be a layout-free (constant) weight."""
    loops = sch.get_loops(gemm)
    lanes = int(sch.get(gemm).annotations.get("tvmopt.lanes", 8))
    if len(loops) < 3 or not _weight_is_layout_free(sch, gemm):
        return _fallback(sch, gemm)
    *batch, m, n, k = loops
    depth = _extent(sch, k)
    if depth is None or depth % lanes:
        return _fallback(sch, gemm)
    _inline_producers(sch, gemm)
    k_o, k_v = sch.split(k, [None, lanes])
    # rfactor: partial[.., m, n, lane] += A * B over k_o (lanes now a spatial, vectorizable axis);
    # the original block becomes the lane sum.
    partial = sch.rfactor(k_v, factor_axis=len(batch) + 2)
    *batch, m, n, k_o, k_v = sch.get_loops(partial)  # rfactor rebuilt the loops around it
    n_o, n_i = sch.split(n, sch.sample_perfect_tile(n, n=2, max_innermost_factor=MAX_GEMV_COLUMNS))
    sch.reorder(*batch, m, n_o, k_o, n_i, k_v)
    outer = sch.fuse(*batch, m, n_o)
    sch.parallel(outer)
    sch.unroll(n_i)
    sch.vectorize(k_v)
    sch.set_scope(partial, 0, "local")
    sch.reverse_compute_at(gemm, outer, preserve_unit_loops=True)
    sch.annotate(gemm, ANNOTATION, "None")
    out = _epilogue(sch, gemm)
    if out is not None:
        sch.reverse_compute_at(out, outer, preserve_unit_loops=True)
        sch.annotate(out, ANNOTATION, "None")
    sch.decompose_reduction(partial, k_o)
    sch.annotate(sch.get_sblock("root"), ANNOTATION, "None")
    return [sch]


def winograd_input(sch: Schedule, transform) -> list[Schedule]:
    """V[e, tile, c] (compiler/winograd.py): per tile and channel vector, the (m+2)^2 points of the
    transform unrolled, so each becomes the few loads and adds of the input tile its row of the
    table needs (the point's selection folds to a constant); parallel over tiles. Nothing is left
    to search. The generic rules took 1062 us for ResNet-18's 56x56x64 layer in 2x2 tiles, in the
    only candidate they built; this, 86 (65 in 4x4 tiles)."""
    loops = sch.get_loops(transform)
    lanes = int(sch.get(transform).annotations.get("tvmopt.lanes", 8))
    if len(loops) != 3 or (_extent(sch, loops[2]) or 1) % lanes:
        return _fallback(sch, transform)
    point, tile, channel = loops
    chunk, lane = sch.split(channel, [None, lanes])
    sch.reorder(tile, chunk, point, lane)
    sch.parallel(sch.fuse(tile, chunk))
    sch.unroll(point)
    sch.vectorize(lane)
    _schedule_pad(sch, transform, rows_first=True)  # tiles are row-major: the threads split rows
    sch.annotate(sch.get_sblock("root"), ANNOTATION, "None")
    return [sch]


def winograd_output(sch: Schedule, transform) -> list[Schedule]:
    """Y[n, k/o, y, x, o] (compiler/winograd.py) with its epilogue (bias, residual, ReLU) inlined:
    per output tile and channel vector, its m x m outputs unrolled, so each output's index tables
    fold to constants and the tile's (m+2)^2 loads of M are shared by all of them; parallel over
    tile rows. The generic rules evaluated the tables per element: 108 us for ResNet-18's 28x28
    layer in 4x4 tiles, against 22 for the 2x2 tiles' simpler tables."""
    tile = int(sch.get(transform).annotations.get("tvmopt.tile", 0))
    if tile < 2 or len(sch.get_loops(transform)) != 5:
        return _fallback(sch, transform)
    out = _epilogue(sch, transform)
    if out is not None:
        sch.compute_inline(transform)
    n, chunk, y, x, lane = sch.get_loops(out if out is not None else transform)
    y_tile, y_in = sch.split(y, [None, tile])
    x_tile, x_in = sch.split(x, [None, tile])
    # Tile rows outermost: a thread reads the GEMM rows (tiles) its share of the GEMM wrote.
    sch.reorder(n, y_tile, chunk, x_tile, y_in, x_in, lane)
    sch.parallel(sch.fuse(n, y_tile, chunk))
    sch.unroll(y_in)
    sch.unroll(x_in)
    sch.vectorize(lane)
    sch.annotate(sch.get_sblock("root"), ANNOTATION, "None")
    return [sch]


def depthwise_pointwise(sch: Schedule, conv) -> list[Schedule]:
    """A 1x1 conv over a depthwise conv's output (compiler/dwpw.py), loops n, oc_chunk, oh, ow,
    oc_block | ic: parallel over output rows; per row, the depthwise row it reads is computed first
    (all channels, vectorized over the channel block, its bias and clip applied), then the 1x1
    conv's register tiles (oc_chunk x ow accumulators, as conv2d_nchwc) reduce over it.
    One design space per register tile."""
    loops = sch.get_loops(conv)
    if len(loops) != 6:
        return _fallback(sch, conv)
    extents = [_extent(sch, loop) for loop in loops]
    ic_block = _ic_block(sch, conv)
    if any(e is None for e in extents) or ic_block is None:
        return _fallback(sch, conv)
    oc_chunks, out_width, lanes = extents[1], extents[3], extents[4]
    spaces = []
    for channels, columns, columns_outer in register_tiles(oc_chunks, out_width, vector_registers(lanes)):
        space = sch.copy()
        _depthwise_pointwise_tile(space, conv, ic_block, channels, columns, columns_outer)
        spaces.append(space)
    return spaces


def _depthwise_pointwise_tile(sch: Schedule, conv, ic_block: int, channels: int, columns: int,
                              columns_outer: bool) -> None:
    n, occ, oh, ow, ocb, ic = sch.get_loops(conv)
    # The depthwise chain: [pad ->] depthwise -> [bias ->] [max ->] [min ->] this conv.
    chain = []
    block = conv
    while producers := [p for p in sch.get_producers(block) if not sch.get(p).name_hint.endswith("pad")]:
        block = producers[0]
        chain.append(block)
    depthwise, elementwise = chain[-1], chain[:-1]  # elementwise: nearest first
    for stage in elementwise[1:]:
        sch.compute_inline(stage)  # bias and max into the last (min): one pass over the row
    ragged = _extent(sch, ow) % columns != 0
    # A few output rows per parallel iteration: the padded input rows the depthwise window reads
    # (rows + 2) are copied once for all of them, not three times for one.
    oh_o, oh_i = sch.split(oh, sch.sample_perfect_tile(oh, n=2, max_innermost_factor=4))
    occ_o, occ_i = sch.split(occ, [None, channels])
    ow_o, ow_i = sch.split(ow, [None, columns])
    ic_o, ic_i = sch.split(ic, [None, ic_block])
    tile = (ow_i, occ_i) if columns_outer else (occ_i, ow_i)
    sch.reorder(n, oh_o, oh_i, occ_o, ow_o, ic_o, ic_i, *tile, ocb)
    if ragged:  # as in _conv_tile: the narrower last tile gets its own copy of the body
        sch.annotate(ow_o, "pragma_loop_partition_hint", 1)
    row = sch.fuse(n, oh_o)
    sch.parallel(row)  # before the producers move under it (parallel checks the blocks under the loop)
    if elementwise:
        sch.compute_at(elementwise[0], row, preserve_unit_loops=True)
    sch.compute_at(depthwise, row, preserve_unit_loops=True)
    # The depthwise row: a register tile of up to MAX_COLUMNS columns x the channel block, over the
    # kernel window, then its bias and clip from the registers into the row buffer.
    *_, d_ow, d_cb, d_kh, d_kw = sch.get_loops(depthwise)
    d_ow_o, d_ow_i = sch.split(d_ow, [None, _columns(_extent(sch, d_ow))])
    sch.reorder(d_ow_o, d_kh, d_kw, d_ow_i, d_cb)
    sch.unroll(d_kw)
    sch.unroll(d_ow_i)
    sch.vectorize(d_cb)
    sch.annotate(depthwise, ANNOTATION, "None")
    if elementwise:
        _from_registers(sch, depthwise, elementwise[0], d_ow_o)
    sch.decompose_reduction(depthwise, d_kh)
    _pad_under(sch, depthwise, row)
    _register_tile(sch, conv, ow_o, ic_o, tile, ocb)
    sch.annotate(sch.get_sblock("root"), ANNOTATION, "None")


def max_pool_nchwc(sch: Schedule, pool) -> list[Schedule]:
    """Max pool over NCHW{b}c (loops n, c_chunk, oh, ow, c_block | kh, kw): threads split the
    output rows, as the convs around it do, the padding is computed inline (no padded copy), the
    channel block vectorized. MetaSchedule's generic rules split the channel chunks (ResNet-18's
    56x56 pool: thread 0 took chunks 0-1, thread 1 chunks 2-3, so the convs before and after it,
    which split rows, each read half their data from the other core) and padded the whole map
    first: 62-133 us alone against 31 for this, the same output."""
    loops = sch.get_loops(pool)
    if len(loops) != 7 or any(_extent(sch, loop) is None for loop in loops):
        return _fallback(sch, pool)
    n, c, oh, ow, cb, kh, kw = loops
    if sch.get_consumers(pool):  # an epilogue fused after it: the generic rules parallelize both
        return _fallback(sch, pool)
    for producer in sch.get_producers(pool):
        if not sch.get(producer).name_hint.startswith("pad"):
            return _fallback(sch, pool)
        sch.compute_inline(producer)
    sch.reorder(n, oh, c, ow, kh, kw, cb)
    sch.parallel(sch.fuse(n, oh))
    sch.vectorize(cb)
    sch.decompose_reduction(pool, kh)
    sch.annotate(sch.get_sblock("root"), ANNOTATION, "None")
    return [sch]


def _columns(width: int) -> int:
    """The largest divisor of `width` up to MAX_COLUMNS (a row's register tile without a remainder)."""
    return max(c for c in range(1, min(width, MAX_COLUMNS) + 1) if width % c == 0)


def _weight_is_layout_free(sch: Schedule, gemm) -> bool:
    """B (the second operand read) is one of the function's layout-free (constant) buffers."""
    func = sch.mod["main"]
    free = [int(i) for i in (func.attrs or {}).get("layout_free_buffers", [])]
    reads = region_buffers(sch.get(gemm).reads)
    # 0.27: a PrimFunc's params are the buffers' variables, which a read region's source is.
    return len(reads) >= 2 and any(reads[1].same_as(func.params[i]) for i in free)


def _inline_producers(sch: Schedule, block) -> None:
    """Element-wise producers fused before the GEMM (reshapes, casts) are computed inline."""
    for producer in sch.get_producers(block):
        sch.compute_inline(producer)


TEMPLATES: dict[str, Callable[[Schedule, object], list[Schedule]]] = {
    CONV2D_NCHWC: conv2d_nchwc,
    DEPTHWISE_NCHWC: depthwise_nchwc,
    DENSE: dense,
    GEMV: gemv,
    WINOGRAD_INPUT: winograd_input,
    WINOGRAD_OUTPUT: winograd_output,
    DEPTHWISE_POINTWISE: depthwise_pointwise,
    MAX_POOL: max_pool_nchwc,
}
# The templates that compute a fused epilogue per tile (epilogue_plan); the max pool's leaves one
# to the generic rules.
EPILOGUE_TEMPLATES = frozenset(TEMPLATES) - {MAX_POOL}


def register() -> None:
    """Make the templates known to MetaSchedule's ApplyCustomRule (for CPU target keys)."""
    import tvm_ffi

    for name, template in TEMPLATES.items():
        for key in ("cpu", "arm_cpu"):
            tvm_ffi.register_global_func(f"s_tir.meta_schedule.{key}.{name}", template, override=True)

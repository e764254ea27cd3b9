"""tvmopt's schedule templates (tuning/templates.py): the register tiles they offer, and that every
design space of the conv template builds and computes the unscheduled conv's result, including
tiles that do not divide the output width (the narrower last tile runs its own partitioned copy)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import te
from tvm.s_tir import Schedule

from tvmopt.compiler.layout import _conv2d_nchwc
from tvmopt.tuning import templates


@pytest.mark.parametrize("registers", [16, 32])
@pytest.mark.parametrize("oc_chunks, width", [(64, 7), (24, 14), (8, 56), (2, 1)])
def test_register_tiles_fit_the_register_file(oc_chunks, width, registers):
    tiles = templates.register_tiles(oc_chunks, width, registers)
    assert tiles and len(set(tiles)) == len(tiles)
    for channels, columns, _ in tiles:
        assert oc_chunks % channels == 0 and 1 <= columns <= width
        assert channels * columns + channels + 1 <= registers  # accumulators + weights + broadcast
    if width == 7 and registers == 16:
        # MLAS-style tiles whose width does not divide the row (4 + 3 columns), which perfect
        # tiling (1 or 7 columns) could not offer
        assert {(2, 4), (2, 5), (1, 5)} <= {(c, w) for c, w, _ in tiles}
        assert (4, 3) not in {(c, w) for c, w, _ in tiles}  # 12 accumulators + 4 weights spill on AVX2


def _conv_relu(width: int, height: int = 5) -> tvm.tirx.PrimFunc:
    """A blocked 3x3 conv (16 -> 32 channels, block 8, `height` x `width` output) with a ReLU epilogue."""
    data = te.placeholder((1, 2, height, width, 8), name="data")
    kernel = te.placeholder((4, 2, 3, 3, 8, 8), name="kernel")
    conv = _conv2d_nchwc(data, kernel, (1, 1), (1, 1, 1, 1), (1, 1), "float32")
    relu = te.compute(conv.shape, lambda *i: te.max(conv(*i), 0.0), name="relu")
    return te.create_prim_func([data, kernel, relu])


def test_every_conv_design_space_matches_the_unscheduled_conv():
    func = _conv_relu(width=7)
    sch = Schedule(func)
    spaces = templates.conv2d_nchwc(sch, sch.get_sblock("conv2d_NCHWc"))
    tiles = templates.register_tiles(4, 7, 16)
    assert len(spaces) == len(tiles)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, 2, 5, 7, 8)).astype("float32")
    kernel = rng.standard_normal((4, 2, 3, 3, 8, 8)).astype("float32")
    dev = tvm.cpu()
    target = tvm.target.Target({"kind": "llvm"})

    def run(mod) -> np.ndarray:
        lib = tvm.compile(mod, target=target)
        out = tvm.runtime.tensor(np.zeros((1, 4, 5, 7, 8), "float32"), dev)
        lib(tvm.runtime.tensor(data, dev), tvm.runtime.tensor(kernel, dev), out)
        return out.numpy()

    expected = run(tvm.IRModule({"main": func}))
    assert expected.max() > 0  # the ReLU left something to compare
    ragged = 0
    for space, (channels, columns, _) in zip(spaces, tiles):
        ragged += 7 % columns != 0
        np.testing.assert_allclose(run(space.mod), expected, rtol=1e-5, atol=1e-5,
                                   err_msg=f"tile {channels} x {columns}")
    assert ragged  # the partitioned narrower last tile was exercised


@pytest.mark.parametrize("height, rows_first", [(14, True), (7, False)])
def test_convs_with_many_rows_split_rows_between_threads(height, rows_first):
    """A conv with 14+ output rows and small weights is parallel over rows first (each thread
    writes whole rows, which the next row-parallel kernel reads on the same thread); with fewer
    rows, over channel blocks first. Either order computes the same conv."""
    func = _conv_relu(width=7, height=height)
    sch = Schedule(func)
    conv = sch.get_sblock("conv2d_NCHWc")
    space = templates.conv2d_nchwc(sch, conv)[0]
    outer = space.get(space.get_loops(space.get_sblock("conv2d_NCHWc_update"))[0])
    assert int(outer.kind) == 1  # ForKind.PARALLEL
    # sch.fuse names the fused loop after its parts, outermost first: b_y_oc_0 or b_oc_0_y
    assert outer.loop_var.name.startswith("b_y_") == rows_first, outer.loop_var.name
    # The padded input is split the same way: each thread pads the rows it reads.
    pad = space.get(space.get_loops(space.get_sblock("data_pad"))[0])
    assert int(pad.kind) == 1 and pad.loop_var.name.startswith("i0_i2_") == rows_first, pad.loop_var.name

    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, 2, height, 7, 8)).astype("float32")
    kernel = rng.standard_normal((4, 2, 3, 3, 8, 8)).astype("float32")
    target = tvm.target.Target({"kind": "llvm"})
    outs = []
    for mod in (tvm.IRModule({"main": func}), space.mod):
        out = tvm.runtime.tensor(np.zeros((1, 4, height, 7, 8), "float32"))
        tvm.compile(mod, target=target)(tvm.runtime.tensor(data), tvm.runtime.tensor(kernel), out)
        outs.append(out.numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def _linear(rows: int, width: int, depth: int):
    """(A, B, bias, A x B + bias) as Relax legalizes a linear layer: C[rows, width]."""
    a = te.placeholder((rows, depth), name="a")
    b = te.placeholder((depth, width), name="b")
    bias = te.placeholder((width,), name="bias")
    k = te.reduce_axis((0, depth), name="k")
    matmul = te.compute((rows, width), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="matmul")
    return a, b, bias, te.compute((rows, width), lambda i, j: matmul[i, j] + bias[j], name="T_add")


def _gemm_bias(rows: int, width: int, depth: int, weight_is_constant: bool = True) -> tvm.tirx.PrimFunc:
    """C[rows, width] = A[rows, depth] x B[depth, width] + bias."""
    func = te.create_prim_func(list(_linear(rows, width, depth)))
    return func.with_attr("layout_free_buffers", [1, 2]) if weight_is_constant else func


@pytest.mark.parametrize("rows, width, depth", [(1, 10, 256), (1, 1000, 64), (3, 10, 32)])
def test_gemv_template_matches_numpy_for_every_sampled_tile(rows, width, depth):
    """A classifier head (few rows, a width no vector divides) vectorized along k: each sampled
    column tile builds and computes A x B + bias."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((rows, depth)).astype("float32"), rng.standard_normal((depth, width)).astype("float32")
    bias = rng.standard_normal(width).astype("float32")
    dev = tvm.cpu()
    tiles = set()
    for seed in range(1, 7):
        sch = Schedule(_gemm_bias(rows, width, depth), seed=seed)
        gemm = sch.get_sblock("matmul")
        sch.annotate(gemm, "tvmopt.lanes", 8)
        (space,) = templates.gemv(sch, gemm)
        assert "rfactor" in str(space.trace)  # scheduled by the template, not handed back
        tiles.add(str(list(space.trace.decisions.values())))
        lib = tvm.compile(space.mod, target=tvm.target.Target({"kind": "llvm"}))
        out = tvm.runtime.tensor(np.zeros((rows, width), "float32"), dev)
        lib(*(tvm.runtime.tensor(x, dev) for x in (a, b, bias)), out)
        np.testing.assert_allclose(out.numpy(), a @ b + bias, rtol=1e-4, atol=1e-4)
    assert len(tiles) > 1  # different column tiles were drawn and checked


def test_gemv_template_leaves_a_gemm_over_activations_to_the_generic_rules():
    sch = Schedule(_gemm_bias(1, 10, 64, weight_is_constant=False))
    gemm = sch.get_sblock("matmul")
    sch.annotate(gemm, "schedule_rule", templates.GEMV)
    (space,) = templates.gemv(sch, gemm)
    assert "schedule_rule" not in space.get(gemm).annotations


@pytest.mark.parametrize("rows, width, depth, kind", [
    (1, 10, 8192, "tvmopt_gemv"),   # the demo's classifier head
    (1, 40, 512, "tvmopt_gemv"),    # 40 classes
    (1, 1000, 512, None),           # ResNet-18's: generic tiling along n is as fast or faster
    (4, 10, 64, "tvmopt_gemv"),     # a batch-4 bucket
    (1, 32, 64, "tvmopt_dense"),    # a width the vector divides
    (16, 10, 64, None),             # many rows, a ragged width: MetaSchedule's rules
    (1, 10, 60, None),              # a depth no vector divides
])
def test_gemms_are_marked_for_the_template_that_fits(rows, width, depth, kind):
    from tvmopt.compiler.annotate import mark_gemms

    mod = mark_gemms(16)(tvm.IRModule({"main": _gemm_bias(rows, width, depth)}))
    sch = Schedule(mod)
    assert sch.get(sch.get_sblock("matmul")).annotations.get("schedule_rule") == kind


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_template_pads_per_row_tile_and_matches_the_unscheduled_conv(stride):
    """The padded input is built under the parallel row-tile loop (no whole-map copy), for every
    sampled tile, and the result is the unscheduled conv's (ReLU epilogue included)."""
    from tvmopt.compiler.layout import _depthwise_nchwc

    data = te.placeholder((1, 2, 9, 10, 8), name="data")
    kernel = te.placeholder((2, 1, 3, 3, 1, 8), name="kernel")
    conv = _depthwise_nchwc(data, kernel, (stride, stride), (1, 1, 1, 1), (1, 1), "float32")
    relu = te.compute(conv.shape, lambda *i: te.max(conv(*i), 0.0), name="relu")
    func = te.create_prim_func([data, kernel, relu])
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 9, 10, 8)).astype("float32")
    w = rng.standard_normal((2, 1, 3, 3, 1, 8)).astype("float32")
    out_shape = tuple(int(d) for d in relu.shape)
    dev = tvm.cpu()
    target = tvm.target.Target({"kind": "llvm"})

    def run(mod) -> np.ndarray:
        out = tvm.runtime.tensor(np.zeros(out_shape, "float32"), dev)
        tvm.compile(mod, target=target)(tvm.runtime.tensor(x, dev), tvm.runtime.tensor(w, dev), out)
        return out.numpy()

    expected = run(tvm.IRModule({"main": func}))
    for seed in (1, 2, 3):
        sch = Schedule(func, seed=seed)
        (space,) = templates.depthwise_nchwc(sch, sch.get_sblock("depthwise_conv2d_NCHWc"))
        pad_outer = space.get(space.get_loops(space.get_sblock("data_pad"))[0])
        conv_outer = space.get(space.get_loops(space.get_sblock("depthwise_conv2d_NCHWc_update"))[0])
        assert pad_outer.same_as(conv_outer) and pad_outer.kind == tvm.tirx.ForKind.PARALLEL  # under the row tiles
        np.testing.assert_allclose(run(space.mod), expected, rtol=1e-5, atol=1e-5)


def _gemm_bias_silu(rows: int, width: int, depth: int) -> tvm.tirx.PrimFunc:
    """A linear layer with a SiLU epilogue, y * sigmoid(y): the biased value feeds two blocks, so
    the epilogue is a DAG, not a chain (GELU's x * erf(x / sqrt 2) has the same shape)."""
    a, b, bias, biased = _linear(rows, width, depth)
    gate = te.compute((rows, width), lambda i, j: te.sigmoid(biased[i, j]), name="T_sigmoid")
    out = te.compute((rows, width), lambda i, j: biased[i, j] * gate[i, j], name="T_multiply")
    return te.create_prim_func([a, b, bias, out]).with_attr("layout_free_buffers", [1, 2])


def test_dense_template_computes_a_dag_epilogue_per_tile_under_the_parallel_loop():
    """The whole epilogue (bias, sigmoid, product) is computed from the register tile inside the
    parallel loop; it was left as a serial loop nest over the output after the kernel."""
    rows, width, depth = 8, 64, 32
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((rows, depth)).astype("float32"), rng.standard_normal((depth, width)).astype("float32")
    bias = rng.standard_normal(width).astype("float32")
    y = a @ b + bias
    expected = y / (1 + np.exp(-y))
    dev = tvm.cpu()
    for seed in (1, 2):
        sch = Schedule(_gemm_bias_silu(rows, width, depth), seed=seed)
        gemm = sch.get_sblock("matmul")
        sch.annotate(gemm, "tvmopt.lanes", 16)
        (space,) = templates.dense(sch, gemm)
        func = space.mod["main"]
        top = func.body.block.body  # the root block's body: one loop nest, the parallel one
        assert isinstance(top, tvm.tirx.For) and top.kind == tvm.tirx.ForKind.PARALLEL, func
        out_loops = space.get_loops(space.get_sblock("T_multiply"))
        assert space.get(out_loops[0]).same_as(top) and space.get(out_loops[-1]).kind == tvm.tirx.ForKind.VECTORIZED
        lib = tvm.compile(space.mod, target=tvm.target.Target({"kind": "llvm"}))
        out = tvm.runtime.tensor(np.zeros((rows, width), "float32"), dev)
        lib(*(tvm.runtime.tensor(x, dev) for x in (a, b, bias)), out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_only_dag_epilogues_are_marked_so_old_records_stop_applying_to_them_alone():
    from tvmopt.compiler.annotate import DAG_EPILOGUE, mark_dag_epilogues, mark_gemms

    def marked(func) -> dict:
        mod = mark_dag_epilogues()(mark_gemms(16)(tvm.IRModule({"main": func})))
        sch = Schedule(mod)
        return dict(sch.get(sch.get_sblock("matmul")).annotations)

    dag = marked(_gemm_bias_silu(8, 64, 32))
    assert dag.get("schedule_rule") == templates.DENSE and dag.get(DAG_EPILOGUE) == "dag"
    chain = marked(_gemm_bias(8, 64, 32))  # bias only: a chain, scheduled as before, records still apply
    assert chain.get("schedule_rule") == templates.DENSE and DAG_EPILOGUE not in chain


@pytest.mark.parametrize("width, kind", [(1000, None), (1024, "tvmopt_dense")])
def test_a_gemm_whose_register_tile_would_be_one_accumulator_keeps_the_generic_rules(width, kind):
    """On AVX2 (8 lanes) a 1 x 512 by 512 x 1000 head is 125 vectors wide: no divisor up to 4, so
    the dense template's only tile is one accumulator (104 us against the generic rules' 13)."""
    from tvmopt.compiler.annotate import mark_gemms

    mod = mark_gemms(8)(tvm.IRModule({"main": _gemm_bias(1, width, 512)}))
    sch = Schedule(mod)
    assert sch.get(sch.get_sblock("matmul")).annotations.get("schedule_rule") == kind


@pytest.mark.parametrize("size, stride, pad", [(13, 2, 1), (8, 1, 0)])
def test_max_pool_template_splits_rows_and_matches_topi(size, stride, pad):
    """A blocked max pool (TOPI marks it `meta_schedule.pool_max`) is parallel over output rows
    (the convs around it split rows too), without a padded copy, and computes TOPI's result."""
    from tvm import topi

    data = te.placeholder((1, 2, size, size, 8), name="data")
    pool = topi.nn.pool2d(data, (3, 3), (stride, stride), (1, 1), (pad, pad, pad, pad), "max", layout="NCHW8c")
    func = te.create_prim_func([data, pool])
    x = np.random.default_rng(4).standard_normal((1, 2, size, size, 8)).astype("float32")
    out_shape = tuple(int(d) for d in pool.shape)
    dev = tvm.cpu()
    target = tvm.target.Target({"kind": "llvm"})

    def run(mod) -> np.ndarray:
        out = tvm.runtime.tensor(np.zeros(out_shape, "float32"), dev)
        tvm.compile(mod, target=target)(tvm.runtime.tensor(x, dev), out)
        return out.numpy()

    sch = Schedule(func)
    block = sch.get_sblock("pool_max")
    assert str(sch.get(block).annotations[templates.ANNOTATION]) == templates.MAX_POOL
    (space,) = templates.max_pool_nchwc(sch, block)
    outer = space.get(space.get_loops(space.get_sblock("pool_max_update"))[0])
    assert outer.kind == tvm.tirx.ForKind.PARALLEL and outer.extent == out_shape[2]  # the output rows
    assert "pad" not in space.mod.script()
    np.testing.assert_array_equal(run(space.mod), run(tvm.IRModule({"main": func})))

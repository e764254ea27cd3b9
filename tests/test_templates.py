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


def _conv_relu(width: int) -> tvm.tirx.PrimFunc:
    """A blocked 3x3 conv (16 -> 32 channels, block 8, 5 x `width` output) with a ReLU epilogue."""
    data = te.placeholder((1, 2, 5, width, 8), name="data")
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

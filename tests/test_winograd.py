"""Winograd F(4x4, 3x3) and F(2x2, 3x3) for blocked 3x3 stride-1 convs (compiler/winograd.py): which
convs take it, in which tile, that the three kernels (input transform, batched GEMM, output transform + epilogue) compute what
ONNX Runtime computes, untuned and tuned, and that it can be switched off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import tvmopt
from conftest import ort_run, run_cli
from torch import nn
from tvmopt.compiler import GraphOptions
from tvmopt.compiler.winograd import MATRICES, eligible, tile_size
from tvmopt.tuning import make_budget


class ResidualBlock(nn.Module):
    """conv 3x3 (8->64) + BN + ReLU on a 22 x 22 map, conv 3x3 (64->64) + ReLU there (4x4 tiles:
    36, the last ones half outside the map), conv 3x3 stride 2 (direct) to 11 x 11, conv 3x3 there
    + residual + SiLU (2x2 tiles: 36, padded to 40 GEMM rows): one Winograd conv in each tile."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(8, 64, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(64)
        self.conv1 = nn.Conv2d(64, 64, 3, padding=1)
        self.down = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        y = self.down(torch.relu(self.conv1(x)))
        return nn.functional.silu(self.conv2(y) + y)


X = np.random.default_rng(0).standard_normal((1, 8, 22, 22)).astype("float32")


@pytest.fixture(scope="module")
def block_onnx(tmp_path_factory) -> Path:
    import models

    torch.manual_seed(0)
    module = ResidualBlock().eval()
    with torch.no_grad():
        module.bn.running_mean.uniform_(-0.2, 0.2)
        module.bn.running_var.uniform_(0.5, 1.5)
    return models.export_onnx(module, (torch.from_numpy(X),), tmp_path_factory.mktemp("wino") / "block.onnx", ["x"], ["y"])


@pytest.mark.parametrize("shape, kernel, strides, groups, expected", [
    ((1, 4, 56, 56, 16), (4, 4, 3, 3, 16, 16), (1, 1), 1, 4),       # ResNet-18's 56 x 56 layer: 196 4x4 tiles
    ((1, 8, 28, 28, 16), (8, 8, 3, 3, 16, 16), (1, 1), 1, 4),       # its 28 x 28 layer: 49
    ((1, 16, 14, 14, 16), (16, 16, 3, 3, 16, 16), (1, 1), 1, 4),    # 14 x 14: 16
    ((1, 16, 12, 12, 16), (16, 16, 3, 3, 16, 16), (1, 1), 1, 2),    # 12 x 12: 9 4x4 tiles, 36 2x2 ones
    ((2, 32, 6, 6, 16), (32, 32, 3, 3, 16, 16), (1, 1), 1, 2),      # a batch of two 6 x 6 maps: 2 x 9 2x2 tiles
    ((1, 32, 7, 7, 16), (32, 32, 3, 3, 16, 16), (1, 1), 1, 2),      # its 7 x 7 layer: 16 2x2 tiles
    ((1, 32, 5, 5, 16), (32, 32, 3, 3, 16, 16), (1, 1), 1, 0),      # 9 tiles: too few for the GEMMs
    ((1, 4, 56, 56, 16), (4, 4, 3, 3, 16, 16), (2, 2), 1, 0),       # stride 2
    ((1, 4, 56, 56, 16), (4, 4, 1, 1, 16, 16), (1, 1), 1, 0),       # 1x1
    ((1, 4, 56, 56, 16), (4, 1, 3, 3, 1, 16), (1, 1), 64, 0),       # depthwise
    ((1, 3, 56, 56, 1), (4, 3, 3, 3, 1, 16), (1, 1), 1, 0),         # a stem (NCHW1c input)
    ((1, 2, 56, 56, 8), (2, 2, 3, 3, 8, 8), (1, 1), 1, 0),          # 16 x 16 channels: transforms cost more
])
def test_which_convs_take_winograd_and_in_which_tile(shape, kernel, strides, groups, expected):
    assert tile_size(shape, kernel, strides, (1, 1, 1, 1), (1, 1), groups, "float32") == expected
    assert eligible(shape, kernel, strides, (1, 1, 1, 1), (1, 1), groups, "float32") is (expected > 0)


@pytest.mark.parametrize("m", sorted(MATRICES))
def test_transform_matrices_compute_a_3x3_correlation(m):
    """Y = A^T [(G g G^T) * (B^T d B)] A is the m x m valid correlation of an (m+2)^2 tile with g."""
    tables = {name: np.array(rows, dtype="float64") for name, rows in MATRICES[m].items()}
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    u, v = tables["G"] @ g @ tables["G"].T, tables["BT"] @ d @ tables["BT"].T
    y = tables["AT"] @ (u * v) @ tables["AT"].T
    direct = [[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)] for i in range(m)]
    np.testing.assert_allclose(y, direct, atol=1e-12)


@pytest.mark.parametrize("target", ["x86-avx2", "x86-avx512"])
def test_winograd_convs_match_onnxruntime_untuned(block_onnx, target, tmp_path):
    report = json.loads(run_cli("inspect", str(block_onnx), "-t", target, "--json").stdout)
    assert (report["winograd_convs"], report["winograd_4x4_convs"]) == (2, 1)
    names = [k["name"] for k in report["kernels"]]
    assert any("winograd_input" in n for n in names) and any("winograd_output" in n for n in names)
    assert not any("winograd_weight" in n for n in names)  # the weight transform ran at compile time
    artifact = tvmopt.compile(tvmopt.import_model(block_onnx), target, tmp_path / "art", log_root=None)
    out = tvmopt.load(artifact.path)(X)[0]
    np.testing.assert_allclose(out, ort_run(block_onnx, {"x": X})[0], atol=1e-4, rtol=1e-4)


def test_winograd_can_be_switched_off(block_onnx):
    from tvmopt.compiler.inspect import describe
    from tvmopt.targets import get_target

    target = get_target("x86-avx512").tvm_target()
    model = tvmopt.import_model(block_onnx)
    report = describe(model, target)
    assert (report.winograd, report.winograd_4x4) == (2, 1)
    assert describe(model, target, GraphOptions(winograd=False)).winograd == 0


@pytest.mark.parametrize("rows, rows_first", [(56, True), (16, False)])
def test_batched_gemms_with_many_tiles_split_the_tiles_between_threads(rows, rows_first):
    """A GEMM with many rows (tiles) is parallel over its rows first, so each thread reads the
    tiles its input transform wrote; with few rows over the points (each thread then reads half
    of the transformed weights, the larger operand there)."""
    from tvm import te
    from tvm.s_tir import Schedule
    from tvmopt.compiler.winograd import batched_gemm
    from tvmopt.tuning.templates import dense

    v, u = te.placeholder((36, rows, 64), name="v"), te.placeholder((36, 64, 64), name="u")
    sch = Schedule(te.create_prim_func([v, u, batched_gemm(v, u)]))
    gemm = sch.get_sblock("winograd_gemm")
    sch.annotate(gemm, "tvmopt.lanes", 16)
    dense(sch, gemm)
    outer = sch.get(sch.get_loops(gemm)[0])
    assert int(outer.kind) == 1  # ForKind.PARALLEL
    # sch.fuse names the fused loop after its parts, outermost first: p (rows) or e (points)
    assert outer.loop_var.name.startswith("p_") == rows_first, outer.loop_var.name


@pytest.mark.parametrize("target", ["x86-avx512", "x86-avx2"])
def test_shipped_records_of_many_tile_gemms_split_the_tiles(target):
    """The template can only split the tiles of such a GEMM, but a log keeps what older templates
    measured: an older record that split the points ran 1% faster alone, so it was the best, and
    in the model each layer's transforms then read half their data from the other core (ResNet-18
    2-3% slower while the vCPUs share no cache). compile applies the best record: it must split
    the tiles."""
    import re

    from tvm.s_tir import Schedule
    from tvmopt.logs.store import LogDatabase
    from tvmopt.resources import shipped_logs_root

    database = LogDatabase(shipped_logs_root() / target, readonly=True)
    checked = 0
    for mod in database.workload_modules():
        if '"tvmopt.rows_outer": 1' not in mod.script():
            continue
        best = database.best_record(mod)
        sch = Schedule(mod)
        best.trace.apply_to_schedule(sch, remove_postproc=False)
        parallel = re.search(r"for (\w+) in T\.parallel", sch.mod.script())
        assert parallel is not None and parallel.group(1).startswith("p_"), parallel and parallel.group(1)
        checked += 1
    assert checked >= 2  # ResNet-18's 56x56 and 28x28 layers


def test_tuned_winograd_kernels_match_onnxruntime(block_onnx, tmp_path):
    """The batched GEMMs go through the dense template (prepacked transformed weights), the
    input transforms through their template, the output transforms through MetaSchedule's generic
    rules; a few real trials each, in both tiles, then compiled."""
    model = tvmopt.import_model(block_onnx)
    log = tvmopt.tune(model, "x86-avx512", budget=make_budget("smoke", trials_per_task=2), log_root=tmp_path / "logs",
                      progress=False)
    assert log.trials_run > 0
    artifact = tvmopt.compile(model, "x86-avx512", tmp_path / "art", log_root=tmp_path / "logs")
    assert artifact.manifest.tuning.tasks_tuned > 0
    assert any("winograd_gemm" in name for name in artifact.manifest.tuning.prepacked)
    out = tvmopt.load(artifact.path)(X)[0]
    np.testing.assert_allclose(out, ort_run(block_onnx, {"x": X})[0], atol=1e-4, rtol=1e-4)


def test_winograd_on_arm_neon_matches_onnxruntime_under_emulation(block_onnx, tmp_path):
    """NEON's 4-float block: the same three kernels, built for aarch64 and run under QEMU."""
    from tvmopt.runtime.emulation import aarch64_root, run_emulated

    aarch64_root()  # installs the cross toolchain and QEMU when missing, as tests/test_cross.py does
    model = tvmopt.import_model(block_onnx)
    from tvmopt.compiler.inspect import describe
    from tvmopt.targets import get_target

    assert describe(model, get_target("arm-neoverse-n1").tvm_target()).winograd == 2
    artifact = tvmopt.compile(model, "arm-neoverse-n1", tmp_path / "arm", log_root=None)
    np.testing.assert_allclose(run_emulated(artifact, [X])[0], ort_run(block_onnx, {"x": X})[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("batch, size, pads, tile", [
    (2, (14, 14), [1, 1, 1, 1], 4), (3, (9, 10), [1, 0, 0, 1], 4), (1, (26, 27), [1, 0, 0, 1], 4),
    (1, (30, 30), [0, 0, 0, 0], 4), (1, (12, 11), [0, 0, 0, 0], 2), (2, (8, 8), [1, 1, 1, 1], 2),
    (1, (13, 13), [1, 0, 1, 0], 2)])
def test_winograd_with_batches_asymmetric_pads_and_no_padding_matches_onnxruntime(batch, size, pads, tile, tmp_path):
    """Tiles numbered across the batch, an output that pads differently on each side or not at all,
    the last tiles partly outside the output, in 2x2 and 4x4 tiles."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    weight = numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype("float32") * 0.1, "w")
    bias = numpy_helper.from_array(rng.standard_normal(64).astype("float32"), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads, kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["y"])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 64, *size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, bias])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    from tvmopt.compiler.inspect import describe
    from tvmopt.targets import get_target

    model = tvmopt.import_model(path)
    report = describe(model, get_target("x86-avx512").tvm_target())
    assert (report.winograd, report.winograd_4x4) == (1, int(tile == 4))
    x = rng.standard_normal((batch, 64, *size)).astype("float32")
    artifact = tvmopt.compile(model, "x86-avx512", tmp_path / "art", log_root=None)
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(path, {"x": x})[0], atol=1e-4, rtol=1e-4)

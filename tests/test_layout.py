"""CPU graph optimisations: blocked NCHWc layouts per vector width, schedule templates, prepacked
weights, the compiled VM. Speed is measured in benchmarks/, correctness and structure here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tvmopt
from conftest import ort_run, run_cli
from tvmopt.compiler import GraphOptions
from tvmopt.compiler.layout import block_size
from tvmopt.targets import get_target
from tvmopt.tuning import make_budget

X = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")


@pytest.fixture(scope="module")
def mobile_onnx(tmp_path_factory) -> Path:
    import models

    module, example = models.mobile_block()
    return models.export_onnx(module, example, tmp_path_factory.mktemp("layout") / "mobile.onnx", ["x"], ["y"])


@pytest.mark.parametrize("target, block", [("x86-avx2", 8), ("x86-avx512", 16), ("arm-cortex-a72", 4),
                                           ("arm-neoverse-n1", 4), ("cuda-sm80", None)])
def test_block_follows_the_targets_vector_width(target, block):
    assert block_size(get_target(target).tvm_target()) == block


@pytest.mark.parametrize("target", ["x86-avx2", "x86-avx512"])
def test_inspect_shows_which_convs_go_blocked_and_the_reorders_left(mobile_onnx, target):
    # On AVX-512 the 8-channel convs take half a block (8 lanes) instead of staying NCHW.
    proc = run_cli("inspect", str(mobile_onnx), "-t", target, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    layouts = [d["layout"] for d in report["layouts"]]
    # stem (3 input channels read as NCHW1c, the input itself), depthwise, pointwise blocked;
    # the 2-group conv not.
    assert layouts == ["NCHW1c", "NCHW8c", "NCHW8c", "NCHW"]
    assert "grouped conv" in report["layouts"][3]["reason"]
    # into and out of the grouped conv, before the pool/flatten head: ReLU6 and the decomposed
    # batch norms keep the blocked layout (no reorder around them), the entry is a view.
    assert report["layout_reorders"] <= 3
    text = run_cli("inspect", str(mobile_onnx), "-t", target).stdout
    assert "convolution layouts: 3/4 blocked" in text


@pytest.mark.parametrize("target", ["host", "x86-avx2", "x86-avx512"])
def test_blocked_untuned_build_matches_onnxruntime(mobile_onnx, target, tmp_path):
    if not get_target(target).is_local_cpu:
        pytest.skip(f"{target} does not run on this machine")
    artifact = tvmopt.compile(tvmopt.import_model(mobile_onnx), target, tmp_path / "art", log_root=None)
    assert artifact.manifest.optimizations["blocked_layout"] and artifact.manifest.optimizations["compiled_vm"]
    out = tvmopt.load(artifact.path)(X)[0]
    np.testing.assert_allclose(out, ort_run(mobile_onnx, {"x": X})[0], atol=1e-4, rtol=1e-4)


def _conv_flatten_linear(path: Path, batch: int, pool: bool = False) -> Path:
    """conv(3 -> 16) -> relu [-> global average pool] -> Flatten -> Gemm(10), batch `batch`: a
    blocked feature map flattened."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    features = 16 if pool else 16 * 8 * 8
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype("float32"), name)
             for name, shape in (("w", (16, 3, 3, 3)), ("fc", (10, features)), ("fc_b", (10,)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r0"]),
             helper.make_node("GlobalAveragePool" if pool else "Identity", ["r0"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("batch, pool", [(1, False), (2, False), (1, True)])
def test_a_flattened_blocked_feature_map_runs_without_reorders(tmp_path, batch, pool):
    """The reorder back to NCHW before a flatten is folded into the dense weight (rows permuted at
    compile time) and the stem's input is read in place: no layout_transform kernel is left, and
    the outputs still match ONNX Runtime (per batch item: the permutation stays within rows).
    After a global pool (a 1x1 map) the reorder moves nothing: one reshape, a view, no copy kernel."""
    path = _conv_flatten_linear(tmp_path / "flat.onnx", batch, pool)
    report = json.loads(run_cli("inspect", str(path), "-t", "x86-avx512", "--json").stdout)
    assert report["layouts"][0]["layout"] == "NCHW1c" and report["layout_reorders"] == 0
    assert not [k["name"] for k in report["kernels"] if "reshape" in k["name"] and "fused" in k["name"]]
    x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype("float32")
    artifact = tvmopt.compile(tvmopt.import_model(path), "host", tmp_path / "art", log_root=None)
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(path, {"x": x})[0], atol=1e-4, rtol=1e-4)


def test_plain_options_build_the_same_model_in_nchw(mobile_onnx, tmp_path):
    model = tvmopt.import_model(mobile_onnx)
    artifact = tvmopt.compile(model, "host", tmp_path / "plain", log_root=None, options=GraphOptions.none())
    assert artifact.manifest.optimizations == GraphOptions.none().to_json()
    out = tvmopt.load(artifact.path)(X)[0]
    np.testing.assert_allclose(out, ort_run(mobile_onnx, {"x": X})[0], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def tuned_mobile(mobile_onnx, tmp_path_factory):
    """The MobileNet-style model tuned (smoke) with every optimisation on: templates for the convs
    and the GEMM, layout-free weights. For x86-avx2 on any x86 host, so that the records and kernels
    the tests below look for are the same everywhere."""
    root = tmp_path_factory.mktemp("tuned-mobile")
    model = tvmopt.import_model(mobile_onnx)
    log = tvmopt.tune(model, "x86-avx2", budget=make_budget("smoke", trials_per_task=2), log_root=root,
                      progress=False)
    artifact = tvmopt.compile(model, "x86-avx2", root / "art", log_root=root)
    return model, log, artifact


def test_tuned_templates_and_prepacked_weights_match_onnxruntime(tuned_mobile, mobile_onnx):
    _, log, artifact = tuned_mobile
    assert not log.untuned_tasks and artifact.manifest.tuning.tasks_tuned == artifact.manifest.tuning.tasks_total
    # every record of a templated kernel replays tvmopt's template (its custom-rule marks)
    from tvmopt.logs.store import LogDatabase

    database = LogDatabase(log.log_dir, readonly=True)
    templated = [mod for mod in database.workload_modules() if "tvmopt_" in mod.script()]
    # stem, the depthwise conv fused with the 1x1 conv after it (compiler/dwpw.py), head (the
    # grouped conv stays generic)
    assert len(templated) >= 3
    assert any("tvmopt_depthwise_pointwise" in mod.script() for mod in templated)
    assert any("tvmopt_gemv" in mod.script() for mod in templated)  # the 16 -> 10 head: a GEMV
    # weights re-laid-out for the tuned kernels, packed at compile time: prepacked kernels in the library
    prepacked = artifact.manifest.tuning.prepacked
    assert prepacked and all(name.encode() in artifact.library_path.read_bytes() for name in prepacked)
    out = tvmopt.load(artifact.path)(X)[0]
    np.testing.assert_allclose(out, ort_run(mobile_onnx, {"x": X})[0], atol=1e-4, rtol=1e-4)


def test_a_log_tuned_with_another_block_is_used_when_it_covers_more(tuned_mobile, tmp_path):
    """An AVX-512 host (block 16) with only an AVX2 reference log (block 8) compiles in block 8,
    so the log's records apply: zero-trial reuse of the shipped x86-avx2 log there."""
    import shutil

    model, log, _ = tuned_mobile
    root = tmp_path / "logs"
    shutil.copytree(log.log_dir, root / "x86-avx2")  # the fixture's x86-avx2 log stands in for the shipped one
    artifact = tvmopt.compile(model, "x86-avx512", tmp_path / "avx512", log_root=root)  # built, not run here
    assert artifact.manifest.optimizations["block"] == 8
    assert artifact.manifest.tuning.tasks_tuned == artifact.manifest.tuning.tasks_total
    assert artifact.manifest.tuning.reference_logs == ("x86-avx2",)


def test_row_permutation_accepts_only_reorders_within_rows():
    """The fold's guard: a permutation within each batch row is folded, a padding transform or one
    that mixes rows is not."""
    from tvm.tirx import IndexMap

    from tvmopt.compiler.reorders import row_permutation

    to_nchw = IndexMap.from_func(lambda n, c, h, w, cb: (n, c * 16 + cb, h, w))
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3, 16))
    perm = row_permutation(to_nchw, x.shape, 2)
    nchw = x.transpose(0, 1, 4, 2, 3).reshape(2, -1)
    assert (nchw == x.reshape(2, -1)[:, perm]).all()
    assert row_permutation(to_nchw, x.shape, 2 * 32 * 3) is None  # rows of 3 (one w run): features cross rows
    padded = IndexMap.from_func(lambda n, c, h, w: (n, c // 16, h, w, c % 16))
    assert row_permutation(padded, (1, 24, 2, 2), 1) is None  # 24 channels padded to 32

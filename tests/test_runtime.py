"""The production side: Predictor validation, threads, batches, compatibility checks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tvmopt
from conftest import ort_run
from tvmopt.errors import ArtifactError, InputSpecError
from tvmopt.runtime.artifact import Manifest
from tvmopt.specs import TensorSpec


@pytest.fixture(scope="module")
def cnn_artifact(cnn_onnx, tmp_path_factory):
    model = tvmopt.import_model(cnn_onnx)
    return tvmopt.compile(model, "host", tmp_path_factory.mktemp("rt") / "cnn", log_root=None)


def test_untuned_artifact_matches_onnxruntime_and_describes_itself(cnn_artifact, cnn_onnx):
    manifest = cnn_artifact.manifest
    assert manifest.inputs == (TensorSpec("input", (1, 3, 32, 32), "float32"),)
    assert manifest.outputs[0].name == "logits"
    assert manifest.target.name == "host" and manifest.tvm_version
    assert manifest.model.sha256 == tvmopt.import_model(cnn_onnx).sha256
    assert manifest.tuning.tasks_tuned == 0
    assert Manifest.from_json(json.loads((cnn_artifact.path / "manifest.json").read_text())) == manifest
    predictor = tvmopt.load(cnn_artifact.path)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    expected = ort_run(cnn_onnx, {"input": x})[0]
    np.testing.assert_allclose(predictor(x)[0], expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(predictor(input=x)[0], expected, atol=1e-4, rtol=1e-4)


def test_predictor_validates_names_shapes_dtypes(cnn_artifact):
    predictor = tvmopt.load(cnn_artifact.path)
    x = np.zeros((1, 3, 32, 32), "float32")
    with pytest.raises(InputSpecError, match="unknown input 'image'; the model's inputs are: input"):
        predictor(image=x)
    with pytest.raises(InputSpecError, match="missing input"):
        predictor()
    with pytest.raises(InputSpecError, match=r"shape 1x3x16x16, expected 1x3x32x32"):
        predictor(np.zeros((1, 3, 16, 16), "float32"))
    with pytest.raises(InputSpecError, match="dtype int64, expected float32"):
        predictor(np.zeros((1, 3, 32, 32), "int64"))
    with pytest.raises(InputSpecError, match="takes 1 input"):
        predictor(x, x)
    with pytest.raises(InputSpecError, match="dtype float64, expected float32"):
        predictor(x.astype("float64"))  # never cast silently (issue 11) ...
    casting = tvmopt.load(cnn_artifact.path, cast_inputs=True)
    assert casting(x.astype("float64"))[0].dtype == np.float32  # ... only when asked


def test_predictor_is_thread_safe(cnn_artifact):
    predictor = tvmopt.load(cnn_artifact.path)
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 3, 32, 32)).astype("float32") for _ in range(16)]
    serial = [predictor(x)[0] for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda x: predictor(x)[0], inputs * 3))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, serial[i % len(inputs)])


def test_predict_batch_and_benchmark(cnn_artifact):
    predictor = tvmopt.load(cnn_artifact.path)
    feeds = [predictor.random_inputs(seed=s) for s in range(4)]
    outs = predictor.predict_batch(feeds, progress=False)
    assert len(outs) == 4 and outs[0][0].shape == (1, 10)
    np.testing.assert_array_equal(outs[2][0], predictor(**feeds[2])[0])
    latency = predictor.benchmark(repeat=5)
    assert len(latency.runs_ms) == 5 and 0 < latency.median_ms <= latency.p90_ms * 1.0001


def test_load_refuses_foreign_artifacts(cnn_artifact, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cnn_artifact.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["target"]["requires"] = {"arch": "x86_64", "cpu_flags": ["avx512f", "imaginary_isa"]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="needs CPU features .*imaginary_isa"):
        tvmopt.load(copy)
    manifest["target"]["requires"] = {}
    manifest["tvm_version"] = "0.20.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="built with TVM 0.20.0"):
        tvmopt.load(copy)


def test_compile_never_leaves_half_an_artifact(cnn_onnx, tmp_path):
    model = tvmopt.import_model(cnn_onnx)
    target_dir = tmp_path / "keep"
    target_dir.mkdir()
    (target_dir / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a tvmopt artifact; refusing"):
        tvmopt.compile(model, "host", target_dir, log_root=None)
    assert (target_dir / "notes.txt").read_text() == "mine"
    out = tmp_path / "art"
    first = tvmopt.compile(model, "host", out, log_root=None)
    second = tvmopt.compile(model, "host", out, log_root=None)  # replaces atomically
    assert second.path == first.path and (out / "manifest.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_results_stay_valid_after_later_calls(tmp_path):
    """The predictor reuses its input tensors across calls and the VM reuses its output buffers:
    what a call returned must not change when the next call runs, even for an output that is the
    input itself."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["same"]), helper.make_node("Relu", ["x"], ["relu"])], "echo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("relu", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "echo.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    predictor = tvmopt.load(tvmopt.compile(tvmopt.import_model(path), "host", tmp_path / "art", log_root=None).path)
    a, b = (np.random.default_rng(s).standard_normal((2, 3)).astype("float32") for s in (1, 2))
    first = predictor(a)
    second = predictor(b)
    np.testing.assert_array_equal(first[0], a)
    np.testing.assert_array_equal(first[1], np.maximum(a, 0))
    np.testing.assert_array_equal(second[0], b)
    np.testing.assert_array_equal(second[1], np.maximum(b, 0))


def test_input_check_fast_path_refuses_what_the_full_check_refuses():
    """An array of the spec's dtype and shape passes in a microsecond; anything else still meets
    the full check. A dtype numpy lacks (bfloat16) compares its placeholder None equal to float64,
    so a float64 array must not slip through for it."""
    from tvmopt.runtime.inputs import check_input

    spec = TensorSpec("x", ("batch", 4), "float32")
    ok = np.zeros((2, 4), np.float32)
    assert check_input(spec, ok) is ok
    with pytest.raises(InputSpecError, match="dtype float64"):
        check_input(spec, np.zeros((2, 4)))
    with pytest.raises(InputSpecError, match="shape 2x5"):
        check_input(spec, np.zeros((2, 5), np.float32))
    with pytest.raises((InputSpecError, TypeError)):
        check_input(TensorSpec("h", (2,), "bfloat16"), np.zeros(2))


def test_static_binder_takes_only_exact_arrays_and_leaves_the_rest_to_the_full_check():
    """Predictor.__call__'s shortcut: all inputs, by name or by position, C-contiguous, exactly the
    spec's dtype and shape; anything else returns None (bind_inputs then converts or explains)."""
    from tvmopt.runtime.inputs import StaticBinder

    specs = (TensorSpec("a", (2, 3), "float32"), TensorSpec("b", (3,), "int64"))
    bind = StaticBinder(specs)
    a, b = np.zeros((2, 3), np.float32), np.zeros(3, np.int64)
    assert [x is y for x, y in zip(bind((), {"a": a, "b": b}), (a, b))] == [True, True]
    assert [x is y for x, y in zip(bind((a, b), {}), (a, b))] == [True, True]
    for args, kwargs in [((), {"a": a}),  # missing
                         ((), {"a": a, "c": b}),  # unknown name
                         ((a,), {"b": b}),  # mixed
                         ((), {"a": a.astype(np.float64), "b": b}),  # dtype
                         ((), {"a": np.zeros((3, 2), np.float32), "b": b}),  # shape
                         ((), {"a": np.zeros((3, 2), np.float32).T, "b": b}),  # not C-contiguous
                         ((), {"a": a.tolist(), "b": b})]:  # not an array
        assert bind(args, kwargs) is None
    assert StaticBinder((TensorSpec("x", ("batch", 4), "float32"),))((np.zeros((1, 4), np.float32),), {}) is None

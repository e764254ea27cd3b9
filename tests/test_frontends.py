"""Frontends: ONNX / torch.nn.Module / .pt2 import, checked end to end against ORT or PyTorch.

Every model is built in code (tests/models.py), exported into a tmp dir, imported, compiled
untuned for the host and run; outputs must match the reference within 1e-4.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py

import models  # noqa: E402

import tvmopt  # noqa: E402
from tvmopt.frontends.relax_specs import input_specs  # noqa: E402
from tvmopt.errors import (  # noqa: E402
    InputSpecError,
    ModelImportError,
    TuningError,
    TvmoptError,
)

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

ATOL = 1e-4
RTOL = 1e-5  # only matters for outputs far above 1

TOKEN_INPUTS = ["input_ids", "attention_mask"]
TOKEN_DYNAMIC = {
    "input_ids": {0: "batch", 1: "seq"},
    "attention_mask": {0: "batch", 1: "seq"},
    "logits": {0: "batch", 1: "seq"},
}


# --------------------------------------------------------------------------- helpers


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def torch_run(module, inputs) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*inputs)
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def build(model: tvmopt.Model, out_dir: Path):
    """Untuned compile for this CPU, then load: the Predictor."""
    artifact = tvmopt.compile(model, "host", str(out_dir), log_root=None)
    return tvmopt.load(artifact.path)


def assert_matches(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------------- fixtures

ONNX_MODELS = ["small_cnn", "mlp", "tiny_transformer", "depthwise_cnn", "pad_decoder"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frontend_models")


@pytest.fixture(scope="session")
def exported(model_dir):
    """name -> (onnx path, module, example inputs); each exported once per session."""
    cache: dict[str, tuple[Path, object, tuple]] = {}

    def get(name: str):
        if name not in cache:
            module, example = getattr(models, name)()
            path = models.export_onnx(module, example, model_dir / f"{name}.onnx", ["x"], ["y"])
            cache[name] = (path, module, example)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def token_onnx(model_dir):
    """token_classifier exported with dynamic batch and seq dims on inputs and output."""
    module, example = models.token_classifier()
    path = models.export_onnx(
        module, example, model_dir / "token_classifier.onnx", TOKEN_INPUTS, ["logits"], TOKEN_DYNAMIC
    )
    return path, module


@pytest.fixture(scope="session")
def mlp_int8_onnx(exported, model_dir) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, _, _ = exported("mlp")
    int8_path = model_dir / "mlp_int8.onnx"
    # reduce_range (7-bit weights): without VNNI, ONNX Runtime's u8s8 kernel sums pairs of products
    # in int16 with saturation (vpmaddubsw), so full-range weights make ORT itself inexact on AVX2
    # machines; with 7-bit weights it computes the exact integer result TVM computes.
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, reduce_range=True)
    return int8_path


# --------------------------------------------------------------------------- ONNX, static shapes


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_untuned_matches_ort(name, exported, tmp_path):
    path, _, example = exported(name)
    model = tvmopt.import_model(path)
    x = example[0].numpy()
    assert model.format == "onnx" and model.is_static
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [("x", tuple(x.shape), "float32")]
    assert [s.name for s in model.outputs] == ["y"]
    predictor = build(model, tmp_path / "art")
    assert_matches(predictor(x), ort_run(path, {"x": x}))
    assert_matches(predictor(x=x), ort_run(path, {"x": x}))


def test_scalar_and_int32_inputs_match_ort(tmp_path):
    """A 0-d input stays 0-d all the way to the VM (np.ascontiguousarray would make it 1-d)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"]),
         helper.make_node("Cast", ["idx"], ["idx64"], to=TensorProto.INT64),
         helper.make_node("Gather", ["scaled", "idx64"], ["y"], axis=0)],
        "scalar_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("idx", TensorProto.INT32, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    )
    path = tmp_path / "scalar_input.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = tvmopt.import_model(path)
    assert [s.shape for s in model.inputs] == [(3, 4), (), (2,)]
    predictor = build(model, tmp_path / "art")
    feeds = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "scale": np.array(2.5, np.float32),
             "idx": np.array([2, 0], np.int32)}
    assert_matches(predictor(**feeds), ort_run(path, feeds))


# --------------------------------------------------------------------------- ONNX, dynamic dims


def test_token_classifier_symbolic_dims_run_at_several_shapes(token_onnx, tmp_path):
    """Imported as exported (batch, seq symbolic): TVM 0.27 compiles it, one build runs any shape."""
    path, _ = token_onnx
    model = tvmopt.import_model(path)
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [
        ("input_ids", ("batch", "seq"), "int64"),
        ("attention_mask", ("batch", "seq"), "int64"),
    ]
    assert model.outputs[0].shape == ("batch", "seq", 5)
    assert not model.is_static
    assert ("input_ids", 0, "batch") in model.dynamic_dims()
    predictor = build(model, tmp_path / "art")
    for batch, seq, pad in [(1, 8, 2), (3, 5, 1), (2, 12, 4)]:
        ids, mask = (t.numpy() for t in models.token_inputs(batch, seq, pad=pad))
        out = predictor(input_ids=ids, attention_mask=mask)
        assert out[0].shape == (batch, seq, 5)
        assert_matches(out, ort_run(path, {"input_ids": ids, "attention_mask": mask}))


def test_token_classifier_fixed_shapes_match_ort(token_onnx, tmp_path):
    path, module = token_onnx
    model = tvmopt.import_model(path, input_shapes={"input_ids": (1, 8), "attention_mask": (1, 8)})
    assert model.is_static
    assert [(s.name, s.shape, s.dtype) for s in model.inputs] == [
        ("input_ids", (1, 8), "int64"),
        ("attention_mask", (1, 8), "int64"),
    ]
    assert [(s.name, s.shape, s.dtype) for s in input_specs(model.mod["main"])] == [
        ("input_ids", (1, 8), "int64"),
        ("attention_mask", (1, 8), "int64"),
    ]
    assert [(s.name, s.shape) for s in model.outputs] == [("logits", (1, 8, 5))]
    predictor = build(model, tmp_path / "art")
    ids, mask = (t.numpy() for t in models.token_inputs(1, 8, pad=3))
    expected = ort_run(path, {"input_ids": ids, "attention_mask": mask})
    assert_matches(predictor(ids, mask), expected)
    # ...and ORT itself agrees with the torch module (the export is faithful).
    assert_matches(torch_run(module, (torch.from_numpy(ids), torch.from_numpy(mask))), expected)


def test_fixing_one_input_fixes_shared_dims_of_the_others(token_onnx):
    """'batch'/'seq' name one dim each: fixing input_ids to 1x8 fixes attention_mask too."""
    path, _ = token_onnx
    partial = tvmopt.import_model(path, input_shapes={"input_ids": (1, 8)})
    full = tvmopt.import_model(path, input_shapes={"input_ids": (1, 8), "attention_mask": (1, 8)})
    assert partial.is_static
    assert [s.shape for s in partial.inputs] == [(1, 8), (1, 8)]
    assert input_specs(partial.mod["main"]) == input_specs(full.mod["main"])
    # A symbolic override is shared too: one tir.Var 'seq' for both inputs.
    half = tvmopt.import_model(path, input_shapes={"input_ids": (1, "seq")})
    assert [s.shape for s in half.inputs] == [(1, "seq"), (1, "seq")]
    params = half.mod["main"].params
    assert params[0].ty.shape.values[1].same_as(params[1].ty.shape.values[1])


def test_shared_dim_given_two_sizes_is_an_input_spec_error(token_onnx):
    path, _ = token_onnx
    with pytest.raises(InputSpecError, match="'batch'") as info:
        tvmopt.import_model(path, input_shapes={"input_ids": (1, 8), "attention_mask": (2, 8)})
    assert str(path) in str(info.value)


def test_tune_with_dynamic_dims_is_a_tuning_error(token_onnx, tmp_path):
    path, _ = token_onnx
    model = tvmopt.import_model(path)
    with pytest.raises(TuningError) as info:
        tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path)
    message = str(info.value)
    assert "input_ids" in message and "batch" in message and "--input-shape" in message
    assert "\n" not in message
    assert not any(tmp_path.iterdir())  # refused before writing any log


# --------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("name", ["mlp", "tiny_transformer"])
def test_torch_module_matches_torch(name, tmp_path):
    module, example = getattr(models, name)()
    model = tvmopt.import_model(module, example_inputs=example)
    assert model.format == "torch" and model.is_static
    assert [(s.shape, s.dtype) for s in model.inputs] == [(tuple(example[0].shape), "float32")]
    predictor = build(model, tmp_path / "art")
    assert_matches(predictor(*[t.numpy() for t in example]), torch_run(module, example))


def test_pt2_file_matches_torch(tmp_path):
    module, example = models.mlp()
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(module, example), str(path))
    model = tvmopt.import_model(path)
    assert model.format == "pt2" and model.name == "mlp" and model.source == str(path)
    predictor = build(model, tmp_path / "art")
    assert_matches(predictor(example[0].numpy()), torch_run(module, example))


def test_pt2_with_input_shapes_is_an_input_spec_error(tmp_path):
    module, example = models.mlp()
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(module, example), str(path))
    with pytest.raises(InputSpecError, match="input_shapes"):
        tvmopt.import_model(path, input_shapes={"x": (1, 64)})
    with pytest.raises(InputSpecError, match="input_shapes"):
        tvmopt.import_model(module, example_inputs=example, input_shapes={"x": (1, 64)})


# --------------------------------------------------------------------------- int8


def test_dynamic_int8_mlp_matches_ort(mlp_int8_onnx, tmp_path):
    import onnx

    ops = {node.op_type for node in onnx.load(str(mlp_int8_onnx)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops  # really the int8 graph
    model = tvmopt.import_model(mlp_int8_onnx)
    predictor = build(model, tmp_path / "art")
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((1, 64)).astype(np.float32)
        assert_matches(predictor(x), ort_run(mlp_int8_onnx, {"x": x}))


# --------------------------------------------------------------------------- GRU


def test_gru_onnx_matches_ort(model_dir, tmp_path):
    """TVM's ONNX frontend has no GRU converter; tvmopt's (frontends/recurrent.py) unrolls it."""
    import onnx

    module, example = models.gru_model()
    path = models.export_onnx(module, example, model_dir / "gru.onnx", ["x"], ["y"])
    assert "GRU" in {n.op_type for n in onnx.load(str(path)).graph.node}
    predictor = build(tvmopt.import_model(path), tmp_path / "art")
    x = example[0].numpy()
    assert_matches(predictor(x), ort_run(path, {"x": x}))
    assert_matches(predictor(x), torch_run(module, example))


def test_gru_torch_module_matches_torch(tmp_path):
    """TVM's torch.export frontend converts aten.gru, so the nn.Module path works."""
    module, example = models.gru_model()
    model = tvmopt.import_model(module, example_inputs=example)
    predictor = build(model, tmp_path / "art")
    assert_matches(predictor(example[0].numpy()), torch_run(module, example))


# --------------------------------------------------------------------------- broken inputs


def _nonexistent(tmp_path, _onnx) -> Path:
    return tmp_path / "missing.onnx"


def _truncated(tmp_path, onnx_path) -> Path:
    data = onnx_path.read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_file(tmp_path, _onnx) -> Path:
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n")
    return path


def _empty_file(tmp_path, _onnx) -> Path:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return path


def _directory(tmp_path, _onnx) -> Path:
    path = tmp_path / "model.onnx"
    path.mkdir()
    return path


def _text_pt2(tmp_path, _onnx) -> Path:
    path = tmp_path / "model.pt2"
    path.write_text("not a zip archive\n")
    return path


@pytest.mark.parametrize(
    "make",
    [_nonexistent, _truncated, _text_file, _empty_file, _directory, _text_pt2],
    ids=["nonexistent", "truncated", "text-as-onnx", "empty", "directory", "text-as-pt2"],
)
def test_broken_file_is_model_import_error_naming_the_path(make, exported, tmp_path):
    path = make(tmp_path, exported("small_cnn")[0])
    with pytest.raises(ModelImportError) as info:
        tvmopt.import_model(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_import_of_unsupported_object_is_model_import_error():
    with pytest.raises(ModelImportError, match="list"):
        tvmopt.import_model([1, 2, 3])
    module, _ = models.mlp()
    with pytest.raises(ModelImportError, match="example_inputs"):
        tvmopt.import_model(module)


@pytest.mark.parametrize(
    "shapes, expected",
    [
        ({"ids": (1, 8)}, "the model's inputs are: input_ids, attention_mask"),
        ({"input_ids": (1,)}, "rank 2"),
        ({"input_ids": (1, 8, 1)}, "rank 2"),
    ],
    ids=["unknown-name", "rank-too-low", "rank-too-high"],
)
def test_bad_input_shapes_are_input_spec_errors(shapes, expected, token_onnx):
    path, _ = token_onnx
    with pytest.raises(InputSpecError) as info:
        tvmopt.import_model(path, input_shapes=shapes)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert isinstance(info.value, TvmoptError)


@pytest.mark.parametrize("new_dim", [2, "n"], ids=["other-int", "symbolic"])
def test_overriding_a_fixed_dim_is_an_input_spec_error(new_dim, exported):
    path, _, _ = exported("mlp")  # x: 1x64, both fixed
    with pytest.raises(InputSpecError) as info:
        tvmopt.import_model(path, input_shapes={"x": (1, new_dim) if new_dim == "n" else (new_dim, 64)})
    message = str(info.value)
    assert ("fixed to" in message or "fixes this one to" in message) and "'x'" in message and str(path) in message


def test_vocabulary_sized_head_is_padded_to_whole_vectors_and_matches_ort(tmp_path):
    """A 8195-column weight (prime-ish, like GPT-2's 50257) is padded with zero columns to whole
    vectors, 19 rows (prime, like ViT's 197 tokens) with zero rows to 24, and the product sliced
    back: the kernel tiles like any GEMM, the outputs are ORT's."""
    import onnx
    import tvm
    from onnx import TensorProto, helper, numpy_helper

    from tvmopt.compiler.passes import fuse
    from tvmopt.targets import get_target

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((16, 8195)).astype("float32"), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"])], "vocab_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 8195])], [weight])
    path = tmp_path / "vocab_head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = tvmopt.import_model(path)
    fused = fuse(model.mod, get_target("host").tvm_target())
    kernels = [gv.name_hint for gv, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert any("matmul" in k and "strided_slice" in k for k in kernels), kernels
    assert any("pad" in k for k in kernels), kernels
    x = rng.standard_normal((1, 19, 16)).astype("float32")
    assert_matches(build(model, tmp_path / "art")(x), ort_run(path, {"x": x}))

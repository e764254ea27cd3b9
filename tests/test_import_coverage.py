"""Import coverage (issue 12): transformers models through both ONNX exporters and the PyTorch
path, symbolic batch and sequence, ONNX RNN/GRU/LSTM, and error messages that name the node or
kernel. Every model is built here from a small config with random weights (nothing downloaded),
compiled untuned for this CPU and compared with ONNX Runtime or PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import ort_run
from onnx import TensorProto, helper, numpy_helper

import tvmopt
from tvmopt.errors import CompileError, ModelImportError, TuningError, UnsupportedOperatorError

transformers = pytest.importorskip("transformers")

ATOL, RTOL = 1e-4, 1e-4
VOCAB = 100


# --------------------------------------------------------------------------- models


class TextModel(torch.nn.Module):
    """A transformers model called as forward(input_ids, attention_mask) -> its first output."""

    def __init__(self, model, use_mask: bool = True):
        super().__init__()
        self.model, self.use_mask = model, use_mask

    def forward(self, input_ids, attention_mask=None):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask if self.use_mask else None,
                         return_dict=True)
        return out[0]


def tiny(kind: str) -> TextModel:
    """2 layers, hidden 32, 4 heads, 128 positions: DistilBERT classifier, BERT, GPT-2 LM."""
    tf = transformers
    torch.manual_seed(0)
    if kind == "distilbert":
        model = tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
            vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128))
    elif kind == "bert":
        model = tf.BertModel(tf.BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=128))
    else:
        model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                                 use_cache=False))
    return TextModel(model.eval()).eval()


def tokens(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq - max(1, seq // 4):] = 0  # the first row is padded
    return {"input_ids": rng.integers(0, VOCAB, (batch, seq)).astype(np.int64), "attention_mask": mask}


def export(module, path, exporter: str, dynamic: bool):
    example = tuple(torch.from_numpy(v) for v in tokens(2, 8).values())
    names = ["input_ids", "attention_mask"]
    if exporter == "legacy":
        axes = {n: {0: "batch", 1: "seq"} for n in names} if dynamic else None
        torch.onnx.export(module, example, str(path), input_names=names, output_names=["out"], opset_version=17,
                          dynamo=False, dynamic_axes=axes)
    else:
        batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=128)
        shapes = {n: {0: batch, 1: seq} for n in names} if dynamic else None
        torch.onnx.export(module, example, str(path), input_names=names, output_names=["out"], opset_version=18,
                          dynamic_shapes=shapes)
    return path


def build(model, out):
    return tvmopt.load(tvmopt.compile(model, "host", out, log_root=None).path)


def assert_close(got, want):
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------------- 1: legacy exporter


def test_legacy_export_with_scalar_constant_of_shape_matches_ort(tmp_path):
    """transformers-5 DistilBERT through torch's legacy exporter: a ConstantOfShape with an empty
    shape (a bool scalar feeding And) used to fail in TVM's converter."""
    path = export(tiny("distilbert"), tmp_path / "distilbert.onnx", "legacy", dynamic=False)
    graph = onnx.load(str(path)).graph
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    scalar = [n for n in graph.node if n.op_type == "ConstantOfShape" and n.input[0] in constants
              and numpy_helper.to_array(constants[n.input[0]].attribute[0].t).size == 0]
    assert scalar, "the export no longer has the scalar ConstantOfShape this test is about"
    predictor = build(tvmopt.import_model(path), tmp_path / "art")
    feeds = tokens(2, 8)
    assert_close(predictor(**feeds)[0], ort_run(path, feeds)[0])


# --------------------------------------------------------------------------- 2: symbolic batch and sequence


@pytest.mark.parametrize("kind, exporter", [("distilbert", "dynamo"), ("gpt2", "dynamo"), ("bert", "legacy")])
def test_one_artifact_with_symbolic_batch_and_seq_matches_ort(kind, exporter, tmp_path):
    path = export(tiny(kind), tmp_path / f"{kind}.onnx", exporter, dynamic=True)
    model = tvmopt.import_model(path)
    assert [s.shape for s in model.inputs] == [("batch", "seq"), ("batch", "seq")]
    predictor = build(model, tmp_path / "art")
    for batch, seq in [(1, 16), (4, 128), (2, 77)]:
        feeds = tokens(batch, seq, seed=seq)
        got, want = predictor(**feeds)[0], ort_run(path, feeds)[0]
        assert got.shape[:2] == (batch, seq) or got.shape[0] == batch
        assert_close(got, want)
    if kind == "gpt2":  # tuning still needs static shapes, and says so before doing anything
        with pytest.raises(TuningError, match="--input-shape"):
            tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path / "logs")


# --------------------------------------------------------------------------- 3: PyTorch path


def test_gpt2_torch_path_without_mask_matches_torch(tmp_path):
    """No attention mask: transformers' packed-sequence check does cumsum on a bool tensor (TVM gave
    it a bool result that LLVM could not add) and SDPA needs tvmopt's decomposition."""
    module = TextModel(tiny("gpt2").model, use_mask=False).eval()
    ids = torch.from_numpy(tokens(2, 8)["input_ids"])
    model = tvmopt.import_model(module, example_inputs=(ids,))
    with torch.no_grad():
        want = module(ids).numpy()
    assert_close(build(model, tmp_path / "art")(ids.numpy())[0], want)


def test_torch_path_keyword_inputs_give_the_input_names(tmp_path):
    """A forward(**kwargs) module (as transformers models are called) keeps its input names."""

    class Kwargs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny("bert")

        def forward(self, *args, **inputs):
            return self.inner(**inputs)

    module = Kwargs().eval()
    feeds = tokens(2, 8)
    model = tvmopt.import_model(module, example_inputs={k: torch.from_numpy(v) for k, v in feeds.items()})
    assert [s.name for s in model.inputs] == ["input_ids", "attention_mask"]
    with torch.no_grad():
        want = module(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    assert_close(build(model, tmp_path / "art")(**feeds)[0], want)


# --------------------------------------------------------------------------- 4: ONNX GRU / LSTM


class Recurrent(torch.nn.Module):
    def __init__(self, cell: str, bidirectional: bool, layers: int, batch_first: bool):
        super().__init__()
        self.cell = cell
        self.rnn = getattr(torch.nn, cell)(6, 8, num_layers=layers, bidirectional=bidirectional,
                                           batch_first=batch_first)

    def forward(self, x, h0, c0=None):
        y, state = self.rnn(x, (h0, c0) if self.cell == "LSTM" else h0)
        return (y, *state) if self.cell == "LSTM" else (y, state)


@pytest.mark.parametrize("cell, bidirectional, layers, batch_first, exporter", [
    ("GRU", True, 2, True, "legacy"),
    ("LSTM", True, 2, False, "legacy"),
    ("LSTM", False, 1, True, "dynamo"),
    ("GRU", False, 2, False, "dynamo"),
], ids=["gru-bi-2l-bf-legacy", "lstm-bi-2l-legacy", "lstm-1l-bf-dynamo", "gru-2l-dynamo"])
def test_onnx_recurrent_matches_ort_and_torch(cell, bidirectional, layers, batch_first, exporter, tmp_path):
    torch.manual_seed(0)
    module = Recurrent(cell, bidirectional, layers, batch_first).eval()
    x = torch.randn(3, 5, 6)  # batch_first: batch 3, seq 5; else seq 3, batch 5
    batch = 3 if batch_first else 5
    states = [torch.randn(layers * (2 if bidirectional else 1), batch, 8) for _ in range(2 if cell == "LSTM" else 1)]
    names = ["x", "h0", "c0"][: 1 + len(states)]
    path = tmp_path / "rnn.onnx"
    if exporter == "legacy":
        torch.onnx.export(module, (x, *states), str(path), input_names=names, opset_version=17, dynamo=False)
        assert cell in {n.op_type for n in onnx.load(str(path)).graph.node}
    else:
        torch.onnx.export(module, (x, *states), str(path), input_names=names, opset_version=18)
    feeds = {n: t.numpy() for n, t in zip(names, (x, *states))}
    got = build(tvmopt.import_model(path), tmp_path / "art")(**feeds)
    with torch.no_grad():
        from_torch = [t.numpy() for t in module(x, *states)]
    for g, want, ref in zip(got, ort_run(path, feeds), from_torch):
        assert_close(g, want)
        assert_close(g, ref)


def _recurrent_onnx(path, op: str, seq, layout: int = 0, seq_lens=None, **attrs):
    """One RNN/GRU/LSTM node (opset 14) with random weights, bidirectional, initial states."""
    rng = np.random.default_rng(0)
    gates, hidden, batch, size, dirs = {"RNN": 1, "GRU": 3, "LSTM": 4}[op], 5, 2, 3, 2
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("W", rng.standard_normal((dirs, gates * hidden, size)) * 0.5),
        ("R", rng.standard_normal((dirs, gates * hidden, hidden)) * 0.5),
        ("B", rng.standard_normal((dirs, 2 * gates * hidden)) * 0.5),
        ("P", rng.standard_normal((dirs, 3 * hidden)))]]
    x_shape = [batch, seq, size] if layout else [seq, batch, size]
    s_shape = [batch, dirs, hidden] if layout else [dirs, batch, hidden]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape),
              helper.make_tensor_value_info("h0", TensorProto.FLOAT, s_shape)]
    names = ["x", "W", "R", "B", "lens" if seq_lens is not None else "", "h0"]
    outputs = ["y", "y_h"]
    if seq_lens is not None:
        inits.append(numpy_helper.from_array(np.array(seq_lens, np.int32), "lens"))
    if op == "LSTM":
        inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, s_shape))
        names += ["c0", "P"]
        outputs.append("y_c")
    node = helper.make_node(op, names, outputs, name=f"my_{op.lower()}", hidden_size=hidden,
                            direction="bidirectional", **({"layout": layout} if layout else {}), **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                    for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, str(path))
    feeds = {vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim]).astype(np.float32)
             for vi in inputs}
    return path, feeds


@pytest.mark.parametrize("op, layout, attrs", [
    ("LSTM", 0, dict(clip=0.8, input_forget=1, activations=["HardSigmoid", "Tanh", "Softsign"] * 2,
                     activation_alpha=[0.3, 0.3], activation_beta=[0.4, 0.4])),
    ("GRU", 0, dict(linear_before_reset=0, activations=["Sigmoid", "LeakyRelu", "HardSigmoid", "Elu"],
                    activation_alpha=[0.1, 0.25, 0.8], activation_beta=[0.45])),
    ("LSTM", 1, {}),
], ids=["lstm-peepholes-clip-coupled-activations", "gru-reset-before-linear-activations", "lstm-layout1"])
def test_onnx_recurrent_spec_features_match_reference(op, layout, attrs, tmp_path):
    """What torch never exports but the ONNX spec defines: checked against ONNX Runtime, and against
    onnx's reference implementation for layout=1 (ONNX Runtime has no layout=1 kernel)."""
    path, feeds = _recurrent_onnx(tmp_path / "spec.onnx", op, seq=4, layout=layout, **attrs)
    if layout:
        from onnx.reference import ReferenceEvaluator

        expected = ReferenceEvaluator(str(path)).run(None, feeds)
    else:
        expected = ort_run(path, feeds)
    got = build(tvmopt.import_model(path), tmp_path / "art")(**feeds)
    for g, want in zip(got, expected):
        assert_close(g, want)


def test_onnx_recurrent_limits_are_one_line_errors_naming_the_node(tmp_path):
    path, _ = _recurrent_onnx(tmp_path / "lens.onnx", "GRU", seq=4, seq_lens=[4, 2])
    with pytest.raises(ModelImportError) as info:
        tvmopt.import_model(path)
    message = str(info.value)
    assert "'my_gru'" in message and "sequence_lens" in message and "\n" not in message

    path, _ = _recurrent_onnx(tmp_path / "symbolic.onnx", "LSTM", seq="seq")
    with pytest.raises(ModelImportError) as info:
        tvmopt.import_model(path)
    message = str(info.value)
    assert "'my_lstm'" in message and "static" in message and "--input-shape" in message
    model = tvmopt.import_model(path, input_shapes={"x": (4, 2, 3)})  # and the hint works
    assert model.is_static


# --------------------------------------------------------------------------- 5: messages


def test_build_failure_names_the_kernel_and_is_never_empty(tmp_path):
    """TVM's LLVM codegen rejects adding bools with 'Check failed: ... is false:' and no text."""
    from tvm import relax

    from tvmopt.model import Model
    from tvmopt.specs import TensorSpec

    bb = relax.BlockBuilder()
    mask = relax.Var("mask", relax.TensorType((2, 8), "bool"))
    with bb.function("main", [mask]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.astype(bb.emit(relax.op.cumsum(mask, 1)), "float32")))
        bb.emit_func_output(out)
    model = Model(bb.get(), (TensorSpec("mask", (2, 8), "bool"),), (TensorSpec("y", (2, 8), "float32"),),
                  "bool_cumsum", "relax", "torch", "0")
    with pytest.raises(CompileError) as info:
        tvmopt.compile(model, "host", tmp_path / "art", log_root=None)
    message = str(info.value)
    assert "kernel 'cumsum' (bool[2, 8] -> bool[2, 8])" in message
    assert not message.rstrip().endswith(":") and "\n" not in message


def test_torch_unsupported_op_names_the_node():
    class Bessel(torch.nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x) + 1

    with pytest.raises(UnsupportedOperatorError, match=r"special_bessel_j0\.default \(node special_bessel_j0\)"):
        tvmopt.import_model(Bessel(), example_inputs=(torch.randn(3),))


def test_onnx_unsupported_op_names_the_node(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"], name="determinant")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "det.onnx"))
    with pytest.raises(UnsupportedOperatorError, match=r"Det \(node determinant\)"):
        tvmopt.import_model(tmp_path / "det.onnx")

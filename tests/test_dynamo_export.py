"""ONNX from torch's default (dynamo) exporter: external weights, shape arithmetic, dynamic dims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvmopt
from conftest import ort_run, run_cli


class TinyBert(torch.nn.Module):
    """Embeddings + nn.TransformerEncoder with a padding mask + a classifier on token 0."""

    def __init__(self, vocab: int = 100, d: int = 32):
        super().__init__()
        self.tokens = torch.nn.Embedding(vocab, d)
        self.positions = torch.nn.Embedding(64, d)
        layer = torch.nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, 2)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0)
        return self.head(hidden[:, 0])


@pytest.fixture(scope="module")
def bert_dynamo(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dynamo") / "bert.onnx"
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.int64)
    batch, seq = torch.export.Dim("batch", max=32), torch.export.Dim("seq", max=64)
    torch.onnx.export(
        TinyBert().eval(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
        output_names=["logits"], opset_version=17,
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
    )
    return path


def test_symbolic_batch_and_seq_run_at_several_shapes(bert_dynamo, tmp_path):
    """nn.MultiheadAttention through the dynamo exporter with symbolic dims: TVM's Reshape and
    Expand converters failed on symbolic sizes (frontends/onnx_converters.py)."""
    proc = run_cli("inspect", str(bert_dynamo))
    assert proc.returncode == 0, proc.stderr
    model = tvmopt.import_model(bert_dynamo)
    assert [s.shape for s in model.inputs] == [("batch", "seq"), ("batch", "seq")]
    predictor = tvmopt.load(tvmopt.compile(model, "host", tmp_path / "art", log_root=None).path)
    rng = np.random.default_rng(0)
    for batch, seq in [(1, 16), (3, 5)]:
        ids = rng.integers(0, 100, (batch, seq)).astype("int64")
        mask = np.ones((batch, seq), "int64")
        mask[0, seq // 2 :] = 0
        expected = ort_run(bert_dynamo, {"input_ids": ids, "attention_mask": mask})[0]
        got = predictor(input_ids=ids, attention_mask=mask)[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_fixed_shapes_fold_shape_arithmetic_and_match_onnxruntime(bert_dynamo, tmp_path):
    model = tvmopt.import_model(bert_dynamo, input_shapes={"input_ids": (1, 8), "attention_mask": (1, 8)})
    assert [s.dtype for s in model.inputs] == ["int64", "int64"]
    predictor = tvmopt.load(tvmopt.compile(model, "host", tmp_path / "art", log_root=None).path)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 100, (1, 8)).astype("int64")
    mask = np.ones((1, 8), "int64")
    mask[0, 5:] = 0  # padding
    expected = ort_run(bert_dynamo, {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(predictor(input_ids=ids, attention_mask=mask)[0], expected, atol=1e-4, rtol=1e-4)

"""The benchmark zoo (tvmopt.frontends.zoo): every model exported to ONNX, checked against PyTorch and
ONNX Runtime, and compiled untuned by TVM from both the ONNX file and the nn.Module.

Untuned TVM on CPU is slow (ResNet-18 ~2 s a run on 2 cores), so each compiled model runs once.
Tolerance everywhere: rtol=1e-4, atol=1e-4.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import tvmopt
from tvmopt.frontends import zoo
from tvmopt.errors import TvmoptError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-4
ATOL = 1e-4
NAMES = ["resnet18", "mobilenetv2", "bert4", "mlp"]
EXPECTED_IO = {  # name -> (inputs as (name, shape, dtype), outputs as (name, shape))
    "resnet18": ([("input", (1, 3, 224, 224), "float32")], [("logits", (1, 1000))]),
    "mobilenetv2": ([("input", (1, 3, 224, 224), "float32")], [("logits", (1, 1000))]),
    "bert4": (
        [("input_ids", (1, 128), "int64"), ("attention_mask", (1, 128), "int64")],
        [("last_hidden_state", (1, 128, 256))],
    ),
    "mlp": ([("input", (1, 512), "float32")], [("logits", (1, 10))]),
}


@dataclass
class Case:
    entry: zoo.ZooModel
    module: object  # torch.nn.Module
    inputs: tuple  # torch tensors
    feeds: dict  # input name -> numpy array
    torch_out: list  # numpy arrays
    onnx_path: Path
    ort_out: list  # numpy arrays


def torch_run(module, inputs) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*inputs)
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def assert_close(actual, expected) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert (got.shape, got.dtype) == (want.shape, want.dtype)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module", params=NAMES)
def case(request, tmp_path_factory) -> Case:
    """One zoo model built, run in torch, exported and run in ORT, once per module."""
    entry = zoo.get(request.param)
    module = entry.build()
    inputs = entry.example_inputs()
    path = entry.export_onnx(tmp_path_factory.mktemp("zoo") / f"{entry.name}.onnx")
    feeds = {n: t.numpy() for n, t in zip(entry.input_names, inputs)}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return Case(entry, module, inputs, feeds, torch_run(module, inputs), path, session.run(None, feeds))


def compile_and_load(model: tvmopt.Model, out_dir: Path):
    artifact = tvmopt.compile(model, "host", str(out_dir), log_root=None)
    return tvmopt.load(artifact.path)


# --------------------------------------------------------------------------- registry


def test_zoo_names_and_unknown_name():
    assert list(zoo.ZOO) == NAMES
    assert all(zoo.get(n) is zoo.ZOO[n] and zoo.ZOO[n].name == n for n in NAMES)
    with pytest.raises(TvmoptError, match="unknown zoo model 'resnet50'.*resnet18, mobilenetv2, bert4, mlp"):
        zoo.get("resnet50")


def test_import_needs_no_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import tvmopt.frontends.zoo as z\n"
        "from tvmopt.errors import MissingDependencyError\n"
        "assert z.get('bert4').input_names == ('input_ids', 'attention_mask')\n"
        "try:\n    z.get('mlp').build()\nexcept MissingDependencyError:\n    pass\n"
        "else:\n    raise SystemExit('build() without torch did not raise')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_build_and_inputs_are_deterministic():
    entry = zoo.get("mobilenetv2")
    state = torch.random.get_rng_state()
    a, b = entry.build().state_dict(), entry.build().state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # BatchNorm statistics are not the identity, so BN folding is really tested
    bn = [k for k in a if k.endswith("running_var")]
    assert len(bn) == 52 and all(not torch.allclose(a[k], torch.ones_like(a[k])) for k in bn)
    assert all(not torch.allclose(a[k.replace("var", "mean")], torch.zeros_like(a[k])) for k in bn)
    assert not entry.build().training

    ids, mask = zoo.get("bert4").example_inputs()
    ids2, _ = zoo.get("bert4").example_inputs()
    assert torch.equal(ids, ids2) and not torch.equal(ids, zoo.get("bert4").example_inputs(seed=1)[0])
    assert ids.dtype == mask.dtype == torch.int64 and int(ids.min()) >= 0 and int(ids.max()) < 30522
    assert mask[0, :112].eq(1).all() and mask[0, 112:].eq(0).all()


# --------------------------------------------------------------------------- per model


def test_onnx_export_matches_torch(case: Case):
    import onnx

    inputs, outputs = EXPECTED_IO[case.entry.name]
    assert [(n, tuple(a.shape), str(a.dtype)) for n, a in case.feeds.items()] == inputs
    assert [(n, o.shape) for (n, _), o in zip(outputs, case.torch_out)] == outputs
    graph = onnx.load(str(case.onnx_path)).graph
    declared = [(vi.name, tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)) for vi in graph.input]
    assert declared == [(n, s) for n, s, _ in inputs]  # static shapes, our names
    assert [vi.name for vi in graph.output] == list(case.entry.output_names)
    assert_close(case.ort_out, case.torch_out)


def test_tvm_from_onnx_matches_ort(case: Case, tmp_path):
    model = tvmopt.import_model(case.onnx_path)
    assert model.is_static
    predictor = compile_and_load(model, tmp_path / "art")
    assert_close(predictor(**case.feeds), case.ort_out)


def test_tvm_from_torch_module_matches_torch(case: Case, tmp_path):
    model = tvmopt.import_model(case.module, example_inputs=case.inputs)
    predictor = compile_and_load(model, tmp_path / "art")
    assert_close(predictor(*case.feeds.values()), case.torch_out)


def test_bert_padding_mask_is_applied():
    """Changing a padded token must not change the output at any unpadded position."""
    entry = zoo.get("bert4")
    module = entry.build()
    ids, mask = entry.example_inputs()
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1) % 30522
    before, after = torch_run(module, (ids, mask))[0], torch_run(module, (other, mask))[0]
    np.testing.assert_allclose(after[0, :112], before[0, :112], rtol=0, atol=1e-5)
    assert not np.allclose(after[0, 127], before[0, 127])

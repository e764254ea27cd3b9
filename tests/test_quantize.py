"""`tvmopt quantize`: ONNX Runtime's quantizer + the accuracy report, then tvmopt on the result.

Real models built in code (tests/models.py), quantized, reported against fp32 in ONNX Runtime,
then compiled by tvmopt and compared with ONNX Runtime on the same quantized file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import models  # noqa: E402

import tvmopt  # noqa: E402
from conftest import ort_run, run_cli  # noqa: E402
from tvmopt.errors import AccuracyError, InputSpecError, QuantizeError  # noqa: E402
from tvmopt.quantize import AccuracyReport  # noqa: E402

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="module")
def mlp_onnx_q(model_dir) -> Path:
    module, example = models.mlp()
    return models.export_onnx(module, example, model_dir / "mlp.onnx", ["x"], ["y"])


@pytest.fixture(scope="module")
def cnn_onnx_q(model_dir) -> Path:
    module, example = models.small_cnn()
    return models.export_onnx(module, example, model_dir / "cnn.onnx", ["x"], ["logits"])


def _ops(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _build(path: Path, out: Path):
    return tvmopt.load(tvmopt.compile(tvmopt.import_model(path), "host", out, log_root=None).path)


def test_dynamic_int8_report_and_tvmopt_matches_ort_on_the_quantized_file(mlp_onnx_q, model_dir, tmp_path):
    result = tvmopt.quantize(mlp_onnx_q, model_dir / "mlp_int8.onnx", samples=16)
    assert result.path.is_file() and {"DynamicQuantizeLinear", "MatMulInteger"} <= _ops(result.path)
    report = result.report
    assert report.samples == 16 and "seeded random" in report.inputs
    assert report.size_after < report.size_before / 2.5
    (out,) = report.outputs
    assert out.name == "y" and 0 < out.mean_abs_diff <= out.max_abs_diff < 0.5
    assert 0.99 < out.cosine_min <= out.cosine_mean <= 1.0
    assert out.top1_agreement is not None  # [1, 10] logits: classifier-shaped
    saved = AccuracyReport.load(result.report_path)
    assert result.report_path == model_dir / "mlp_int8.accuracy.json" and saved == report
    # the scheme follows the host: 7-bit weights where the int8 dot product saturates
    host = tvmopt.get_target("host")
    assert result.scheme.reduce_range == (host.supports.int8_dot == "pmaddubsw")
    predictor = _build(result.path, tmp_path / "art")
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((1, 64)).astype(np.float32)
        np.testing.assert_allclose(predictor(x)[0], ort_run(result.path, {"x": x})[0], atol=1e-5)


def test_static_qdq_cnn_calibrated_on_given_samples(cnn_onnx_q, model_dir, tmp_path):
    rng = np.random.default_rng(2)
    calibration = model_dir / "calib.npz"
    np.savez(calibration, x=rng.standard_normal((8, 1, 3, 16, 16)).astype(np.float32))
    evaluation = model_dir / "eval.npz"
    np.savez(evaluation, x=rng.standard_normal((12, 3, 16, 16)).astype(np.float32))  # [N, ...] for batch 1
    result = tvmopt.quantize(cnn_onnx_q, model_dir / "cnn_int8.onnx", mode="int8-static",
                             calibration=calibration, evaluation=evaluation)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= _ops(result.path)
    assert result.scheme.per_channel and result.scheme.calibration == "minmax"
    report = result.report
    assert report.samples == 12 and report.inputs == str(evaluation)
    assert report.outputs[0].cosine_min > 0.98 and report.size_after < report.size_before
    predictor = _build(result.path, tmp_path / "art")
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    ours, theirs = predictor(x)[0], ort_run(result.path, {"x": x})[0]
    # TVM computes the QDQ convs in fp32 on dequantized values, ORT in integers: a rounding of a
    # re-quantized activation may land one step apart; the outputs agree to a small fraction
    cosine = float(np.dot(ours.ravel(), theirs.ravel()) / np.linalg.norm(ours) / np.linalg.norm(theirs))
    assert cosine > 0.999 and np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()


def test_torch_module_is_exported_first(model_dir):
    module, example = models.small_cnn()
    out = model_dir / "torch_cnn_int8.onnx"
    result = tvmopt.quantize(module, out, mode="int8-static", example_inputs=example, samples=4,
                             calibration_samples=4)
    assert result.fp32_path == model_dir / "torch_cnn_int8.fp32.onnx" and result.fp32_path.is_file()
    assert result.report.model == str(result.fp32_path)


def test_fp16_and_bf16_report_and_compile(mlp_onnx_q, model_dir, tmp_path):
    import onnx

    fp16 = tvmopt.quantize(mlp_onnx_q, model_dir / "mlp_fp16.onnx", mode="fp16", samples=8)
    # A warning exactly where the host has no fp16 arithmetic (Zen 4 has none, Sapphire Rapids+ has avx512_fp16).
    assert any("no native fp16" in w for w in fp16.warnings) == (not tvmopt.get_target("host").supports.fp16)
    assert fp16.report.outputs[0].cosine_min > 0.9999 and fp16.report.size_after < 0.6 * fp16.report.size_before
    bf16 = tvmopt.quantize(mlp_onnx_q, model_dir / "mlp_bf16.onnx", mode="bf16", samples=8)
    assert any("avx512_bf16" in w for w in bf16.warnings)  # says honestly what TVM does with bf16
    types = {init.data_type for init in onnx.load(str(bf16.path)).graph.initializer}
    assert onnx.TensorProto.BFLOAT16 in types
    x = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)
    for result, atol in ((fp16, 5e-3), (bf16, 1e-5)):
        predictor = _build(result.path, tmp_path / result.scheme.mode)
        np.testing.assert_allclose(predictor(x)[0], ort_run(result.path, {"x": x})[0], atol=atol)


def test_fp16_compiles_for_cuda(model_dir, mlp_onnx_q, tmp_path):
    import shutil

    if not shutil.which("nvcc") and not Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("needs nvcc (the CUDA toolkit) to compile device code")
    result = tvmopt.quantize(mlp_onnx_q, model_dir / "mlp_fp16_cuda.onnx", mode="fp16", target="cuda-sm80",
                             samples=4)
    assert not result.warnings  # sm_80 has fp16 arithmetic
    artifact = tvmopt.compile(tvmopt.import_model(result.path), "cuda-sm80", tmp_path / "cuda", log_root=None)
    assert artifact.manifest.device_code.arch == "sm_80"


def test_min_agreement_fails_with_a_clear_message(model_dir):
    """A 1000-class head with near-equal logits: int8 flips some top-1 classes.

    Quantized for x86-avx2 on every host: its 7-bit weights (`reduce_range`) flip classes for sure,
    where a VNNI host's 8-bit weights kept all 32 samples' top-1 here."""
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(64, 1000)).eval()
    with torch.no_grad():
        head[0].weight.mul_(0.05)
    src = models.export_onnx(head, (torch.randn(1, 64),), model_dir / "head.onnx", ["x"], ["logits"])
    out = model_dir / "head_int8.onnx"
    result = tvmopt.quantize(src, out, samples=32, target="x86-avx2")
    agreement = result.report.top1_agreement
    assert agreement is not None and agreement < 1.0  # precondition of this test
    with pytest.raises(AccuracyError, match=r"top-1 agreement with fp32 is .*below --min-agreement 100\.0%") as info:
        tvmopt.quantize(src, out, samples=32, target="x86-avx2", min_agreement=1.0)
    assert "\n" not in str(info.value) and str(out) in str(info.value)
    proc = run_cli("quantize", str(src), "-o", str(out), "--samples", "32", "-t", "x86-avx2", "--min-agreement", f"{agreement - 1e-6:.6f}")
    assert proc.returncode == 0, proc.stderr  # at the measured agreement it passes
    proc = run_cli("quantize", str(src), "-o", str(out), "--samples", "32", "-t", "x86-avx2", "--min-agreement", "100%")
    assert proc.returncode == 2 and proc.stderr.startswith("tvmopt: error: top-1 agreement")
    assert "accuracy of" in proc.stdout  # the report is still printed


def test_min_agreement_needs_a_classifier_output(model_dir):
    module, example = models.tiny_transformer()
    src = models.export_onnx(module, example, model_dir / "tiny.onnx", ["x"], ["y"])
    with pytest.raises(AccuracyError, match="classifier-shaped.*--min-cosine"):
        tvmopt.quantize(src, model_dir / "tiny_int8.onnx", samples=4, min_agreement=0.9)
    with pytest.raises(AccuracyError, match="cosine similarity"):
        tvmopt.quantize(src, model_dir / "tiny_int8.onnx", samples=4, min_cosine=1.0 - 1e-12)


def test_cli_quantize_prints_and_saves_the_report(mlp_onnx_q, model_dir):
    out = model_dir / "cli" / "mlp_q.onnx"
    proc = run_cli("quantize", str(mlp_onnx_q), "-o", str(out), "--samples", "8", "-t", "x86-avx512-vnni")
    assert proc.returncode == 0, proc.stderr
    assert "max |diff|" in proc.stdout and "cosine" in proc.stdout and "smaller" in proc.stdout
    saved = json.loads((model_dir / "cli" / "mlp_q.accuracy.json").read_text())
    assert saved["scheme"]["target"] == "x86-avx512-vnni" and saved["scheme"]["reduce_range"] is False


def test_bad_inputs_are_one_line_errors(mlp_onnx_q, model_dir):
    bad = model_dir / "bad.npz"
    np.savez(bad, y=np.zeros((2, 1, 64), np.float32))
    with pytest.raises(InputSpecError, match=r"bad\.npz: no array for input\(s\) x"):
        tvmopt.quantize(mlp_onnx_q, model_dir / "m.onnx", evaluation=bad)
    np.savez(bad, x=np.zeros((2, 1, 63), np.float32))
    with pytest.raises(InputSpecError, match=r"input 'x' has shape 2x1x63; expected 1x64"):
        tvmopt.quantize(mlp_onnx_q, model_dir / "m.onnx", mode="int8-static", calibration=bad)
    with pytest.raises(QuantizeError, match="unknown mode 'int4'"):
        tvmopt.quantize(mlp_onnx_q, model_dir / "m.onnx", mode="int4")
    with pytest.raises(QuantizeError, match=r"name it \*\.onnx"):
        tvmopt.quantize(mlp_onnx_q, model_dir / "m.bin")
    proc = run_cli("quantize", str(model_dir / "missing.onnx"), "-o", str(model_dir / "m.onnx"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "missing.onnx" in proc.stderr

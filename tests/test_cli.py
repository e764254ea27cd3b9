"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ort_run, run_cli


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tvmopt: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_teaches_the_pipeline():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for verb in ("targets", "inspect", "tune", "compile", "run", "demo"):
        assert verb in proc.stdout
    tune_help = run_cli("tune", "--help").stdout
    assert "resumes" in tune_help and "--trials-per-task" in tune_help and "--timeout" in tune_help


def test_targets_list_and_show():
    listed = run_cli("targets")
    assert listed.returncode == 0 and "x86-avx512" in listed.stdout and "cuda-sm80" in listed.stdout
    shown = run_cli("targets", "show", "arm-neoverse-n1")
    assert json.loads(shown.stdout)["target"]["mcpu"] == "neoverse-n1"
    assert "unknown target 'nope'" in one_line_error(run_cli("targets", "show", "nope"))


def test_inspect_reports_inputs_kernels_and_tasks(cnn_onnx):
    proc = run_cli("inspect", str(cnn_onnx), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["inputs"] == [{"name": "input", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert report["operators"]["nn.conv2d"] == 2
    assert any("conv2d" in k["name"] and k["flops"] > 1e5 for k in report["kernels"])
    assert len(report["tasks"]) >= 3
    text = run_cli("inspect", str(cnn_onnx))
    assert "fused kernels" in text.stdout and "tuning tasks" in text.stdout


def test_tune_compile_run_through_the_cli(cnn_onnx, tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "art"
    tuned = run_cli("tune", str(cnn_onnx), "--budget", "smoke", "--log-dir", str(logs), "--no-progress")
    assert tuned.returncode == 0, tuned.stderr
    assert "finished" in tuned.stdout and "estimated model latency" in tuned.stdout
    compiled = run_cli("compile", str(cnn_onnx), "--log-dir", str(logs), "-o", str(out))
    assert compiled.returncode == 0, compiled.stderr
    assert "kernels tuned" in compiled.stdout
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype("float32")
    np.savez(tmp_path / "in.npz", input=x)
    ran = run_cli("run", str(out), "--inputs", str(tmp_path / "in.npz"), "--save-outputs", str(tmp_path / "out.npz"),
                  "--repeat", "5", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["median_ms"] > 0 and report["outputs"][0]["shape"] == [1, 10]
    with np.load(tmp_path / "out.npz") as saved:
        np.testing.assert_allclose(saved["logits"], ort_run(cnn_onnx, {"input": x})[0], atol=1e-4, rtol=1e-4)
    plain = run_cli("run", str(out), "--repeat", "3")  # random inputs
    assert plain.returncode == 0 and "median" in plain.stdout and "logits" in plain.stdout


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory, cnn_onnx):
    d = tmp_path_factory.mktemp("broken")
    data = cnn_onnx.read_bytes()
    (d / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (d / "text.onnx").write_text("this is not a model\n")
    (d / "empty.onnx").write_bytes(b"")
    return d


@pytest.mark.parametrize(
    "args, expected",
    [
        (["inspect", "{d}/missing.onnx"], "missing.onnx: no such file"),
        (["inspect", "{d}/truncated.onnx"], "truncated.onnx: not a readable ONNX model"),
        (["inspect", "{d}/text.onnx"], "text.onnx: "),
        (["inspect", "{d}/empty.onnx"], "empty.onnx: "),
        (["inspect", "{d}"], "is a directory"),
        (["inspect", "{cnn}", "--input-shape", "image:1x3x32x32"], "model's inputs are: input"),
        (["inspect", "{cnn}", "--input-shape", "input:1x3x32"], "has rank 4"),
        (["inspect", "{cnn}", "--input-shape", "input:2x3x32x32"], "dim 0 is fixed to 1"),
        (["inspect", "{cnn}", "--input-shape", "input:1x3x32xq!"], "neither a positive integer nor a name"),
        (["compile", "{cnn}", "-t", "nosuch"], "unknown target 'nosuch'"),
        (["tune", "{cnn}", "--trials-per-task", "0"], "must be positive"),
        (["run", "{d}/missing-artifact"], "no such artifact"),
        (["run", "{d}"], "no manifest.json"),
    ],
)
def test_bad_input_gives_exit_2_and_one_line(args, expected, broken_files, cnn_onnx):
    args = [a.format(d=broken_files, cnn=cnn_onnx) for a in args]
    assert expected in one_line_error(run_cli(*args))


def test_bad_artifact_manifest_and_library(cnn_onnx, tmp_path):
    out = tmp_path / "art"
    assert run_cli("compile", str(cnn_onnx), "--no-tuning", "-o", str(out)).returncode == 0
    manifest = out / "manifest.json"
    original = manifest.read_text()
    manifest.write_text(original[:40])
    assert "corrupt manifest" in one_line_error(run_cli("run", str(out)))
    manifest.write_text(original)
    (out / "model.so").write_bytes(b"\x7fELF garbage")
    assert "sha256 does not match" in one_line_error(run_cli("run", str(out)))
    shutil.rmtree(out)
    assert run_cli("compile", str(cnn_onnx), "--no-tuning", "-o", str(out)).returncode == 0
    fresh = manifest.read_text()
    data = json.loads(fresh)
    data["tvm_version"] = "0.1.0"
    manifest.write_text(json.dumps(data))
    assert "built with TVM 0.1.0" in one_line_error(run_cli("run", str(out)))
    data = json.loads(fresh)
    data["target"]["requires"] = {"arch": "aarch64"}
    manifest.write_text(json.dumps(data))
    assert "built for aarch64" in one_line_error(run_cli("run", str(out)))
    manifest.write_text(fresh)
    np.savez(tmp_path / "wrong.npz", input=np.zeros((1, 3, 16, 16), "float32"))
    assert "input 'input': shape 1x3x16x16, expected 1x3x32x32" in one_line_error(
        run_cli("run", str(out), "--inputs", str(tmp_path / "wrong.npz")))


def test_verbose_shows_the_traceback(tmp_path):
    proc = run_cli("-v", "inspect", str(tmp_path / "missing.onnx"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr

"""`tvmopt bench`: one run, interleaved, every contender checked against ONNX Runtime's outputs."""

from __future__ import annotations

import json

import tvmopt
from conftest import run_cli


def _by_name(report: dict) -> dict:
    return {r["name"]: r for r in report["results"]}


def test_bench_zoo_model_json_report(tmp_path):
    proc = run_cli("bench", "mlp", "--log-dir", str(tmp_path / "logs"), "--rounds", "2", "--runs", "3",
                   "--no-torch-compile", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    results = _by_name(report)
    assert set(results) == {"tvm-untuned", "tvm-tuned", "onnxruntime", "torch"}
    assert results["onnxruntime"]["ratio_to_onnxruntime"] == 1.0
    # The log dir is empty, but the MLP's kernels are in the reference logs shipped with tvmopt.
    from tvmopt.machine import this_machine
    from tvmopt.targets import get_target

    tuned = results["tvm-tuned"]
    if get_target("x86-avx2").requires.problem_on(this_machine()) is None:
        assert "kernels tuned" in tuned["note"] and tuned["median_ms"] > 0 and tuned["max_abs_diff"] < 1e-4
    else:
        assert tuned["median_ms"] is None and "tvmopt tune" in tuned["note"]
    for name in ("tvm-untuned", "onnxruntime", "torch"):
        r = results[name]
        assert r["median_ms"] > 0 and r["max_abs_diff"] < 1e-4, r
        assert abs(r["ratio_to_onnxruntime"] - r["median_ms"] / results["onnxruntime"]["median_ms"]) < 1e-2
    assert report["machine"]["cores"] >= 1 and report["machine"]["threads"] >= 1


def test_bench_onnx_file_uses_the_log(cnn_onnx, tmp_path):
    model = tvmopt.import_model(cnn_onnx)
    tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path, progress=False)
    proc = run_cli("bench", str(cnn_onnx), "--log-dir", str(tmp_path), "--rounds", "2", "--runs", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    results = _by_name(json.loads(proc.stdout))
    assert set(results) == {"tvm-untuned", "tvm-tuned", "onnxruntime"}  # no torch for a plain ONNX file
    tuned = results["tvm-tuned"]
    assert tuned["median_ms"] > 0 and tuned["max_abs_diff"] < 1e-4 and "kernels tuned" in tuned["note"]
    table = run_cli("bench", str(cnn_onnx), "--log-dir", str(tmp_path), "--rounds", "1", "--runs", "2")
    assert "vs ORT" in table.stdout and "tvm-tuned" in table.stdout


def test_bench_quantized_model_against_ort_int8_and_both_fp32_paths(tmp_path):
    """The quantized file runs in ORT as the reference; --baseline adds tvmopt and ORT on fp32."""
    from tvmopt.frontends.zoo import ZOO
    from tvmopt.machine import this_machine
    from tvmopt.targets import get_target

    fp32 = ZOO["mlp"].export_onnx(tmp_path / "mlp.onnx")  # its fp32 kernels are in the shipped logs
    int8 = tvmopt.quantize(fp32, tmp_path / "mlp_int8.onnx", samples=4).path
    from tvmopt.measure.bench import bench

    bench_report = bench(str(int8), "host", log_root=tmp_path / "logs", rounds=2, runs=3, baseline=fp32)
    report = json.loads(json.dumps(bench_report.to_json()))  # what `bench --json` prints
    results = _by_name(report)
    assert report["baseline"] == str(fp32)
    assert {"tvm-untuned", "tvm-tuned", "onnxruntime", "tvm-tuned-fp32", "onnxruntime-fp32"} == set(results)
    for name in ("tvm-untuned", "onnxruntime"):  # against ORT on the same int8 file: exact here
        assert results[name]["median_ms"] > 0 and results[name]["max_abs_diff"] < 1e-5, results[name]
    tuned = results["tvm-tuned"]  # the int8 GEMMs have no records; fp32 kernels it shares may
    assert tuned["median_ms"] is None or tuned["max_abs_diff"] < 1e-5
    ort_int8, ort_fp32 = results["onnxruntime"], results["onnxruntime-fp32"]
    assert ort_fp32["ratio_to_onnxruntime"] == 1.0 and ort_fp32["max_abs_diff"] == 0
    assert abs(ort_int8["ratio_to_fp32"] - ort_int8["median_ms"] / ort_fp32["median_ms"]) < 1e-2
    tvm_fp32 = results["tvm-tuned-fp32"]
    if get_target("x86-avx2").requires.problem_on(this_machine()) is None:
        assert tvm_fp32["median_ms"] > 0 and tvm_fp32["max_abs_diff"] < 1e-4 and "kernels tuned" in tvm_fp32["note"]
    table = bench_report.format()
    assert "vs fp32" in table and "onnxruntime-fp32" in table and f"fp32 baseline {fp32}" in table
    usage = run_cli("bench", "--help").stdout
    assert "--baseline FP32.onnx" in usage and "--no-untuned" in usage

"""Records are bound to their workload: a lost or replaced workload file never lends one model's records
to another (issue 11 item 2); `--trials N` measures N; NaN through tuned kernels."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ort_run, run_cli
from tvmopt.logs.store import BINDINGS_FILE, RECORD_FILE, UNVERIFIED_FILE, WORKLOAD_FILE


def lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def stock_tvm_records(log_dir: Path) -> int:
    from tvmopt._compat import ms

    return len(ms.database.JSONDatabase(work_dir=str(log_dir)).get_all_tuning_records())


def tune(model: Path, root: Path, trials: int):
    proc = run_cli("tune", str(model), "--budget", "smoke", "--trials", str(trials), "--log-dir", str(root),
                   "--no-progress", "--no-check")
    assert proc.returncode == 0, proc.stderr
    (log_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return proc, log_dir


@pytest.fixture(scope="module")
def cnn_log(cnn_onnx, tmp_path_factory):
    return tune(cnn_onnx, tmp_path_factory.mktemp("cnnlog"), 6)


@pytest.fixture(scope="module")
def mlp_log(mlp_onnx, tmp_path_factory):
    return tune(mlp_onnx, tmp_path_factory.mktemp("mlplog"), 2)


def copy_log(log_dir: Path, root: Path) -> Path:
    dest = root / log_dir.name
    shutil.copytree(log_dir, dest)
    return dest


def test_trials_cap_is_exact(cnn_log):
    """`--trials 6` measures 6 candidates, not the rest of MetaSchedule's batch."""
    proc, log_dir = cnn_log
    assert re.search(r"\b6 new trials\b", proc.stdout), proc.stdout
    assert len(lines(log_dir / RECORD_FILE)) == 6
    assert len(lines(log_dir / BINDINGS_FILE)) == 6
    assert stock_tvm_records(log_dir) == 6


def test_lost_workload_file_never_binds_records_to_another_model(cnn_log, mlp_onnx, tmp_path):
    _, cnn_dir = cnn_log
    log_dir = copy_log(cnn_dir, tmp_path)
    (log_dir / WORKLOAD_FILE).unlink()  # records kept, workloads lost
    proc, _ = tune(mlp_onnx, tmp_path, 2)
    assert "6 record(s) for workload line(s)" in proc.stderr and "cannot be verified" in proc.stderr
    assert f"moved to {UNVERIFIED_FILE}" in proc.stderr
    assert len(lines(log_dir / UNVERIFIED_FILE)) == 6
    # Only the MLP's own measurements remain, and each workload's best is one the MLP session measured.
    shown = json.loads(run_cli("logs", "show", str(log_dir), "--json").stdout)
    [session] = [s for s in shown["sessions"] if s["model"] == "mlp"]
    measured = {t["workload_hash"]: t["best_us"] for t in session["tasks"]}
    assert {w["workload_hash"] for w in shown["workloads"]} == set(measured)
    for workload in shown["workloads"]:
        assert workload["best_us"] == measured[workload["workload_hash"]]
    assert len(lines(log_dir / RECORD_FILE)) == session["trials_run"] == stock_tvm_records(log_dir)
    assert run_cli("logs", "validate", str(log_dir)).returncode == 0


def test_replaced_workload_file_is_reported_and_never_applied(cnn_log, mlp_log, mlp_onnx, tmp_path):
    _, cnn_dir = cnn_log
    _, mlp_dir = mlp_log
    root = tmp_path / "logs"
    log_dir = copy_log(cnn_dir, root)
    shutil.copy(mlp_dir / WORKLOAD_FILE, log_dir / WORKLOAD_FILE)  # another log's workloads, same indices
    validated = run_cli("logs", "validate", str(log_dir), "--json")
    assert validated.returncode == 1
    report = json.loads(validated.stdout)
    assert report["records_loaded"] == 0
    assert any("measured on another workload" in p for p in report["problems"]), report["problems"]
    shown = json.loads(run_cli("logs", "show", str(log_dir), "--json").stdout)
    assert all(w["best_us"] is None and w["trials"] == 0 for w in shown["workloads"])
    compiled = run_cli("compile", str(mlp_onnx), "--log-dir", str(root), "-o", str(tmp_path / "art"))
    assert compiled.returncode == 0, compiled.stderr
    assert "0/2 kernels tuned" in compiled.stdout and "measured on another workload" in compiled.stderr


def test_log_from_before_bindings_is_trusted_then_bound(cnn_log, tmp_path):
    from tvmopt.logs.store import LogDatabase

    _, cnn_dir = cnn_log
    log_dir = copy_log(cnn_dir, tmp_path)
    (log_dir / BINDINGS_FILE).unlink()
    assert json.loads(run_cli("logs", "validate", str(log_dir), "--json").stdout)["records_loaded"] == 6
    LogDatabase(log_dir)  # its next writer binds what it holds
    assert len(lines(log_dir / BINDINGS_FILE)) == 6
    assert json.loads(run_cli("logs", "validate", str(log_dir), "--json").stdout)["records_loaded"] == 6


def test_prune_keeps_bindings(cnn_log, tmp_path):
    _, cnn_dir = cnn_log
    out = tmp_path / "pruned"
    assert run_cli("logs", "prune", str(cnn_dir), "--top-k", "1", "-o", str(out)).returncode == 0
    report = json.loads(run_cli("logs", "validate", str(out), "--json").stdout)
    assert report["problems"] == [] and report["records_loaded"] == len(lines(out / BINDINGS_FILE)) >= 1


def test_nan_propagates_through_tuned_kernels_as_in_onnxruntime(cnn_log, cnn_onnx, tmp_path):
    """A NaN input pixel: tuned conv+ReLU kernels give NaN where ONNX Runtime does, not 0."""
    root = cnn_log[1].parent
    out = tmp_path / "art"
    compiled = run_cli("compile", str(cnn_onnx), "--log-dir", str(root), "-o", str(out))
    assert compiled.returncode == 0, compiled.stderr
    assert int(re.search(r"(\d+)/\d+ kernels tuned", compiled.stdout).group(1)) >= 1, compiled.stdout
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    x[0, 1, 5, 7] = np.nan
    np.savez(tmp_path / "in.npz", input=x)
    ran = run_cli("run", str(out), "--inputs", str(tmp_path / "in.npz"), "--save-outputs", str(tmp_path / "o.npz"),
                  "--repeat", "1")
    assert ran.returncode == 0, ran.stderr
    expected = ort_run(cnn_onnx, {"input": x})[0]
    assert np.isnan(expected).any()
    with np.load(tmp_path / "o.npz") as saved:
        np.testing.assert_allclose(saved["logits"], expected, atol=1e-4, rtol=1e-4, equal_nan=True)

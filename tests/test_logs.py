"""`tvmopt logs show / validate` on a real tuning log."""

from __future__ import annotations

import json

import pytest
import tvmopt
from conftest import run_cli
from tvmopt.tuning.database import RECORD_FILE


@pytest.fixture(scope="module")
def tuned_log(cnn_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    log = tvmopt.tune(tvmopt.import_model(cnn_onnx), "host", budget="smoke", log_root=root, progress=False)
    return log


def test_show_names_each_workload_with_its_trials_and_best(tuned_log):
    proc = run_cli("logs", "show", str(tuned_log.log_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    shown = {w["name"]: w for w in report["workloads"]}
    assert set(shown) == {t.name for t in tuned_log.tasks}
    for task in tuned_log.tasks:
        row = shown[task.name]
        assert row["trials"] == task.trials_run and row["workload_hash"] == task.workload_hash
        assert row["best_us"] == pytest.approx(task.best_us, rel=1e-3)
    assert report["sessions"][0]["status"] == "finished" and report["machines"][0]["cores"] >= 1
    assert "GFLOP/s" in run_cli("logs", "show", str(tuned_log.log_dir)).stdout


def test_validate_reports_corrupt_lines_without_crashing(tuned_log, tmp_path):
    import shutil

    assert run_cli("logs", "validate", str(tuned_log.log_dir)).returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(tuned_log.log_dir, copy)
    with open(copy / RECORD_FILE, "a") as stream:
        stream.write("not json at all\n[0, [1, 2\n")
    proc = run_cli("logs", "validate", str(copy), "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["records_loaded"] == tuned_log.trials_run
    assert any("corrupt JSON" in p for p in report["problems"])
    not_a_log = run_cli("logs", "show", str(tmp_path))
    assert not_a_log.returncode == 2 and "not a tuning log" in not_a_log.stderr

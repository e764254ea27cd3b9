"""Real tuning sessions: records land in the log as measured, survive SIGKILL, resume, never duplicate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tvmopt
from conftest import REPO, ort_run
from tvmopt.logs.store import LogDatabase
from tvmopt.tuning import make_budget
from tvmopt.logs.store import RECORD_FILE, WORKLOAD_FILE


def record_lines(log_dir: Path) -> list[list]:
    return [json.loads(line) for line in (log_dir / RECORD_FILE).read_text().splitlines() if line.strip()]


def assert_no_duplicate_measurements(log_dir: Path) -> None:
    keys = [(w, json.dumps(rec[0])) for w, rec in record_lines(log_dir)]
    assert len(keys) == len(set(keys)), "a candidate was logged twice"


def assert_stock_tvm_reads(log_dir: Path) -> int:
    """MetaSchedule's own JSONDatabase must load what we wrote (format compatibility)."""
    from tvmopt._compat import ms

    return len(ms.database.JSONDatabase(work_dir=str(log_dir)).get_all_tuning_records())


def test_tuned_cnn_matches_onnxruntime_and_logs_every_trial(cnn_onnx, tmp_path):
    model = tvmopt.import_model(cnn_onnx)
    log = tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path, progress=False)
    assert log.status == "finished"
    assert log.trials_run >= len(log.tasks)
    assert not log.untuned_tasks and log.estimated_ms > 0
    assert len(record_lines(log.log_dir)) == log.trials_run
    assert assert_stock_tvm_reads(log.log_dir) == log.trials_run
    session = json.loads(log.session_path.read_text())
    assert session["status"] == "finished" and session["model_sha256"] == model.sha256
    assert session["machine"]["tvm_version"] and session["machine"]["cores"] >= 1

    artifact = tvmopt.compile(model, "host", tmp_path / "art", log_root=tmp_path)
    assert artifact.manifest.tuning.tasks_tuned == len(log.tasks)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    out = tvmopt.load(artifact.path)(x)[0]
    np.testing.assert_allclose(out, ort_run(cnn_onnx, {"input": x})[0], atol=1e-4, rtol=1e-4)

    # Same command again: the log already holds each task's budget, so nothing new is measured.
    again = tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path, progress=False)
    assert again.trials_run == 0
    assert all(t.trials_before >= 1 for t in again.tasks)


def test_tuned_mlp_matches_onnxruntime(mlp_onnx, tmp_path):
    model = tvmopt.import_model(mlp_onnx)
    tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path, progress=False)
    artifact = tvmopt.compile(model, "host", tmp_path / "art", log_root=tmp_path)
    assert artifact.manifest.tuning.tasks_tuned >= 1
    x = np.random.default_rng(1).standard_normal((1, 64)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(mlp_onnx, {"x": x})[0], atol=1e-4, rtol=1e-4)


def test_tuned_transformer_matches_onnxruntime(transformer_onnx, tmp_path):
    model = tvmopt.import_model(transformer_onnx)
    budget = make_budget("smoke", trials=16)  # a handful of trials over its many tasks
    log = tvmopt.tune(model, "host", budget=budget, log_root=tmp_path, progress=False)
    # MetaSchedule's search may hand over one more candidate than asked in a task's last batch
    assert 0 < log.trials_run <= 2 * 16
    artifact = tvmopt.compile(model, "host", tmp_path / "art", log_root=tmp_path)
    assert artifact.manifest.tuning.tasks_tuned >= 1
    x = np.random.default_rng(2).standard_normal((1, 8, 32)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(transformer_onnx, {"x": x})[0], atol=1e-4, rtol=1e-4)


def _tune_cmd(model: Path, log_root: Path, per_task: int) -> list[str]:
    return [sys.executable, "-m", "tvmopt", "tune", str(model), "--budget", "smoke", "--trials-per-task",
            str(per_task), "--log-dir", str(log_root), "--no-progress"]


def test_sigkill_loses_no_measurement_and_rerun_resumes(cnn_onnx, tmp_path):
    import os

    per_task = 8
    log_dir = tmp_path / tvmopt.get_target("host").log_name
    scratch = tmp_path / "tmp"  # where the session builds candidates
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen(_tune_cmd(cnn_onnx, tmp_path, per_task), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    records = log_dir / RECORD_FILE
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and len(records.read_text().splitlines()) >= 6:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the session finished before it could be killed; raise per_task"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_with = len(record_lines(log_dir))
    assert killed_with >= 6  # every batch measured before the kill is on disk
    sessions = [json.loads(p.read_text()) for p in (log_dir / "sessions").glob("*.json")]
    assert [s["status"] for s in sessions] == ["running"]  # the killed session says how far it got
    shown = subprocess.run([sys.executable, "-m", "tvmopt", "logs", "show", str(log_dir), "--json"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert [s["status"] for s in json.loads(shown.stdout)["sessions"]] == ["stale"]  # its process is gone
    assert list(scratch.iterdir())  # the killed session's scratch directory is left behind...

    done = subprocess.run(_tune_cmd(cnn_onnx, tmp_path, per_task), cwd=REPO, capture_output=True, text=True,
                          timeout=400, env=env)
    assert done.returncode == 0, done.stderr
    assert not list(scratch.iterdir())  # ...until the next session sweeps it (and removes its own)
    statuses = sorted(json.loads(p.read_text())["status"] for p in (log_dir / "sessions").glob("*.json"))
    assert statuses == ["finished", "stale"]  # written down by the next session that opened the log
    final = record_lines(log_dir)
    assert len(final) >= killed_with
    assert_no_duplicate_measurements(log_dir)
    db = LogDatabase(log_dir, readonly=True)
    model = tvmopt.import_model(cnn_onnx)
    from tvmopt.compiler.passes import extract_tasks, fuse

    target = tvmopt.get_target("host").tvm_target()
    tasks = extract_tasks(fuse(model.mod, target), target)
    for task in tasks:
        # each task reached its budget across both sessions (or its search space ran out)
        assert db.trials_for(task.dispatched[0]) >= 1
    assert sum(db.trials_for(t.dispatched[0]) for t in tasks) == len(final)
    assert assert_stock_tvm_reads(log_dir) == len(final)


def test_truncated_last_line_is_skipped_with_warning_then_repaired(cnn_onnx, tmp_path, caplog):
    model = tvmopt.import_model(cnn_onnx)
    log = tvmopt.tune(model, "host", budget=make_budget("smoke", trials=4), log_root=tmp_path, progress=False)
    path = log.log_dir / RECORD_FILE
    good = path.read_text()
    path.write_text(good + good.splitlines()[0][: len(good.splitlines()[0]) // 2])  # a torn write

    readonly = LogDatabase(log.log_dir, readonly=True)
    assert any("truncated last line skipped" in w for w in readonly.warnings)
    assert len(readonly) == log.trials_run
    writer = LogDatabase(log.log_dir)  # a writer under the lock cuts the torn tail off
    assert any("truncated last line removed" in w for w in writer.warnings)
    assert path.read_text() == good
    assert assert_stock_tvm_reads(log.log_dir) == log.trials_run

    (log.log_dir / WORKLOAD_FILE).write_text((log.log_dir / WORKLOAD_FILE).read_text() + "garbage\n")
    corrupt = LogDatabase(log.log_dir, readonly=True)
    assert any("corrupt JSON" in w for w in corrupt.warnings)
    assert len(corrupt) == log.trials_run


def test_two_concurrent_sessions_share_one_log_without_corruption(cnn_onnx, mlp_onnx, tmp_path):
    cmds = [_tune_cmd(m, tmp_path, 4) for m in (cnn_onnx, mlp_onnx)]
    procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err
    log_dir = tmp_path / tvmopt.get_target("host").log_name
    workloads = (log_dir / WORKLOAD_FILE).read_text().splitlines()
    for widx, _ in record_lines(log_dir):
        assert 0 <= widx < len(workloads)
    assert_no_duplicate_measurements(log_dir)
    assert assert_stock_tvm_reads(log_dir) == len(record_lines(log_dir))
    assert len(list((log_dir / "sessions").glob("*.json"))) == 2


def test_dynamic_model_cannot_be_tuned_and_says_how_to_fix(tmp_path):
    import torch
    from models import export_onnx, mlp

    path = tmp_path / "dyn.onnx"
    module, _ = mlp()
    export_onnx(module, (torch.randn(2, 64),), path, ["x"], ["y"], dynamic_axes={"x": {0: "batch"}})
    model = tvmopt.import_model(path)
    with pytest.raises(tvmopt.errors.TuningError, match=r"input 'x' dim 0 \('batch'\).*--input-shape x:1x64"):
        tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path)


def test_timeout_stops_the_session_and_keeps_its_records(cnn_onnx, tmp_path):
    from tvmopt.compiler import GraphOptions

    model = tvmopt.import_model(cnn_onnx)
    budget = make_budget("smoke", trials_per_task=50, timeout_s=20)
    # MetaSchedule's generic search spaces (no templates): large enough that 50 trials per task
    # cannot finish in 20 s, whatever the machine (a template's space may run out first).
    log = tvmopt.tune(model, "host", budget=budget, log_root=tmp_path, progress=False, options=GraphOptions.none())
    assert log.status == "timeout"
    assert 0 < log.trials_run < 50 * len(log.tasks)
    assert len(record_lines(log.log_dir)) == log.trials_run
    assert json.loads(log.session_path.read_text())["status"] == "timeout"


def test_embedding_lookup_kernels_get_valid_records(tmp_path):
    """Gather/take kernels used to crash the measuring process (random out-of-bounds indices)."""
    import torch
    from models import export_onnx

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(50, 16)
            self.head = torch.nn.Linear(16, 4)

        def forward(self, ids):
            return self.head(self.table(ids)).mean(dim=1)

    torch.manual_seed(0)
    path = export_onnx(Embed().eval(), (torch.randint(0, 50, (1, 8)),), tmp_path / "embed.onnx", ["ids"], ["y"])
    model = tvmopt.import_model(path)
    log = tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path, progress=False)
    assert any("take" in t.name for t in log.tasks)
    assert not log.untuned_tasks
    predictor = tvmopt.load(tvmopt.compile(model, "host", tmp_path / "art", log_root=tmp_path).path)
    ids = np.random.default_rng(0).integers(0, 50, (1, 8)).astype("int64")
    np.testing.assert_allclose(predictor(ids)[0], ort_run(path, {"ids": ids})[0], atol=1e-4, rtol=1e-4)

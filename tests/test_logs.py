"""`tvmopt logs show / validate` on a real tuning log."""

from __future__ import annotations

import json

import pytest
import tvmopt
from conftest import run_cli
from tvmopt.logs.report import show, validate
from tvmopt.logs.store import RECORD_FILE


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


def assert_stock_tvm_reads(log_dir) -> int:
    """MetaSchedule's own JSONDatabase loads the log (format compatibility)."""
    from tvmopt._compat import ms

    return len(ms.database.JSONDatabase(work_dir=str(log_dir)).get_all_tuning_records())


def _records_per_workload(log_dir) -> dict:
    from tvmopt.logs.store import LogDatabase

    database = LogDatabase(log_dir, readonly=True)
    return {i: len(database.get_all_records_of(mod)) for i, mod in enumerate(database.workload_modules())}


def test_prune_keeps_the_k_best_valid_records_and_stays_readable_by_tvm(tuned_log, tmp_path):
    import shutil

    from tvmopt.logs.maintain import prune

    copy = tmp_path / "copy"
    shutil.copytree(tuned_log.log_dir, copy)
    proc = run_cli("logs", "prune", str(copy), "--top-k", "1", "-o", str(tmp_path / "pruned"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records_after"] == len(tuned_log.tasks)
    counts = _records_per_workload(tmp_path / "pruned")
    assert len(counts) == len(tuned_log.tasks) and set(counts.values()) == {1}
    assert assert_stock_tvm_reads(tmp_path / "pruned") == len(tuned_log.tasks)
    best = {t.workload_hash: t.best_us for t in tuned_log.tasks}
    shown = {w.workload_hash: w.best_us for w in show(tmp_path / "pruned").workloads}
    assert shown == pytest.approx(best, rel=1e-3)  # the best record of each workload survives

    report = prune(copy, 2)  # in place: an atomic swap, nothing left beside it
    assert report.records_before == tuned_log.trials_run and report.records_after <= 2 * len(tuned_log.tasks)
    assert max(_records_per_workload(copy).values()) <= 2 and (copy / "sessions").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "pruned"]
    assert assert_stock_tvm_reads(copy) == report.records_after


def test_export_import_round_trip_and_merge(tuned_log, tmp_path):
    from tvmopt.logs.maintain import export_log

    exported = export_log(tuned_log.log_dir, tmp_path / "log.json")
    assert exported.records == tuned_log.trials_run
    assert json.loads((tmp_path / "log.json").read_text())["format"] == "tvmopt-log/1"
    proc = run_cli("logs", "import", str(tmp_path / "log.json"), "--log-dir", str(tmp_path / "root"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["records_added"] == tuned_log.trials_run and report["sessions_added"] == 1
    assert validate(report["log"]).records_loaded == tuned_log.trials_run
    # Merging the original into the imported copy adds nothing: every record is a duplicate.
    proc = run_cli("logs", "merge", str(tuned_log.log_dir), "--into", report["log"], "--json")
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(proc.stdout)
    assert merged["records_added"] == 0 and merged["duplicates_skipped"] == tuned_log.trials_run


def test_corrupt_export_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tvmopt-log/1", "target": "x", "workl')
    proc = run_cli("logs", "import", str(bad), "--log-dir", str(tmp_path / "root"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert str(bad) in proc.stderr and "tvmopt-log/1" in proc.stderr and "not valid JSON" in proc.stderr
    assert not (tmp_path / "root").exists()


def test_a_best_only_read_keeps_each_workloads_best_record_and_counts(tuned_log):
    """Compile reads logs best-only (parsing a record replays its trace: seconds for a big log);
    what it applies must be what a full read would apply, and the trial counts must not change."""
    from tvmopt.logs.store import LogDatabase
    from tvmopt.logs.workload import record_seconds

    full = LogDatabase(tuned_log.log_dir, readonly=True)
    best = LogDatabase(tuned_log.log_dir, readonly=True, best_only=True)
    assert len(best) == sum(full.best_record(mod) is not None for mod in full.workload_modules()) < len(full)
    for mod in full.workload_modules():
        a, b = full.best_record(mod), best.best_record(mod)
        assert (a is None) == (b is None)
        if a is not None:
            assert str(a.trace) == str(b.trace) and record_seconds(a.run_secs) == record_seconds(b.run_secs)
        assert (full.trials_for(mod), full.valid_trials_for(mod)) == (best.trials_for(mod), best.valid_trials_for(mod))
    with pytest.raises(ValueError, match="read-only"):
        LogDatabase(tuned_log.log_dir, best_only=True)


def _layer_norm_onnx(path, matmul_first: bool):
    """x [1, 64, 96] -> LayerNormalization, with a MatMul before it or not: the same layer-norm
    kernel, its blocks named after a different input tensor (x_sum vs lv_sum)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.ones(96, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(96, np.float32), "beta")]
    nodes, source = [], "x"
    if matmul_first:
        inits.append(numpy_helper.from_array(rng.standard_normal((96, 96)).astype(np.float32), "w"))
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["h"]))
        source = "h"
    nodes.append(helper.make_node("LayerNormalization", [source, "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5))
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 96])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 96])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_kernel_logged_under_other_block_names_is_tuned_and_compiled_with_readable_records(tmp_path):
    """MetaSchedule takes two kernels that differ only in block names for one workload; the log
    keeps the first one's names. A second model's session must still write records the log can
    read back, and its compile must apply them (they were unreadable lines before)."""
    import tvm
    from tvmopt.compiler import GraphOptions
    from tvmopt.compiler.passes import fuse
    from tvmopt.compiler.records import apply_records
    from tvmopt.logs.workload import block_names
    from tvmopt.targets import get_target
    from tvmopt.tuning import make_budget

    root = tmp_path / "logs"
    plain = tvmopt.import_model(_layer_norm_onnx(tmp_path / "plain.onnx", matmul_first=False))
    after_matmul = tvmopt.import_model(_layer_norm_onnx(tmp_path / "matmul.onnx", matmul_first=True))
    first = tvmopt.tune(plain, "host", budget=make_budget("smoke", trials_per_task=2), log_root=root, progress=False)
    # the same kernel tuned in a log of its own, then merged: its records translated too
    other = tvmopt.tune(after_matmul, "host", budget=make_budget("smoke", trials_per_task=2),
                        log_root=tmp_path / "other", progress=False)
    merged = tmp_path / "merged"
    assert run_cli("logs", "merge", str(first.log_dir), str(other.log_dir), "--into", str(merged)).returncode == 0
    proc = run_cli("logs", "validate", str(merged))
    assert proc.returncode == 0 and "unreadable" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    log = tvmopt.tune(after_matmul, "host", budget=make_budget("smoke", trials_per_task=6), log_root=root, progress=False)
    norm = [t for t in log.tasks if "layer_norm" in t.name]
    assert norm and norm[0].trials_run > 0  # the second session did tune the shared kernel
    proc = run_cli("logs", "validate", str(log.log_dir))
    assert proc.returncode == 0 and "unreadable" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    spec = get_target("host")
    fused = fuse(after_matmul.mod, spec.tvm_target(), GraphOptions())
    names = [block_names(tvm.IRModule({"main": f})) for gv, f in fused.functions_items() if "layer_norm" in gv.name_hint]
    scheduled, tuning, _ = apply_records(fused, spec.tvm_target(), spec, root)
    assert tuning.tasks_tuned == tuning.tasks_total
    for name, func in scheduled.functions_items():
        if "layer_norm" in name.name_hint:
            assert func.attrs.get("tirx.is_scheduled"), f"{name.name_hint} ({names}) kept TVM's default schedule"



def test_prune_only_for_a_model_drops_the_workloads_no_compile_of_it_asks_for(tuned_log, mlp_onnx, cnn_onnx, tmp_path):
    """A log also holding another model's kernels (as a log holds the kernels of an older graph
    pass after an upgrade): `prune --only-for MODEL` keeps exactly that model's workloads."""
    import shutil

    root = tmp_path / "root"
    log_dir = root / tuned_log.log_dir.name
    shutil.copytree(tuned_log.log_dir, log_dir)
    other = tvmopt.tune(tvmopt.import_model(mlp_onnx), "host", budget="smoke", log_root=root, progress=False)
    assert other.log_dir == log_dir
    before = {w.workload_hash for w in show(log_dir).workloads}
    assert len(before) == len(tuned_log.tasks) + len(other.tasks)
    proc = run_cli("logs", "prune", str(log_dir), "--top-k", "16", "--only-for", str(cnn_onnx), "-t", "host", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["workloads_after"] == len(tuned_log.tasks)
    assert {w.workload_hash for w in show(log_dir).workloads} == {t.workload_hash for t in tuned_log.tasks}
    assert validate(log_dir).problems == []
    misuse = run_cli("logs", "prune", str(log_dir), "--top-k", "16", "--batch-sizes", "1,4")
    assert misuse.returncode == 2 and "--only-for" in misuse.stderr

"""Batch buckets: one artifact with a static function per batch size; the predictor splits a batch
into the buckets that its timed calls show cheapest (padding where that pays) and slices; tuning
covers every bucket in one log; symbolic and static artifacts unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvmopt
from conftest import ort_run, run_cli
from tvmopt.errors import InputSpecError
from tvmopt.runtime.artifact import Manifest
from tvmopt.runtime.batching import BucketPlanner
from tvmopt.specs import BatchBuckets, TensorSpec


@pytest.fixture(scope="module")
def bucketed(mlp_dynamic_onnx, tmp_path_factory):
    model = tvmopt.import_model(mlp_dynamic_onnx)
    return tvmopt.compile(model, "host", tmp_path_factory.mktemp("buckets") / "mlp", log_root=None,
                          batch_sizes=(4, 1, 16, 4))


def test_one_artifact_one_manifest_with_the_buckets(bucketed):
    manifest = bucketed.manifest
    assert manifest.batch_buckets == BatchBuckets("batch", (1, 4, 16), ("main_b1", "main_b4", "main_b16"))
    assert manifest.inputs == (TensorSpec("x", ("batch", 64), "float32"),)
    assert manifest.outputs == (TensorSpec("y", ("batch", 10), "float32"),)
    assert sorted(p.name for p in bucketed.path.iterdir()) == ["manifest.json", "model.so"]
    on_disk = json.loads((bucketed.path / "manifest.json").read_text())
    assert on_disk["batch_buckets"]["buckets"][1] == {"size": 4, "function": "main_b4"}
    assert Manifest.from_json(on_disk) == manifest


@pytest.mark.parametrize("rows", [1, 3, 4, 5, 16, 17, 40])
def test_any_batch_size_runs_on_the_buckets_and_matches_onnxruntime(bucketed, mlp_dynamic_onnx, rows):
    predictor = tvmopt.load(bucketed.path)
    x = np.random.default_rng(rows).standard_normal((rows, 64)).astype("float32")
    out = predictor(x)[0]
    assert out.shape == (rows, 10)
    np.testing.assert_allclose(out, ort_run(mlp_dynamic_onnx, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_the_planner_pads_only_where_padding_is_cheaper():
    buckets = BatchBuckets.named("batch", (1, 4, 16))
    planner = BucketPlanner(buckets)
    # Nothing timed yet: rows plus a quarter row per call, so 15 rows pad to 16, 5 run as 4+1.
    assert planner.plan(15) == [16] and planner.plan(5) == [4, 1] and planner.plan(40) == [16, 16, 4, 4]
    # Per-row cost flat across buckets (bert4 with borrowed schedules: 9.4, 38.7, 168 ms): no padding.
    for size, seconds in ((1, 9.4e-3), (4, 38.7e-3), (16, 168e-3)):
        for _ in range(1 + BucketPlanner.TRUSTED_AFTER):  # the first call is a cold start, not counted
            planner.record(size, seconds)
    assert planner.plan(5) == [1] * 5 and planner.plan(16) == [1] * 16
    # Big buckets far cheaper per row (a small MLP's per-call overhead): pad 2 rows to 4, 13 to 16.
    planner = BucketPlanner(buckets)
    for size, seconds in ((1, 90e-6), (4, 100e-6), (16, 300e-6)):
        for _ in range(1 + BucketPlanner.TRUSTED_AFTER):
            planner.record(size, seconds)
    assert planner.plan(2) == [4] and planner.plan(13) == [16] and planner.plan(17) == [16, 1]


def test_a_bucket_the_plans_left_is_timed_again():
    """A cold first measurement (16 rows: 1.3 ms against 0.5 warm on the MLP) must not keep 16-row
    batches on 4-row calls for good: the last EXPLORE_BURST batches of every EXPLORE_EVERY run
    padded to the next bucket, one after another (a lone call would read that bucket's weights cold
    every time)."""
    planner = BucketPlanner(BatchBuckets.named("batch", (4, 16)))
    for size, seconds in ((4, 180e-6), (16, 1300e-6)):
        for _ in range(1 + BucketPlanner.TRUSTED_AFTER):
            planner.record(size, seconds)
    every, burst = BucketPlanner.EXPLORE_EVERY, BucketPlanner.EXPLORE_BURST
    assert burst > 1
    plans = [planner.plan(16) for _ in range(2 * every)]
    explored = [i for i, plan in enumerate(plans) if plan == [16]]
    assert explored == [*range(every - burst, every), *range(2 * every - burst, 2 * every)]
    assert all(plan == [4, 4, 4, 4] for i, plan in enumerate(plans) if i not in explored)
    for _ in range(BucketPlanner.REPLAN_EVERY):  # the explored calls after the first: 16 rows warm
        planner.record(16, 500e-6)
    assert planner.plan(16) == [16]


def test_the_predictor_plans_from_its_own_timed_calls(bucketed, mlp_dynamic_onnx):
    predictor = tvmopt.load(bucketed.path)
    rng = np.random.default_rng(1)
    for rows in (1, 4, 16) * (1 + BucketPlanner.TRUSTED_AFTER):
        predictor(rng.standard_normal((rows, 64)).astype("float32"))
    costs = predictor.planner.costs()
    assert all(0 < seconds < 1 for seconds in costs.values()), costs  # measured seconds, not the row prior
    for rows in range(1, 34):
        plan = predictor.planner.plan(rows)
        assert sum(plan) >= rows and sum(plan) - plan[-1] < rows, plan  # covers, only the last run padded
        x = rng.standard_normal((rows, 64)).astype("float32")
        np.testing.assert_allclose(predictor(x)[0], ort_run(mlp_dynamic_onnx, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_warm_up_times_every_bucket(bucketed, mlp_dynamic_onnx):
    predictor = tvmopt.load(bucketed.path)
    assert predictor.planner.timed == ()
    assert predictor.warm_up()
    assert predictor.planner.timed == (1, 4, 16)
    x = np.random.default_rng(2).standard_normal((6, 64)).astype("float32")
    np.testing.assert_allclose(predictor(x)[0], ort_run(mlp_dynamic_onnx, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_predict_batch_merges_inputs_on_the_bucket_path(bucketed):
    predictor = tvmopt.load(bucketed.path)
    rng = np.random.default_rng(0)
    items = [rng.standard_normal((n, 64)).astype("float32") for n in (1, 2, 3, 1, 5, 7, 1)]
    merged = predictor.predict_batch(items, progress=False)
    alone = [predictor(x) for x in items]
    assert [m[0].shape for m in merged] == [a[0].shape for a in alone]
    for m, a in zip(merged, alone):
        np.testing.assert_allclose(m[0], a[0], rtol=1e-5, atol=1e-6)
    assert predictor.max_batch_size == 16 and predictor.batch_dim == "batch"
    # One run per group of at most `batch_size` rows: the outputs are still per input.
    assert len(predictor.predict_batch(items, progress=False, batch_size=4)) == len(items)


def test_inputs_that_disagree_on_the_batch_are_refused(tmp_path):
    import models

    module, (ids, mask) = models.token_classifier()
    path = models.export_onnx(module, (ids, mask), tmp_path / "tok.onnx", ["input_ids", "attention_mask"], ["logits"],
                              {"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "logits": {0: "batch"}})
    art = tvmopt.compile(tvmopt.import_model(path), "host", tmp_path / "art", log_root=None, batch_sizes=(1, 2))
    predictor = tvmopt.load(art.path)
    ids3 = np.random.default_rng(0).integers(0, 100, (3, 8))
    mask3 = np.ones((3, 8), "int64")
    expected = ort_run(path, {"input_ids": ids3, "attention_mask": mask3})[0]
    np.testing.assert_allclose(predictor(ids3, mask3)[0], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputSpecError, match=r"inputs disagree on the batch dim 'batch' \(axis 0\): 'input_ids' 3, "
                                             r"'attention_mask' 2"):
        predictor(ids3, mask3[:2])


def test_a_fixed_batch_dim_cannot_be_bucketed(cnn_onnx, tmp_path):
    with pytest.raises(InputSpecError, match=r"input 'input' has a fixed size 1 at axis 0 .*dynamic_axes"):
        tvmopt.compile(tvmopt.import_model(cnn_onnx), "host", tmp_path / "x", log_root=None, batch_sizes=(1, 4))
    proc = run_cli("compile", str(cnn_onnx), "--no-tuning", "--batch-sizes", "1,4", "-o", str(tmp_path / "y"))
    assert proc.returncode == 2 and proc.stderr.startswith("tvmopt: error: ") and "fixed size 1" in proc.stderr
    proc = run_cli("compile", str(cnn_onnx), "--no-tuning", "--batch-sizes", "1,x", "-o", str(tmp_path / "y"))
    assert proc.returncode == 2 and "'x' is not a batch size" in proc.stderr


def test_kernels_the_importer_wrote_with_a_symbolic_batch_are_specialized_per_bucket(tmp_path):
    """A reflect pad comes out of the ONNX importer as call_tir of a PrimFunc with the batch dim
    symbolic; each bucket gets a static copy (FuseTIR failed on the mix, and tuning needs it)."""
    import models

    module, (x,) = models.pad_decoder()
    path = models.export_onnx(module, (x,), tmp_path / "pad_decoder.onnx", ["x"], ["y"],
                              {"x": {0: "batch"}, "y": {0: "batch"}})
    art = tvmopt.compile(tvmopt.import_model(path), "host", tmp_path / "art", log_root=None, batch_sizes=(1, 4))
    predictor = tvmopt.load(art.path)
    for rows in (1, 3, 6):
        x = np.random.default_rng(rows).standard_normal((rows, 3, 16, 16)).astype("float32")
        np.testing.assert_allclose(predictor(x)[0], ort_run(path, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_symbolic_artifacts_work_as_before(mlp_dynamic_onnx, tmp_path):
    art = tvmopt.compile(tvmopt.import_model(mlp_dynamic_onnx), "host", tmp_path / "sym", log_root=None)
    assert art.manifest.batch_buckets is None
    assert "batch_buckets" not in json.loads((art.path / "manifest.json").read_text())
    predictor = tvmopt.load(art.path)
    x = np.random.default_rng(1).standard_normal((7, 64)).astype("float32")
    np.testing.assert_allclose(predictor(x)[0], ort_run(mlp_dynamic_onnx, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert predictor.max_batch_size == 1 and predictor.batch_dim == "batch"


def test_tune_and_compile_cli_with_batch_sizes_share_one_log(mlp_dynamic_onnx, tmp_path):
    """One tuning session covers every bucket's kernels; compile applies them to every bucket. A
    bucket nobody tuned (16) borrows the schedules of the same layers' tuned kernels instead of
    TVM's scalar default (which ran a batch-16 MLP 170 ms against 1 ms), and still matches ORT."""
    logs, out, wider = tmp_path / "logs", tmp_path / "art", tmp_path / "wider"
    proc = run_cli("tune", str(mlp_dynamic_onnx), "--batch-sizes", "1,8", "--budget", "smoke",
                   "--trials-per-task", "2", "--log-dir", str(logs), "--no-progress", "--no-check")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("compile", str(mlp_dynamic_onnx), "--batch-sizes", "1,8", "--log-dir", str(logs), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "batch sizes 1,8" in proc.stdout
    manifest = tvmopt.load(out).artifact.manifest
    tasks = {r.task for r in manifest.tuning.records_applied}
    # The dense kernels of both buckets are distinct workloads, tuned in the one session.
    assert manifest.tuning.tasks_total >= 4 and manifest.tuning.tasks_tuned == manifest.tuning.tasks_total, tasks
    assert not manifest.tuning.schedules_borrowed
    sessions = list((next(logs.iterdir()) / "sessions").glob("*.json"))
    assert len(sessions) == 1
    x = np.random.default_rng(2).standard_normal((5, 64)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(out)(x)[0], ort_run(mlp_dynamic_onnx, {"x": x})[0], rtol=1e-4, atol=1e-4)

    proc = run_cli("compile", str(mlp_dynamic_onnx), "--batch-sizes", "1,8,16", "--log-dir", str(logs),
                   "-o", str(wider))
    assert proc.returncode == 0, proc.stderr
    tuning = tvmopt.load(wider).artifact.manifest.tuning
    borrowed = dict(tuning.schedules_borrowed)
    assert tuning.untuned and len(borrowed) == tuning.untuned, tuning  # the batch-16 copies of the layers
    assert set(borrowed.values()) <= {r.task for r in tuning.records_applied}, tuning
    assert f"{tuning.untuned} kernel function(s) among them run the schedule of a tuned kernel" in proc.stderr
    for rows in (12, 16):
        x = np.random.default_rng(rows).standard_normal((rows, 64)).astype("float32")
        np.testing.assert_allclose(tvmopt.load(wider)(x)[0], ort_run(mlp_dynamic_onnx, {"x": x})[0],
                                   rtol=1e-4, atol=1e-4)


def test_an_untuned_bucket_borrows_the_tuned_buckets_schedules(tmp_path):
    """The zoo MLP's batch-1 kernels have records in the shipped x86 logs, batch-3 kernels none
    (nobody compiles a bucket of 3): every one of them runs the schedule of a tuned kernel (not
    TVM's scalar default), and the outputs still match ORT."""
    from tvmopt.frontends import zoo

    path = zoo.get("mlp").export_onnx(tmp_path / "mlp.onnx", dynamic_batch=True)
    model = tvmopt.import_model(path)
    artifact = tvmopt.compile(model, "host", tmp_path / "art", log_root=tmp_path / "logs", batch_sizes=(1, 3))
    tuning = artifact.manifest.tuning
    tuned = {r.task for r in tuning.records_applied}
    if not tuned:
        pytest.skip("no shipped log applies to this host")
    assert tuning.untuned == len(tuned), tuning  # the batch-3 copies of the batch-1 kernels
    borrowed = dict(tuning.schedules_borrowed)
    # from this build's batch-1 kernels, or a log's nearer-shaped kernel of the same layer (batch 4)
    assert len(borrowed) == tuning.untuned, tuning
    assert all(source in tuned or source.endswith(" log") for source in borrowed.values()), tuning
    predictor = tvmopt.load(artifact.path)
    for rows in (2, 3):
        x = np.random.default_rng(rows).standard_normal((rows, *model.inputs[0].shape[1:])).astype("float32")
        np.testing.assert_allclose(predictor(x)[0], ort_run(path, {model.inputs[0].name: x})[0], rtol=1e-4, atol=1e-4)

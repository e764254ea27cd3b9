"""Never pay twice for a measurement: cross-model reuse, reference logs of compatible targets,
cost-model warm start, and how the scheduler spends trials."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import tvmopt
from conftest import ort_run, run_cli
from tvmopt.errors import TuningError
from tvmopt.frontends.examples import write_small_cnn
from tvmopt.tuning.progress import SessionProgress, choose_task
from tvmopt.logs.sessions import TaskSummary


@pytest.fixture(scope="module")
def avx2_log(cnn_onnx, tmp_path_factory):
    """The bundled CNN tuned (smoke) for the portable x86-avx2 target, which runs on this machine."""
    root = tmp_path_factory.mktemp("reuse")
    log = tvmopt.tune(tvmopt.import_model(cnn_onnx), "x86-avx2", budget="smoke", log_root=root, progress=False)
    assert not log.untuned_tasks
    return log


def test_retrained_model_reuses_the_log_with_zero_trials(avx2_log, tmp_path):
    # Same architecture, other weights (a retrained model): other model hash, same workloads.
    other = write_small_cnn(tmp_path / "retrained.onnx", seed=1)
    proc = run_cli("tune", str(other), "-t", "x86-avx2", "--budget", "smoke", "--log-dir",
                   str(avx2_log.log_dir.parent), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    n = len(avx2_log.tasks)
    assert f"{n}/{n} tasks were already tuned in the log" in proc.stdout
    assert ": 0 new trials" in proc.stdout
    # The session ends by compiling the log and timing the model against its own estimate.
    assert "measured" in proc.stdout and "end to end" in proc.stdout and f"{n}/{n} kernels tuned" in proc.stdout


def test_compile_borrows_records_from_a_compatible_reference_log(avx2_log, cnn_onnx, tmp_path):
    model = tvmopt.import_model(cnn_onnx)
    # This host runs AVX2 code, so the x86-avx2 log serves a host build that has no log of its own.
    artifact = tvmopt.compile(model, "host", tmp_path / "host", log_root=avx2_log.log_dir.parent)
    tuning = artifact.manifest.tuning.to_json()
    assert tuning["tasks_tuned"] == tuning["tasks_total"] == len(avx2_log.tasks)
    assert tuning["reference_logs"] == ["x86-avx2"]
    assert {r["log"] for r in tuning["records_applied"]} == {"x86-avx2"}
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(artifact.path)(x)[0], ort_run(cnn_onnx, {"input": x})[0],
                               atol=1e-4, rtol=1e-4)

    # An AVX-512 log is not a reference for the AVX2 target: its machines may lack AVX-512.
    root = tmp_path / "logs"
    shutil.copytree(avx2_log.log_dir, root / "x86-avx512")
    plain = tvmopt.compile(model, "x86-avx2", tmp_path / "avx2", log_root=root)
    assert plain.manifest.tuning.tasks_tuned == 0 and plain.manifest.tuning.reference_logs == ()


def test_shipped_logs_root_can_be_replaced_or_emptied(avx2_log, cnn_onnx, tmp_path, monkeypatch):
    # TVMOPT_SHIPPED_LOGS replaces the logs tvmopt ships: another root serves as reference...
    model = tvmopt.import_model(cnn_onnx)
    shipped = tmp_path / "shipped"
    shutil.copytree(avx2_log.log_dir, shipped / "x86-avx2")
    monkeypatch.setenv("TVMOPT_SHIPPED_LOGS", str(shipped))
    borrowed = tvmopt.compile(model, "host", tmp_path / "borrowed", log_root=tmp_path / "own")
    assert borrowed.manifest.tuning.tasks_tuned == len(avx2_log.tasks)
    assert borrowed.manifest.tuning.reference_logs == ("x86-avx2",)
    # ...and an empty one builds as a user without them would (benchmarks/zoo.py --from-scratch).
    monkeypatch.setenv("TVMOPT_SHIPPED_LOGS", str(tmp_path / "none"))
    plain = tvmopt.compile(model, "host", tmp_path / "plain", log_root=tmp_path / "own")
    assert plain.manifest.tuning.tasks_tuned == 0 and plain.manifest.tuning.reference_logs == ()


def _scaled_cnn(path, channels=(24, 40), image=28, classes=7):
    """The bundled CNN's ops at other sizes, with one more op fused into the first conv's kernel
    (x0.5 after its ReLU): that kernel has a block the tuned ones lack."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    (c1, c2), half = channels, (image + 1) // 2

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    inits = [weight("w1", c1, 3, 3, 3), weight("b1", c1), weight("w2", c2, c1, 3, 3), weight("b2", c2),
             weight("fc", classes, c2 * half * half), weight("fcb", classes),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]), helper.make_node("Mul", ["r1", "half"], ["s1"]),
             helper.make_node("Conv", ["s1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]), helper.make_node("Flatten", ["r2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "scaled_cnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, image, image])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_new_model_borrows_schedules_from_other_models_in_the_log(avx2_log, tmp_path):
    """A model nobody tuned, whose kernels compute what the log's kernels compute at other sizes
    (other channels, image and classes; one conv with an extra fused op), runs their schedules
    with zero trials instead of TVM's scalar default, and still matches ORT."""
    other = _scaled_cnn(tmp_path / "scaled.onnx")
    out = tmp_path / "art"
    proc = run_cli("compile", str(other), "-t", "x86-avx2", "--log-dir", str(avx2_log.log_dir.parent), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    tuning = tvmopt.load(out).artifact.manifest.tuning
    assert tuning.tasks_tuned == 0 and tuning.untuned == tuning.tasks_total > 0, tuning  # no record fits as is
    borrowed = dict(tuning.schedules_borrowed)
    assert all(donor.endswith("of the x86-avx2 log") for donor in borrowed.values()), borrowed
    # Both convs borrow: the second has the tuned conv's blocks, the first one block more (the x0.5).
    convs = [kernel for kernel in borrowed if "conv2d" in kernel]
    assert len(convs) == 2 and any("multiply" in kernel for kernel in convs), borrowed
    assert any("matmul" in kernel for kernel in borrowed), borrowed
    assert "run the schedule of a tuned kernel" in proc.stderr
    x = np.random.default_rng(3).standard_normal((1, 3, 28, 28)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(out)(x)[0], ort_run(other, {"input": x})[0], atol=1e-4, rtol=1e-4)


def test_tuning_a_new_model_starts_from_the_schedules_in_the_log(avx2_log, tmp_path):
    """Each task of a model nobody tuned that a logged kernel fits measures that kernel's fitted
    schedule as its first trial: a real, logged record of the task that the search goes on from."""
    root = tmp_path / "logs"
    shutil.copytree(avx2_log.log_dir, root / "x86-avx2")
    from tvmopt.logs.store import LogDatabase

    before = len(LogDatabase(root / "x86-avx2", readonly=True))
    other = _scaled_cnn(tmp_path / "scaled.onnx")
    proc = run_cli("tune", str(other), "-t", "x86-avx2", "--budget", "smoke", "--log-dir", str(root),
                   "--no-progress", "--no-check")
    assert proc.returncode == 0, proc.stderr
    session = json.loads(sorted((root / "x86-avx2" / "sessions").glob("*scaled*.json"))[-1].read_text())
    assert re.search(r"\b[1-9]\d*/\d+ tasks started from the schedule of a similar kernel in the x86-avx2 log",
                     proc.stdout), proc.stdout
    assert session["seeded"] and all(d.endswith("of the x86-avx2 log") for d in session["seeded"].values())
    # Seeds are trials like the others: every one measured, logged and counted.
    assert len(LogDatabase(root / "x86-avx2", readonly=True)) == before + session["trials_run"]
    out = tmp_path / "art"
    assert run_cli("compile", str(other), "-t", "x86-avx2", "--log-dir", str(root), "-o", str(out)).returncode == 0
    x = np.random.default_rng(5).standard_normal((1, 3, 28, 28)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(out)(x)[0], ort_run(other, {"input": x})[0], atol=1e-4, rtol=1e-4)


def test_cost_model_warm_start_from_another_models_log(avx2_log, mlp_onnx, tmp_path):
    log = tvmopt.tune(tvmopt.import_model(mlp_onnx), "x86-avx2", budget="smoke", log_root=tmp_path,
                      progress=False, transfer=[avx2_log.log_dir])
    session = json.loads(log.session_path.read_text())
    assert session["transfer"]["logs"] == [str(avx2_log.log_dir)]
    assert session["transfer"]["records"] >= 2 * len(avx2_log.tasks) - 2
    assert log.status == "finished" and not log.untuned_tasks
    assert [row[1] for row in session["history"]] == sorted(row[1] for row in session["history"])
    assert session["history"][-1][1] == log.trials_run

    with pytest.raises(TuningError, match="not a tuning log"):
        tvmopt.tune(tvmopt.import_model(mlp_onnx), "x86-avx2", budget="smoke", log_root=tmp_path,
                    progress=False, transfer=[tmp_path / "nowhere"])


def _progress(best_us: list[float | None], weights: list[int]) -> SessionProgress:
    tasks = [TaskSummary(name=f"t{i}", workload_hash=str(i), weight=w, flops=1.0, trials_before=0, best_us=b)
             for i, (b, w) in enumerate(zip(best_us, weights))]
    return SessionProgress(tasks, quotas=[64] * len(tasks))


def test_scheduler_visits_every_task_then_recordless_then_the_largest_latency_share():
    progress = _progress([None, None, None], [1, 1, 1])
    assert choose_task(progress, [0, 1, 2]) == 0
    progress.batches = [1, 0, 1]
    assert choose_task(progress, [0, 1, 2]) == 1  # every task gets a first batch before any second
    progress.batches = [2, 1, 1]
    progress.tasks[0].best_us, progress.tasks[1].best_us = 10.0, 50.0
    assert choose_task(progress, [0, 1, 2]) == 2  # no valid record yet: before any share

    progress.tasks[2].best_us = 5.0
    progress.tasks[2].weight = 20  # 5 us x 20 calls = the largest share of the model
    assert choose_task(progress, [0, 1, 2]) == 2
    progress.stale = [0, 0, 4]  # four batches without gain: its share counts 1/16
    assert choose_task(progress, [0, 1, 2]) == 1
    assert choose_task(progress, [0, 2]) == 0  # 10 us x 1 > 100 us / 16


def test_a_task_whose_search_finds_nothing_new_is_retired():
    """A template's enumerated space runs out: MetaSchedule then returns batches of 0-2 candidates
    (~10 s each); the task is retired instead of spending its patience on them."""
    progress = _progress([100.0, 100.0], [1, 1])
    progress.record(0, [[90e-6]] * 8, skipped=0)
    progress.record(0, [[95e-6]], skipped=0)  # one new candidate, no gain: nothing left to find
    assert not progress.may_continue(0)
    # a resumed session's search re-proposing schedules earlier sessions logged is not exhaustion
    progress.record(1, [], skipped=8)
    assert progress.may_continue(1)
    progress.record(1, [[50e-6]], skipped=0)  # a small batch that improved: keep going
    assert progress.may_continue(1)


def test_which_tuned_kernels_a_kernel_may_borrow_from():
    """A donor's blocks must all exist in the kernel and include its reduction blocks (the conv, the
    GEMM): an element-wise schedule never takes the place of a conv's or an int8 GEMM's, and a
    kernel without a reduction only takes a schedule of exactly its blocks."""
    from tvmopt.compiler.transfer import TunedKernel, _most_similar_first

    def donor(name, *blocks, shapes=((1, 8, 8, 8),), own=False):
        return TunedKernel(name, None, shapes, ("root", *blocks), own)

    donors = [donor("conv_add", "conv2d_NCHWc", "T_add"), donor("conv_add_relu", "conv2d_NCHWc", "T_add", "compute"),
              donor("conv_add_relu6", "conv2d_NCHWc", "T_add", "T_maximum", "T_minimum"),
              donor("add", "T_add"), donor("matmul_add", "matmul", "T_add"), donor("reshape", "T_reshape")]

    def names(blocks, reductions, shapes=((1, 8, 8, 8),)):
        return [k.name for k in _most_similar_first("k", ("root", *blocks), frozenset(reductions), shapes, donors)]

    assert names(("conv2d_NCHWc", "T_add", "compute"), {"conv2d_NCHWc"}) == ["conv_add_relu", "conv_add"]
    assert names(("tvmopt_int8_gemm", "T_add"), {"tvmopt_int8_gemm"}) == []
    assert names(("T_reshape", "T_multiply"), set()) == []
    assert names(("T_add",), set()) == ["add"]
    # Among donors with the same blocks, the nearest shapes first, this build's own kernel on a tie.
    near, far = donor("near", "T_add", shapes=((1, 8, 8, 16),)), donor("far", "T_add", shapes=((4, 8, 8, 16),))
    own = donor("own", "T_add", shapes=((1, 8, 8, 16),), own=True)
    ranked = _most_similar_first("k", ("root", "T_add"), frozenset(), ((1, 8, 8, 8),), [far, near, own])
    assert [k.name for k in ranked] == ["own", "near", "far"]


def test_attention_scores_borrow_a_batch_matmul_before_a_gemm_with_more_of_their_blocks():
    """A trace splits the reduction block's loops by position: a 3-D GEMM's schedule does not apply
    to a 4-D attention batch-matmul, whatever epilogue blocks they share (BERT-base's Q.K^T + mask
    kept TVM's scalar default, 38 ms of an 87 ms model, before ranks came first)."""
    from tvmopt.compiler.transfer import TunedKernel, _most_similar_first

    gemm_add = TunedKernel("gemm_add", None, ((1, 128, 256), (256, 256), (256,), (1, 128, 256)),
                           ("root", "matmul", "T_add"))
    batch_matmul = TunedKernel("batch_matmul", None, ((1, 4, 128, 128), (1, 4, 128, 64), (1, 4, 128, 64)),
                               ("root", "matmul"))
    scores = ((1, 12, 128, 64), (1, 12, 64, 128), (1, 1, 128, 128), (1,), (1,), (1, 12, 128, 128))
    ranked = _most_similar_first("k", ("root", "matmul", "T_where", "T_add"), frozenset({"matmul"}), scores,
                                 [gemm_add, batch_matmul])
    assert [k.name for k in ranked] == ["batch_matmul", "gemm_add"]


def test_a_layer_norm_borrows_a_schedule_whose_blocks_are_named_after_another_input():
    """TOPI names a layer norm's blocks after its input ("lv24_sum"): the same kernel of another
    model ("lv8_sum") lends its trace once the blocks are renamed, and the result builds and is right."""
    import tvm
    from tvm import te, topi

    from tvmopt.compiler.transfer import TunedKernel, _borrow_one, block_names, buffer_shapes

    def layer_norm(name: str, hidden: int):
        data = te.placeholder((1, 16, hidden), name=name)
        gamma, beta = te.placeholder((hidden,), name="gamma"), te.placeholder((hidden,), name="beta")
        return te.create_prim_func([data, gamma, beta, topi.nn.layer_norm(data, gamma, beta, axis=[-1], epsilon=1e-5)])

    target = tvm.target.Target({"kind": "llvm", "num-cores": 2})
    donor = layer_norm("lv8", 32)
    sch = tvm.s_tir.Schedule(donor)
    for block in ("lv8_sum", "T_layer_norm"):
        sch.parallel(sch.get_loops(sch.get_sblock(block))[1])
    tuned = TunedKernel("layer_norm3", sch.trace, buffer_shapes(donor), block_names(donor)[0], own=False)

    kernel = layer_norm("lv24", 64)
    found = _borrow_one("layer_norm1", kernel, tvm.IRModule({"main": kernel}), [tuned], target, postprocs=[])
    assert found is not None and found[1] == "layer_norm3"
    scheduled = found[0].mod["main"]
    assert "T.parallel" in scheduled.script()
    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target=target)
    rng = np.random.default_rng(0)
    x, g, b = (rng.standard_normal(s).astype("float32") for s in ((1, 16, 64), (64,), (64,)))
    out = tvm.runtime.tensor(np.zeros((1, 16, 64), "float32"))
    lib["main"](*(tvm.runtime.tensor(a) for a in (x, g, b)), out)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), (x - mean) / np.sqrt(var + 1e-5) * g + b, atol=1e-5)


def test_borrowed_tiles_keep_their_inner_factors_and_gemms_prefer_donors_with_rows():
    """A tuned split carried to another extent keeps its register tile and vector width where they
    divide it; an 8-row GEMM borrows from a 16-row one before a GEMV (whose rows were never tiled),
    and never from a kernel 16x smaller in some dim."""
    from tvmopt.compiler.transfer import TunedKernel, _most_similar_first, rescaled_tiles

    assert rescaled_tiles([8, 4, 2, 16], 1024) == [8, 4, 2, 16]  # fits: unchanged
    assert rescaled_tiles([5, 2, 2, 16], 3072) == [48, 2, 2, 16]
    assert rescaled_tiles([2, 5, 8], 100) == [5, 5, 4]
    gemv = TunedKernel("gemv", None, ((1, 768), (768, 3072), (3072,), (1, 3072)), ("root", "matmul", "T_add"))
    rows = TunedKernel("rows", None, ((16, 1024), (1024, 1024), (1024,), (16, 1024)), ("root", "matmul", "T_add"))
    # 10 columns against 3072: a different problem; such a kernel takes a sample of the space instead
    far = TunedKernel("far", None, ((16, 1024), (1024, 10), (10,), (16, 10)), ("root", "matmul", "T_add"))
    gemm = ((8, 768), (768, 3072), (3072,), (8, 3072))
    ranked = _most_similar_first("k", ("root", "matmul", "T_add"), frozenset({"matmul"}), gemm, [far, gemv, rows])
    assert [k.name for k in ranked] == ["rows", "gemv"]


def test_a_gemm_no_tuned_kernel_fits_runs_a_sample_of_the_tuning_space(avx2_log, tmp_path):
    """A bias-less MatMul has fewer blocks than any GEMM of the log (all fused with their bias), so
    no trace fits: it gets a seeded sample of the design space instead of TVM's scalar loop nest,
    and still matches ORT. An untuned build (no log) keeps TVM's default."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 48)).astype("float32"), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "bare_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 48])], [weight])
    path = tmp_path / "bare_matmul.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = tvmopt.import_model(path)
    art = tvmopt.compile(model, "x86-avx2", tmp_path / "art", log_root=avx2_log.log_dir.parent)
    tuning = art.manifest.tuning
    assert tuning.tasks_tuned == 0 and not tuning.schedules_borrowed, tuning
    assert [k for k in tuning.schedules_sampled if "matmul" in k], tuning
    x = np.random.default_rng(1).standard_normal((8, 64)).astype("float32")
    np.testing.assert_allclose(tvmopt.load(art.path)(x)[0], ort_run(path, {"x": x})[0], atol=1e-4, rtol=1e-5)
    untuned = tvmopt.compile(model, "x86-avx2", tmp_path / "untuned", log_root=None)
    assert untuned.manifest.tuning.schedules_sampled == ()

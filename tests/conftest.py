"""Shared fixtures: small real models written once per test session."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py

REPO = Path(__file__).resolve().parent.parent


def _shim_torchvision() -> None:
    """With the `coverage` extra installed, torchvision's CUDA-linked wheel breaks `import
    transformers` beside the CPU torch; benchmarks/coverage.py's shim makes it importable."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_coverage_benchmark", REPO / "benchmarks" / "coverage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # stdlib-only at import time
    module.shim_torchvision()


_shim_torchvision()


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite():
    """Every process a test starts (servers, their forked workers, tuning pools) is gone at the end.

    Processes still alive a few seconds after the last test are killed and reported as an error.
    """
    import psutil

    yield
    me = psutil.Process()
    _, alive = psutil.wait_procs(me.children(recursive=True), timeout=5)
    if alive:
        described = [f"{p.pid} {' '.join(p.cmdline()[:4]) if p.is_running() else '?'}" for p in alive]
        for proc in alive:
            proc.kill()
        pytest.fail(f"{len(alive)} process(es) outlived the test suite: {'; '.join(described)}", pytrace=False)


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory) -> Path:
    """The bundled example CNN (onnx.helper, 1x3x32x32)."""
    from tvmopt.frontends.examples import write_small_cnn

    return write_small_cnn(tmp_path_factory.mktemp("models") / "small_cnn.onnx")


def _export(factory_name: str, file_name: str, tmp_path_factory) -> Path:
    import models

    module, example = getattr(models, factory_name)()
    return models.export_onnx(module, example, tmp_path_factory.mktemp("models") / file_name, ["x"], ["y"])


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory) -> Path:
    return _export("mlp", "mlp.onnx", tmp_path_factory)


@pytest.fixture(scope="session")
def mlp_dynamic_onnx(tmp_path_factory) -> Path:
    """tests/models.py's MLP (x [batch, 64] -> y [batch, 10]) exported with a dynamic batch axis."""
    import models

    module, example = models.mlp()
    return models.export_onnx(module, example, tmp_path_factory.mktemp("models") / "mlp_dynamic.onnx", ["x"], ["y"],
                              {"x": {0: "batch"}, "y": {0: "batch"}})


@pytest.fixture(scope="session")
def transformer_onnx(tmp_path_factory) -> Path:
    return _export("tiny_transformer", "transformer.onnx", tmp_path_factory)


def ort_run(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


# Verbs (and flags) that start workers, servers, emulators or remote sessions, or whose test is
# about the process itself (a traceback with -v): these always run as `python -m tvmopt`.
_OWN_PROCESS = {"tune", "serve", "predict", "bench", "demo", "-v", "--verbose", "--emulate", "--rpc-tracker"}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, subprocess: bool = False):
    """Run the CLI with ARGS; returns a CompletedProcess (text: returncode, stdout, stderr).

    Quick verbs (inspect, compile, run, logs, targets, quantize) run in this process through
    `tvmopt.cli.main`, the function `python -m tvmopt` calls: a fresh interpreter would spend 7-8 s
    importing TVM for each of the suite's ~60 such calls. The rest, or `subprocess=True`, run as a
    real `python -m tvmopt` process.
    """
    if subprocess or _OWN_PROCESS.intersection(args):
        import subprocess as sp

        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return sp.run([sys.executable, "-m", "tvmopt", *args], cwd=cwd or REPO, capture_output=True, text=True,
                      timeout=timeout, env=env)
    return _run_cli_here(args, cwd or REPO)


def _run_cli_here(args: tuple[str, ...], cwd: Path):
    """`tvmopt ARGS` through tvmopt.cli.main in this process, its process-wide changes undone."""
    import contextlib
    import io
    import signal
    import subprocess as sp
    import traceback
    import warnings

    from tvmopt import native_output
    from tvmopt.cli import main

    out, err = io.StringIO(), io.StringIO()
    sigint, shown, before = signal.getsignal(signal.SIGINT), native_output.shown(), os.getcwd()
    # The CLI's logging.basicConfig binds its handler to the stderr of the first call in a process;
    # without handlers it binds a fresh one to this call's, so each call's warnings land in its stderr.
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    root_logger.handlers = []
    try:
        os.chdir(cwd)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as stop:  # argparse: usage errors exit 2, --help exits 0
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # noqa: BLE001 - what the interpreter would print and exit 1 with
                traceback.print_exc(file=err)
                code = 1
    finally:
        root_logger.handlers, root_logger.level = handlers, level
        os.chdir(before)
        signal.signal(signal.SIGINT, sigint)
        native_output.show(shown)
    return sp.CompletedProcess(["tvmopt", *args], code, out.getvalue(), err.getvalue())


# Slow variants of what a faster test in the default run already covers: `make test` stays near
# 15 minutes on 2 cores; `make test-slow` (pytest -m slow) and the benchmarks run these.
SLOW = {
    "test_tuning.py::test_sigkill_loses_no_measurement_and_rerun_resumes": "interrupts: test_ctrl_c_stops_tune",
    "test_tuning.py::test_two_concurrent_sessions_share_one_log_without_corruption": "log locking: test_logs",
    "test_tuning.py::test_tuned_transformer_matches_onnxruntime": "tuned MLP/CNN in the default run",
    "test_tuning.py::test_embedding_lookup_kernels_get_valid_records": "a 35 s tuning run",
    "test_bench.py::test_bench_onnx_file_uses_the_log": "bench: test_bench_zoo_model_json_report",
    "test_compare.py::": "two tuning runs in its fixture",
    "test_cross.py::test_tune_and_run_through_rpc_tracker": "RPC: test_bad_rpc_arguments_fail_in_one_line",
    "test_cross.py::test_tune_arm_through_emulated_rpc_server": "ARM: the emulated artifact tests",
    "test_zoo.py::test_tvm_from_torch_module_matches_torch[mobilenetv2]": "the torch path: bert4",
    "test_zoo.py::test_tvm_from_torch_module_matches_torch[resnet18]": "the torch path: bert4",
    "test_zoo.py::test_tvm_from_onnx_matches_ort[mobilenetv2]": "blocked layouts: test_layout",
    "test_layout.py::test_a_log_tuned_with_another_block_is_used_when_it_covers_more": "a second tuned build",
    "test_buckets.py::test_tune_and_compile_cli_with_batch_sizes_share_one_log": "buckets: the Python API tests",
    "test_interrupts.py::test_second_ctrl_c_exits_at_once_without_a_crash": "the first Ctrl-C test",
    "test_log_integrity.py::test_replaced_workload_file_is_reported_and_never_applied": "the lost-workload test",
    "test_reuse.py::test_retrained_model_reuses_the_log_with_zero_trials": "reuse: the reference-log test",
    "test_reuse.py::test_cost_model_warm_start_from_another_models_log": "a tuning run per side",
    "test_artifact_writes.py::test_killed_compile_leaves_nothing_the_next_one_keeps": "the concurrent-writes test",
    "test_tutorials.py::test_tutorial_runs[02_pytorch.py]": "the torch path: test_frontends",
    "test_tutorials.py::test_tutorial_runs[01_quickstart.py]": "test_cli's tune -> compile -> run",
    "test_tutorials.py::test_tutorial_runs[03_serving.py]": "test_serving, test_buckets, test_predict",
    "test_tuning.py::test_tuned_mlp_matches_onnxruntime": "test_tuned_cnn; the MLP in test_bench",
    "test_cross.py::test_arm_artifact_is_aarch64_neon_and_matches_x86_under_emulation[arm-cortex-a72]":
        "the neoverse-n1 variant",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        nodeid = item.nodeid.split("tests/", 1)[-1]
        if any(nodeid == key or (key.endswith("::") and nodeid.startswith(key)) for key in SLOW):
            item.add_marker(pytest.mark.slow)


def _untuned_artifact(onnx_path: Path, tmp_path_factory, name: str) -> Path:
    out = tmp_path_factory.mktemp("art") / name
    proc = run_cli("compile", str(onnx_path), "--no-tuning", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def cnn_artifact(cnn_onnx, tmp_path_factory) -> Path:
    """The bundled CNN compiled without tuning through the CLI, shared read-only by the tests."""
    return _untuned_artifact(cnn_onnx, tmp_path_factory, "cnn")


@pytest.fixture(scope="session")
def mlp_artifact(mlp_onnx, tmp_path_factory) -> Path:
    """The zoo MLP compiled without tuning through the CLI, shared read-only by the tests."""
    return _untuned_artifact(mlp_onnx, tmp_path_factory, "mlp")



# A suite started as a background job (`make test &`, nohup, some CI runners) inherits SIGINT
# ignored, and so would every `tvmopt` process the tests start: the Ctrl-C tests would then time
# out. Python's own handler here makes the children start with the default disposition again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

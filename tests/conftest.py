"""Shared fixtures: small real models written once per test session."""

from __future__ import annotations

import os
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


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600):
    """Run `python -m tvmopt ARGS` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "tvmopt", *args], cwd=cwd or REPO, capture_output=True, text=True,
        timeout=timeout, env=env,
    )

"""The package as users get it: a runtime that stands alone, a cheap `import tvmopt`, and a
wheel that carries its data and works from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

HEAVY = ("torch", "onnx", "onnxscript", "tvm.relax", "tvm.s_tir.meta_schedule", "tvm.relax.frontend")


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_import_tvmopt_is_cheap():
    assert _heavy(_modules_after("import tvmopt")) == []
    assert "tvm" not in _modules_after("import tvmopt")


def test_runtime_loads_and_runs_without_compiler_torch_or_onnx(cnn_onnx, tmp_path):
    import tvmopt

    artifact = tvmopt.compile(tvmopt.import_model(cnn_onnx), "host", tmp_path / "art", log_root=None)
    code = (f"import numpy as np, tvmopt\n"
            f"p = tvmopt.load({str(artifact.path)!r})\n"
            f"out = p(np.zeros((1, 3, 32, 32), 'float32'))\n"
            f"assert out[0].shape == (1, 10)\n"
            f"import tvmopt.runtime")
    loaded = _modules_after(code)
    assert _heavy(loaded) == [], "the runtime imported the compiler stack"
    assert "tvm" not in loaded  # only tvm_ffi and libtvm_runtime.so


def test_serving_and_batch_prediction_load_only_the_runtime(mlp_onnx, tmp_path):
    """What `tvmopt serve` and `tvmopt predict` import: the runtime, the HTTP stack, numpy; no compiler."""
    import numpy as np
    import tvmopt

    artifact = tvmopt.compile(tvmopt.import_model(mlp_onnx), "host", tmp_path / "art", log_root=None)
    np.save(tmp_path / "x.npy", np.zeros((3, 64), "float32"))
    code = (f"from tvmopt.cli import main\n"
            f"from tvmopt.serving.models import load_models\n"
            f"from tvmopt.serving.app import create_app\n"
            f"import tvmopt.serving.server, tvmopt.serving.launch\n"
            f"app = create_app(load_models([{str(artifact.path)!r}]))\n"
            f"assert main(['predict', {str(artifact.path)!r}, '--input', {str(tmp_path / 'x.npy')!r}, '--output', "
            f"{str(tmp_path / 'out')!r}, '--no-progress']) == 0")
    loaded = _modules_after(code)
    assert _heavy(loaded) == [], "serving imported the compiler stack"
    assert "tvm" not in loaded and "onnxruntime" not in loaded and "ray" not in loaded


def test_cli_help_names_every_verb():
    proc = subprocess.run([sys.executable, "-m", "tvmopt", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for verb in ("targets", "inspect", "quantize", "tune", "compile", "run", "serve", "predict", "bench", "demo",
                 "logs"):
        assert verb in proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("tvmopt-*.whl")
    return path


def test_wheel_carries_targets_and_reference_logs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    targets = {p.name for p in (REPO / "targets").glob("*.json")}
    assert {f"tvmopt/_data/targets/{n}" for n in targets} <= names
    for log in ("x86-avx2", "x86-avx512", "x86-avx512-spr"):
        assert f"tvmopt/_data/tuning_logs/{log}/database_workload.json" in names
        assert f"tvmopt/_data/tuning_logs/{log}/database_tuning_record.json" in names
    assert "tvmopt/runtime/aarch64_env.sh" in names
    assert not any("/host-" in n or n.endswith(".lock") for n in names)  # no machine-specific logs


def test_installed_wheel_works_from_another_directory(wheel, tmp_path):
    """A fresh venv with the wheel (dependencies from this environment), run outside the repo."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # The test's own environment provides the dependencies (TVM, onnx, ...), listed after site-packages.
    deps = sysconfig.get_paths()["purelib"]
    (site / "deps.pth").write_text(deps + "\n")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    python = str(venv / "bin" / "python")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TVMOPT_TARGETS_PATH")}

    def run(*code: str) -> str:
        proc = subprocess.run([python, "-c", "\n".join(code)], capture_output=True, text=True, cwd=work, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    where = run("import tvmopt; print(tvmopt.__file__)")
    assert where.startswith(str(site)), f"imported {where.strip()}, not the installed wheel"
    listed = run("from tvmopt.cli import main; main(['targets'])")
    assert "x86-avx512" in listed and "host" in listed
    run(
        "import numpy as np, tvmopt",
        "from tvmopt.frontends.examples import write_small_cnn",
        "from tvmopt.compiler.records import reference_logs",
        "from tvmopt.targets import get_target",
        "from pathlib import Path",
        "model = tvmopt.import_model(write_small_cnn('cnn.onnx'))",
        "art = tvmopt.compile(model, 'host', 'out')",
        "assert tvmopt.load(art.path)(np.zeros((1, 3, 32, 32), 'float32'))[0].shape == (1, 10)",
        "refs = reference_logs(get_target('x86-avx2'), Path('tuning_logs'))",
        "assert [p.name for p in refs] == ['x86-avx2'] and 'site-packages' in str(refs[0]), refs",
    )

"""Bad environments and arguments as a user meets them on the command line: one line, exit 2 (issue 11)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli

ROOT = os.geteuid() == 0


def one_line_error(proc) -> str:
    """Exit 2 and one error line (`tune` announces itself on the line before)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if lines and lines[0].startswith("tuning "):
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("tvmopt: error: "), proc.stderr
    return lines[0]


def run_as_other_user(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m tvmopt ARGS` as user nobody when the tests run as root (else as this user)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", HOME=tempfile.gettempdir(), PYTHONPATH=str(REPO))
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if ROOT else []
    if ROOT and not shutil.which("setpriv"):
        pytest.skip("running a command as another user needs setpriv (util-linux)")
    proc = subprocess.run([*prefix, sys.executable, "-m", "tvmopt", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)
    # User nobody may not reach this Python or checkout at all (e.g. a clone under a 0700 temp
    # dir): then no tvmopt code ran, so there is no "tvmopt: error" line to check.
    unreachable = "No module named tvmopt" in proc.stderr or (
        "Permission denied" in proc.stderr and "tvmopt: error" not in proc.stderr)
    if ROOT and unreachable:
        pytest.skip(f"user nobody cannot start this Python: {proc.stderr.strip()[-200:]}")
    return proc


@pytest.fixture()
def shared_dir():
    """A directory every user can enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="tvmopt-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def external_data_model(tmp_path_factory) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype("float32"), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [weight])
    path = tmp_path_factory.mktemp("ext") / "ext.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="ext.weights",
              size_threshold=0)
    return path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["tune", "{cnn}", "--input-shape", "input:0x3x32x32"], "dim 0 is 0; sizes must be positive"),
        (["inspect", "{cnn}", "--input-shape", "input:"], "no dims after ':'"),
        (["inspect", "{cnn}", "--input-shape", "input:1x3x32xfoo"], "gives 'foo', which is not a number"),
        (["inspect", "{cnn}", "--input-shape", "input:1x3x32x32", "--input-shape", "input:1x3x32x32"],
         "names input 'input' twice"),
        (["inspect", "{cnn}", "--input-shape", "input:1,3,batchxseq"], "write names apart with commas"),
        (["tune", "{cnn}", "--timeout", "0"], "--timeout must be a positive number of minutes, got 0"),
        (["tune", "{cnn}", "--timeout", "-1"], "--timeout must be a positive number of minutes, got -1 "),
        (["run", "{art}", "--repeat", "0"], "--repeat must be at least 1, got 0"),
        (["compile", "{cnn}", "-o", "{file}/out"], "is a file, not a directory"),
        (["tune", "{cnn}", "--log-dir", "{file}", "--budget", "smoke"], "is a file, not a directory"),
    ],
)
def test_bad_arguments_and_paths_are_one_line(args, expected, cnn_onnx, tmp_path, cnn_artifact):
    (tmp_path / "file").write_text("a file, not a directory\n")
    args = [a.format(cnn=cnn_onnx, file=tmp_path / "file", art=cnn_artifact) for a in args]
    assert expected in one_line_error(run_cli(*args))


def test_symbolic_dim_names_with_x_parse(cnn_onnx, tmp_path):
    """A dim name containing 'x' is one dim (issue 12): no misleading rank error."""
    import torch
    from models import export_onnx, mlp

    module, _ = mlp()
    path = export_onnx(module, (torch.randn(2, 64),), tmp_path / "dyn.onnx", ["x"], ["y"],
                       dynamic_axes={"x": {0: "maxb"}})
    for shape in ("x:maxbx64", "x:maxb,64", "x:maxb x 64"):
        proc = run_cli("inspect", str(path), "--input-shape", shape, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["inputs"][0]["shape"] == ["maxb", 64]
    help_text = " ".join(run_cli("inspect", "--help").stdout.split())
    assert "input_ids:1,128" in help_text and "separated by ','" in help_text




def test_missing_external_data_names_the_file(external_data_model):
    data = external_data_model.parent / "ext.weights"
    proc = run_cli("inspect", str(external_data_model), "--json")
    assert proc.returncode == 0, proc.stderr  # with its data beside it, the model imports
    data.rename(data.with_suffix(".moved"))
    try:
        message = one_line_error(run_cli("inspect", str(external_data_model)))
        assert "tensor 'w'" in message and "'ext.weights'" in message and "missing" in message
    finally:
        data.with_suffix(".moved").rename(data)


def test_huge_garbage_file_is_refused_before_it_is_read(tmp_path):
    """A 3 GB file of zeros is refused from its first bytes, without reading it into memory."""
    path = tmp_path / "zeros.onnx"
    with open(path, "wb") as stream:
        stream.truncate(3 << 30)  # sparse: no disk used
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    message = one_line_error(run_cli("inspect", str(path)))
    assert "zeros.onnx: not a readable ONNX model (byte 0" in message
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert max(peak_kb, before) < 1.5 * (1 << 20), f"peak RSS {peak_kb} KB: the file was read"


def test_unknown_mcpu_in_a_target_file_is_refused(tmp_path):
    data = json.loads((REPO / "targets" / "x86-avx2.json").read_text())
    data["name"], data["target"]["mcpu"] = "mine", "haswel"
    (tmp_path / "mine.json").write_text(json.dumps(data))
    message = one_line_error(run_cli("targets", "show", str(tmp_path / "mine.json")))
    assert "mcpu 'haswel' is not a CPU LLVM knows" in message and "did you mean haswell" in message


def test_closed_stdout_pipe_exits_quietly(tmp_path):
    """`tvmopt logs show LOG | head`: the reader went away; no traceback."""
    log = tmp_path / "log"
    log.mkdir()
    (log / "database_workload.json").write_text("")
    for args in (["targets"], ["logs", "show", str(log)]):
        read, write = os.pipe()
        os.close(read)  # like `head` that has exited
        proc = subprocess.run([sys.executable, "-m", "tvmopt", *args], cwd=REPO, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
        os.close(write)
        assert proc.returncode == 141 and proc.stderr == "", (args, proc.returncode, proc.stderr)


def test_unwritable_output_and_log_dir(cnn_onnx, shared_dir):
    """As another user (root here runs the command as nobody): a read-only -o parent and --log-dir."""
    model = shared_dir / "cnn.onnx"
    model.write_bytes(cnn_onnx.read_bytes())
    model.chmod(0o644)
    locked = shared_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    message = one_line_error(run_as_other_user("compile", str(model), "--no-tuning", "-o", str(locked / "art"),
                                               cwd=shared_dir))
    assert str(locked) in message and "permission denied" in message
    message = one_line_error(run_as_other_user("tune", str(model), "--budget", "smoke", "--log-dir", str(locked),
                                               cwd=shared_dir))
    assert str(locked) in message and "permission denied" in message


def test_artifact_is_readable_by_another_user(cnn_onnx, shared_dir):
    """Artifact directories get the modes `cp -r` would give, not mkdtemp's 0700 (a service user)."""
    out = shared_dir / "art"
    env_umask = os.umask(0o022)
    try:
        proc = run_cli("compile", str(cnn_onnx), "--no-tuning", "-o", str(out))
    finally:
        os.umask(env_umask)
    assert proc.returncode == 0, proc.stderr
    assert (out.stat().st_mode & 0o777) == 0o755
    assert all(p.stat().st_mode & 0o004 for p in out.iterdir())
    if ROOT:
        ran = run_as_other_user("run", str(out), "--repeat", "2", "--json", cwd=shared_dir)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["outputs"][0]["shape"] == [1, 10]


def test_full_disk_during_tune_is_one_line_and_keeps_the_log_readable(cnn_onnx, tmp_path):
    """The log's file system fills up (here: a file-size limit, EFBIG) when the first batch is logged.

    Only the tvmopt process gets the limit; its builder and runner workers (whose temp files sit on
    another file system in this story) get it lifted again, so that LLVM can still write kernels of
    any size on any host CPU. A sitecustomize does both, since the workers are fresh interpreters.
    """
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, resource, signal\n"
        "limit = os.environ.pop('TVMOPT_TEST_LOG_FSIZE', None)\n"
        "if limit is not None:  # the tvmopt process: a write past the limit fails instead of killing\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), resource.RLIM_INFINITY))\n"
        "    os.environ['TVMOPT_TEST_WORKER_UNLIMITED'] = '1'\n"
        "elif os.environ.get('TVMOPT_TEST_WORKER_UNLIMITED'):\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n")
    pythonpath = os.pathsep.join(p for p in (str(site), str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=pythonpath, TVMOPT_TEST_LOG_FSIZE=str(16 << 10))
    log_root = tmp_path / "logs"
    proc = subprocess.run([sys.executable, "-m", "tvmopt", "tune", str(cnn_onnx), "--budget", "smoke",
                           "--log-dir", str(log_root), "--no-progress"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)
    message = one_line_error(proc)
    assert "cannot append to the tuning log" in message and "tuning stopped" in message
    (log_dir,) = [p for p in log_root.iterdir() if p.is_dir()]
    sessions = [json.loads(p.read_text()) for p in (log_dir / "sessions").glob("*.json")]
    assert [s["status"] for s in sessions] == ["failed"]
    validated = run_cli("logs", "validate", str(log_dir), "--json")
    assert validated.returncode == 0, validated.stdout  # no torn line left behind
    from tvmopt._compat import ms

    ms.database.JSONDatabase(work_dir=str(log_dir))  # stock TVM still reads it

"""`tvmopt predict`: npz / npy / directory / Parquet in, chunk files out, resume after kill -9,
bad records reported by number, and the same job on a local Ray instance."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tvmopt
from conftest import REPO, run_cli
from tvmopt.errors import DataError
from tvmopt.serving.batch_predict import predict, read_outputs


@pytest.fixture(scope="module")
def artifacts(mlp_dynamic_onnx, cnn_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    mlp = tvmopt.compile(tvmopt.import_model(mlp_dynamic_onnx), "host", root / "mlp", log_root=None,
                         batch_sizes=(1, 4, 16))
    cnn = tvmopt.compile(tvmopt.import_model(cnn_onnx), "host", root / "cnn", log_root=None)
    return mlp.path, cnn.path


def records(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 64)).astype("float32")


def test_npz_in_chunks_matches_the_predictor(artifacts, tmp_path):
    mlp, _ = artifacts
    x = records(103)
    np.savez(tmp_path / "in.npz", x=x)
    result = predict(mlp, tmp_path / "in.npz", tmp_path / "out", chunk_size=25, batch_size=7, progress=False)
    assert (result.records, result.ok, result.chunks, result.errors) == (103, 103, 5, [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job.json"] + [f"part-{i:06d}.npz"
                                                                                   for i in range(5)]
    outputs, index = read_outputs(tmp_path / "out")
    np.testing.assert_array_equal(index, np.arange(103))
    np.testing.assert_allclose(outputs["y"], tvmopt.load(mlp)(x)[0], rtol=1e-5, atol=1e-6)


def test_directory_of_npy_and_npz_and_a_static_model(artifacts, tmp_path):
    mlp, cnn = artifacts
    data = tmp_path / "data"
    data.mkdir()
    x = records(30, seed=1)
    np.save(data / "a.npy", x[:10])
    np.savez(data / "b.npz", x=x[10:30])
    (data / "notes.txt").write_text("ignored")
    result = predict(mlp, data, tmp_path / "out", chunk_size=16, progress=False)
    assert result.ok == 30
    np.testing.assert_allclose(read_outputs(tmp_path / "out")[0]["y"], tvmopt.load(mlp)(x)[0], rtol=1e-5, atol=1e-6)
    # A model with a fixed batch of 1: records are its inputs without that dim, run one by one.
    images = np.random.default_rng(2).standard_normal((5, 3, 32, 32)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    assert predict(cnn, tmp_path / "images.npy", tmp_path / "cnn_out", progress=False).ok == 5
    predictor = tvmopt.load(cnn)
    expected = np.concatenate([predictor(images[i:i + 1])[0] for i in range(5)])
    np.testing.assert_array_equal(read_outputs(tmp_path / "cnn_out")[0]["logits"], expected)


def test_parquet_with_bad_records_skips_and_reports_them(artifacts, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    mlp, _ = artifacts
    x = records(20, seed=3)
    cells = [row.tolist() for row in x]
    cells[3] = cells[3][:10]
    cells[7] = None
    cells[12] = cells[12] + [0.0]
    pq.write_table(pa.table({"x": cells, "extra": list(range(20))}), tmp_path / "in.parquet", row_group_size=6)
    result = predict(mlp, tmp_path / "in.parquet", tmp_path / "out", chunk_size=8, on_error="skip", progress=False)
    assert [e.index for e in result.errors] == [3, 7, 12]
    assert result.errors[0].message == "in.parquet row 3: input 'x': record shape 10, expected 64"
    assert "row 7: input 'x': null value" in result.errors[1].message
    assert "row 12: input 'x': record shape 65, expected 64" in result.errors[2].message
    outputs, index = read_outputs(tmp_path / "out")
    good = [i for i in range(20) if i not in (3, 7, 12)]
    np.testing.assert_array_equal(index, good)
    np.testing.assert_allclose(outputs["y"], tvmopt.load(mlp)(x[good])[0], rtol=1e-5, atol=1e-6)
    # --on-error fail (the default) stops at the first bad record and names it; exit code 2
    proc = run_cli("predict", str(mlp), "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o2"),
                   "--chunk-size", "8", "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("tvmopt: error: record 3: in.parquet row 3: input 'x': record shape 10")


def test_bad_inputs_are_one_line_errors(artifacts, tmp_path):
    mlp, _ = artifacts
    np.savez(tmp_path / "wrong.npz", image=records(3))
    with pytest.raises(DataError, match=r"wrong.npz: no array for input\(s\) x \(arrays: image\)"):
        predict(mlp, tmp_path / "wrong.npz", tmp_path / "o1", progress=False)
    np.save(tmp_path / "narrow.npy", records(4)[:, :32])
    with pytest.raises(DataError, match=r"record 0: narrow.npy row 0: input 'x': record shape 32, expected 64"):
        predict(mlp, tmp_path / "narrow.npy", tmp_path / "o2", progress=False)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk.npz: not a readable .npz file"):
        predict(mlp, tmp_path / "junk.npz", tmp_path / "o3", progress=False)
    np.save(tmp_path / "in.npy", records(4))
    predict(mlp, tmp_path / "in.npy", tmp_path / "o4", progress=False)
    np.save(tmp_path / "other.npy", records(5))
    with pytest.raises(DataError, match=r"o4: holds the outputs of another job \(the input files changed\)"):
        predict(mlp, tmp_path / "other.npy", tmp_path / "o4", progress=False)
    assert predict(mlp, tmp_path / "other.npy", tmp_path / "o4", progress=False, overwrite=True).ok == 5


def test_a_killed_job_resumes_and_skips_finished_chunks(artifacts, tmp_path):
    mlp, _ = artifacts
    x = records(6000, seed=4)
    np.savez(tmp_path / "in.npz", x=x)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tvmopt", "predict", str(mlp), "--input", str(tmp_path / "in.npz"),
               "--output", str(out), "--chunk-size", "200", "--batch-size", "1", "--no-progress"]
    job = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("part-000002.npz")) and job.poll() is None:
            time.sleep(0.01)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        job.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.npz")}
    assert 3 <= len(done) < 30, f"{len(done)} chunks finished before the kill"
    proc = run_cli(*command[3:])
    assert proc.returncode == 0, proc.stderr
    assert f"{len(done)} chunk(s) were already done" in proc.stdout and "6000/6000 records" in proc.stdout
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in done.items())  # not recomputed
    outputs, index = read_outputs(out)
    np.testing.assert_array_equal(index, np.arange(6000))
    np.testing.assert_allclose(outputs["y"], tvmopt.load(mlp)(x)[0], rtol=1e-5, atol=1e-6)
    assert not list(out.glob(".part-*"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_same_job_on_a_local_ray_instance(artifacts, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # Ray on the loopback only (it otherwise binds and dials this machine's network address).
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on the loopback
    monkeypatch.setenv("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "2")  # nothing to drain at the end
    mlp, _ = artifacts
    x = records(90, seed=5)
    np.savez(tmp_path / "in.npz", x=x)
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    ray_tmp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats",
                             "--object-store-memory", str(100 * 2**20), "--temp-dir", ray_tmp],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = []
        for line in head.stdout:  # `ray start` says when the head is up
            said.append(line)
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start --head did not start: " + "".join(said)[-3000:])
        proc = run_cli("predict", str(mlp), "--input", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out"),
                       "--chunk-size", "20", "--ray", f"127.0.0.1:{port}", "--ray-actors", "2", "--no-progress",
                       timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"on Ray (127.0.0.1:{port})" in proc.stdout and "90/90 records" in proc.stdout
        outputs, index = read_outputs(tmp_path / "out")
        np.testing.assert_array_equal(index, np.arange(90))
        np.testing.assert_allclose(outputs["y"], tvmopt.load(mlp)(x)[0], rtol=1e-5, atol=1e-6)
    finally:
        ray_processes = [head.pid] + [p.pid for p in psutil.Process(head.pid).children(recursive=True)]
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            pass
        for pid in ray_processes:  # and whatever Ray left behind, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait()
    _, alive = psutil.wait_procs([p for p in map(_process, ray_processes) if p], timeout=30)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not alive, [p.cmdline()[:3] for p in alive]


def _process(pid: int):
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None

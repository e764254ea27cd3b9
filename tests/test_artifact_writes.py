"""Artifact directories under concurrent and killed `compile -o DIR` (issue 11 items 5 and 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from conftest import REPO, ort_run, run_cli


def compile_cmd(model, out) -> list[str]:
    return [sys.executable, "-m", "tvmopt", "compile", str(model), "--no-tuning", "-o", str(out)]


def test_concurrent_compiles_to_one_path_last_writer_wins(cnn_onnx, tmp_path):
    out = tmp_path / "art"
    assert run_cli("compile", str(cnn_onnx), "--no-tuning", "-o", str(out)).returncode == 0
    missing, stop = [], threading.Event()

    def watch():  # the artifact must be whole at every moment of the overwrites
        while not stop.is_set():
            if not (out / "manifest.json").is_file() or not (out / "model.so").is_file():
                missing.append(time.monotonic())
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(2):
            procs = [subprocess.Popen(compile_cmd(cnn_onnx, out), cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(3)]
            for proc in procs:
                _, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
    finally:
        stop.set()
        watcher.join()
    assert not missing, f"{out} was missing or half there {len(missing)} time(s)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no staging or replaced copies left
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    np.savez(tmp_path / "in.npz", input=x)
    ran = run_cli("run", str(out), "--inputs", str(tmp_path / "in.npz"), "--save-outputs", str(tmp_path / "o.npz"),
                  "--repeat", "1")
    assert ran.returncode == 0, ran.stderr
    with np.load(tmp_path / "o.npz") as saved:
        np.testing.assert_allclose(saved["logits"], ort_run(cnn_onnx, {"input": x})[0], atol=1e-4, rtol=1e-4)


def test_killed_compile_leaves_nothing_the_next_one_keeps(cnn_onnx, tmp_path):
    out = tmp_path / "art"
    proc = subprocess.Popen(compile_cmd(cnn_onnx, out), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".art.tmp-") for p in tmp_path.iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "compile finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert any(name.startswith(".art.tmp-") for name in left) and "art" not in left
    assert run_cli("compile", str(cnn_onnx), "--no-tuning", "-o", str(out)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # the killed run's staging dir was swept

"""Ctrl-C on real `tvmopt` subprocesses (default SIGINT disposition): prompt stops, exit 130, no crash (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, run_cli
from tvmopt.logs.store import RECORD_FILE


# Starts tvmopt as a shell in a terminal would: SIGINT at its default and not blocked (a child
# inherits both from the test process).
_AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                       "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.executable, [sys.executable, '-m', 'tvmopt', *sys.argv[1:]])")
# The same with SIGINT blocked in the main thread. Twice in fresh-clone runs a tune process
# started as from a terminal still held the Ctrl-C pending and tuned to the end (exit 0 after 52
# and 66 s), the symptom of a blocked SIGINT, and libtvm_compiler calls pthread_sigmask; a tuning
# session now takes SIGINT on a thread of its own, which these tests check in the harder case.
_WITH_SIGINT_BLOCKED = _AS_FROM_A_TERMINAL.replace("SIG_UNBLOCK", "SIG_BLOCK")


def start(*args: str, cwd: Path = REPO, sigint_blocked: bool = False) -> subprocess.Popen:
    """`python -m tvmopt ARGS` in its own process group (a terminal's Ctrl-C reaches the whole group)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    wrapper = _WITH_SIGINT_BLOCKED if sigint_blocked else _AS_FROM_A_TERMINAL
    return subprocess.Popen([sys.executable, "-c", wrapper, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_records(proc: subprocess.Popen, log_dir: Path, count: int, timeout: float = 300) -> None:
    records = log_dir / RECORD_FILE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and len(records.read_text().splitlines()) >= count:
            return
        time.sleep(0.1)
    finish(proc, 1)
    pytest.fail(f"the session ended or stalled before it measured {count} candidates")


def sessions(log_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((log_dir / "sessions").glob("*.json"))]


def assert_log_sound(log_dir: Path) -> int:
    from tvmopt._compat import ms

    proc = run_cli("logs", "validate", str(log_dir), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return len(ms.database.JSONDatabase(work_dir=str(log_dir)).get_all_tuning_records())


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


def _tune(cnn_onnx: Path, log_root: Path) -> subprocess.Popen:
    # quick: batches of 8 with 3 timed repeats each, so a Ctrl-C lands inside a batch
    return start("tune", str(cnn_onnx), "--budget", "quick", "--log-dir", str(log_root), "--no-progress",
                 sigint_blocked=True)


def test_ctrl_c_stops_tune_at_a_safe_point(cnn_onnx, tmp_path):
    import tvmopt

    log_dir = tmp_path / tvmopt.get_target("host").log_name
    proc = _tune(cnn_onnx, tmp_path)
    wait_for_records(proc, log_dir, 3)
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)  # only the tune process, as `kill -INT` would
    _, err = finish(proc)
    stopped_s = time.monotonic() - sent
    print(f"first Ctrl-C: exit after {stopped_s:.2f} s")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "RuntimeError" not in err
    assert "stopping at the next safe point" in err and "interrupted: " in err and "trials kept in" in err
    assert stopped_s < 10, f"took {stopped_s:.1f} s to stop"  # ~2 s on an idle machine; this one is shared
    [session] = sessions(log_dir)
    assert session["status"] == "interrupted"
    records = assert_log_sound(log_dir)
    assert records >= 3 and session["trials_run"] == records
    assert f"interrupted: {records} trials kept" in err
    assert gone(workers), "builder/runner workers outlived the session"


def test_second_ctrl_c_exits_at_once_without_a_crash(cnn_onnx, tmp_path):
    import tvmopt

    log_dir = tmp_path / tvmopt.get_target("host").log_name
    proc = _tune(cnn_onnx, tmp_path)
    wait_for_records(proc, log_dir, 3)
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole process group, workers included
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = finish(proc)
    stopped_s = time.monotonic() - sent
    print(f"second Ctrl-C: exit after {stopped_s:.2f} s")
    assert proc.returncode == 130, (proc.returncode, err)  # not 139 (std::terminate, segfault)
    assert "Traceback" not in err and "terminate" not in err
    assert stopped_s < 5
    [session] = sessions(log_dir)
    assert session["status"] == "interrupted"
    assert assert_log_sound(log_dir) >= 3
    assert gone(workers), "builder/runner workers outlived the session"




@pytest.mark.parametrize("verb", ["run", "bench"])
def test_ctrl_c_stops_run_and_bench_loops(verb, cnn_onnx, cnn_artifact, tmp_path):
    if verb == "run":
        proc = start("run", str(cnn_artifact), "--repeat", "10000000")
        settle = 8.0  # loaded and timing
    else:
        proc = start("bench", str(cnn_onnx), "--log-dir", str(tmp_path), "--rounds", "100000", "--runs", "100")
        settle = 20.0  # two compiles, then the interleaved loop
    time.sleep(settle)
    assert proc.poll() is None, finish(proc)[1]
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc)
    stopped_s = time.monotonic() - sent
    print(f"{verb}: exit {stopped_s:.2f} s after Ctrl-C")
    assert proc.returncode == 130 and "tvmopt: interrupted" in err and "Traceback" not in err, err
    assert stopped_s < 3


# Python raises a Ctrl-C's KeyboardInterrupt in whatever frame runs; inside a __del__ or a
# Python function TVM's C++ called, it is lost and the verb ran on (CI: a bench of 100000 rounds
# ignored Ctrl-C). `signal.raise_signal` runs the handler before it returns, so the `except`
# below loses the KeyboardInterrupt every time, as such a frame does.
SWALLOW = """
import signal, sys, time
from tvmopt import ctrl_c
ctrl_c.install()
def lost_ctrl_c():
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        print("swallowed", flush=True)
"""


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_a_lost_ctrl_c_still_ends_the_timing_loop():
    proc = _python(SWALLOW + """
from tvmopt.measure.timing import interleaved_medians
calls = [0]
def contender():
    calls[0] += 1
    if calls[0] == 50:
        lost_ctrl_c()
try:
    interleaved_medians({"model": contender}, rounds=100000, runs=100)
except KeyboardInterrupt:
    print("stopped after", calls[0], "calls")
    sys.exit(130)
""")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "swallowed" in proc.stdout and "stopped after 50 calls" in proc.stdout, proc.stdout


def test_a_lost_ctrl_c_ends_any_other_work_after_the_backstop():
    started = time.monotonic()
    proc = _python(SWALLOW + """
ctrl_c.BACKSTOP_S = 1.0
lost_ctrl_c()
time.sleep(30)  # work that checks no flag
print("ran on")
""")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "ran on" not in proc.stdout and "tvmopt: interrupted" in proc.stderr
    assert time.monotonic() - started < 15

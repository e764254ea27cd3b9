"""Timing engines in processes of their own, rounds alternated: for models of microseconds.

Interleaved in one process, two engines' thread pools slow each other: each spin-waits for its
next call on the cores the other needs (the tuned demo CNN: 71 us alone, 124 us interleaved with
ONNX Runtime in one process; benchmarks/interference.py). A deployment runs one engine, so here
each contender loads in its own process and the rounds still alternate, so that machine noise
hits every contender alike. The processes not timing a round are stopped (SIGSTOP): an idle
engine's pool still spins (TVM's workers sched_yield for 300000 turns after a call), which slowed
ONNX Runtime from 68 to 92-116 us beside an idle TVM process here. Each round starts with WARM_S
of untimed calls, so that the engine's own workers reach their steady state (an idle pause
instead would time it cold: ONNX Runtime 10-15% slower after 50 ms idle, measured here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Callable

import numpy as np

from .. import ctrl_c
from ..errors import TvmoptError


class MeasureError(TvmoptError):
    """A timing process failed to start or died."""

WARM_S = 0.03
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ProcessContender:
    """How a child process builds the contender: an artifact directory (tvmopt's runtime) or an
    ONNX file (ONNX Runtime with `threads` intra-op threads)."""

    kind: str  # "artifact" | "onnxruntime"
    path: str
    threads: int | None = None


def isolated_medians(contenders: dict[str, ProcessContender | Callable[[], object]], feeds: dict[str, np.ndarray],
                     rounds: int, runs: int, warm_s: float = WARM_S) -> dict[str, float]:
    """Median over rounds of each contender's per-round median call time (ms). ProcessContenders
    run in their own process on `feeds`; a plain callable runs in this process (while it runs the
    children are stopped)."""
    children: dict[str, _Child] = {}
    try:
        for name, contender in contenders.items():
            if isinstance(contender, ProcessContender):
                children[name] = _Child.start(name, contender, feeds, runs, warm_s)
        for child in children.values():
            child.reply(START_TIMEOUT_S)  # loaded and warmed up
            child.pause()
        for fn in (c for c in contenders.values() if not isinstance(c, ProcessContender)):
            fn()  # warm-up: first calls allocate, JIT, fill caches
        per_round: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, contender in contenders.items():
                ctrl_c.check()  # a Ctrl-C whose KeyboardInterrupt got lost still ends the loop
                if name in children:
                    child = children[name]
                    child.resume()
                    child.connection.send(True)
                    per_round[name].append(child.reply(None))
                    child.pause()
                else:
                    per_round[name].append(_local_round(contender, runs, warm_s))
        return {name: statistics.median(values) for name, values in per_round.items()}
    finally:
        for child in children.values():
            child.stop()


@dataclass
class _Child:
    """A timing process and the connection to it.

    A plain subprocess, not multiprocessing: its spawn start re-runs the caller's main script in
    the child, which a user's script without an `if __name__ == "__main__"` guard cannot take.
    """

    name: str
    process: subprocess.Popen
    connection: Connection

    @staticmethod
    def start(name: str, contender: ProcessContender, feeds: dict[str, np.ndarray], runs: int,
              warm_s: float) -> "_Child":
        ours, theirs = socket.socketpair()
        code = f"from tvmopt.measure.isolated import child_main; child_main({theirs.fileno()})"
        # The child imports tvmopt from where this process did (a script may have put it on sys.path).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()], env=env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        connection = Connection(ours.detach())
        connection.send((contender, feeds, runs, warm_s))
        return _Child(name, process, connection)

    def reply(self, timeout: float | None) -> float:
        """The child's next message: a round's median (ms); its error raised here."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.connection.poll(0.2):
            ctrl_c.check()
            if self.process.poll() is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise MeasureError(f"timing process of {self.name} did not start within {timeout:.0f} s")
        try:
            kind, value = self.connection.recv()
        except (EOFError, OSError):
            raise MeasureError(f"timing process of {self.name} exited with status {self.process.wait()}") from None
        if kind == "error":
            raise MeasureError(f"{self.name}: {value}")
        return value

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.resume()
            self.connection.send(None)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.connection.close()


def _local_round(fn: Callable[[], object], runs: int, warm_s: float) -> float:
    """The median (ms) of `runs` timed calls after `warm_s` of untimed ones (at least one)."""
    until = time.perf_counter() + warm_s
    fn()
    while time.perf_counter() < until:
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def child_main(fd: int) -> None:
    """A timing process: build the contender, warm it up, then time one round per request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the children
    _die_with_parent()
    connection = Connection(fd)
    contender, feeds, runs, warm_s = connection.recv()
    try:
        fn = _build(contender, feeds)
        fn()
        connection.send(("ready", 0.0))
    except Exception as err:  # noqa: BLE001 - reported by the parent with the contender's name
        connection.send(("error", f"{type(err).__name__}: {err}"))
        return
    with contextlib.suppress(EOFError):  # the parent went away: nothing left to time
        while connection.recv():
            connection.send(("round", _local_round(fn, runs, warm_s)))


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies; a child left stopped would wait forever."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's cleanup still resumes and ends it
        pass
    if os.getppid() == 1:  # the parent died before the call above
        os._exit(1)


def _build(contender: ProcessContender, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    if contender.kind == "artifact":
        from ..runtime import load

        # The call a user makes, numpy in and numpy out, as ONNX Runtime's run below: inputs
        # checked and copied in, outputs copied out (Predictor.bound_call would skip both).
        predictor = load(contender.path)
        return lambda: predictor(**feeds)
    if contender.kind == "onnxruntime":
        from .baselines import OrtSession

        session = OrtSession(contender.path, contender.threads)
        return lambda: session(feeds)
    raise ValueError(f"unknown contender kind {contender.kind!r}")

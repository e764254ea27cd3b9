"""Adaptive thread count (runtime/adaptive_threads.py): the decisions, on scripted call times, and
the real Predictor path: same outputs on every count, the pool given back, the user's count kept.

The decision tests drive the tuner with a scripted clock: which count is faster on this machine
changes with its state (the point of the tuner), so only scripted timings can say what it must do.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tvmopt.runtime import adaptive_threads as at
from tvmopt.runtime import load, tvm_runtime


class Machine:
    """A pool and a clock: a call takes `cost[count]` seconds on the current count."""

    def __init__(self, cost: dict[int, float]):
        self.cost = dict(cost)
        self.count = max(cost)
        self.now = 0.0
        self.resizes = 0
        self.calls_on: dict[int, int] = {c: 0 for c in cost}

    def use(self, count: int) -> None:
        if count != self.count:
            self.count = count
            self.resizes += 1
            self.now += 20e-6

    def clock(self) -> float:
        return self.now

    def run(self) -> None:
        self.calls_on[self.count] += 1
        self.now += self.cost[self.count]


def _tuner(machine: Machine) -> at.ThreadCountTuner:
    return at.ThreadCountTuner(at.candidate_counts(max(machine.cost)), machine, machine.clock)


def _run(tuner: at.ThreadCountTuner, machine: Machine, seconds: float) -> None:
    end = machine.now + seconds
    while machine.now < end:
        tuner(machine.run)


def test_candidates():
    assert at.candidate_counts(2) == (2, 1)
    assert at.candidate_counts(8) == (8, 4, 1)
    assert at.candidate_counts(1) == (1,)


def test_keeps_the_faster_count_and_follows_a_change_of_phase():
    machine = Machine({2: 30e-6, 1: 42e-6})  # the bundled CNN in the near phase
    tuner = _tuner(machine)
    _run(tuner, machine, 2.0)
    assert tuner.current == 2 and tuner.switches == 0 and tuner.probes > 10
    # The probes cost little: under 1% of the calls ran on the slower count.
    assert machine.calls_on[1] < 0.01 * machine.calls_on[2]

    machine.cost = {2: 52e-6, 1: 44e-6}  # the far phase: one thread is faster
    _run(tuner, machine, 0.5)
    assert tuner.current == 1 and tuner.switches == 1
    before = dict(machine.calls_on)
    _run(tuner, machine, 1.0)
    assert machine.calls_on[1] - before[1] > 0.98 * (sum(machine.calls_on.values()) - sum(before.values()))

    machine.cost = {2: 30e-6, 1: 42e-6}  # back to the near phase
    _run(tuner, machine, 0.5)
    assert tuner.current == 2 and tuner.switches == 2


def test_a_model_that_needs_every_thread_is_probed_ever_more_rarely():
    machine = Machine({2: 4e-3, 1: 8e-3})  # MobileNetV2-sized: one thread is never close
    tuner = _tuner(machine)
    _run(tuner, machine, 60.0)
    assert tuner.current == 2 and tuner.switches == 0
    assert tuner.probes < 12  # the wait doubles after each clear loss
    assert machine.calls_on[1] * 8e-3 < 0.005 * 60.0


def test_a_probe_gives_up_at_its_first_clearly_slower_call():
    machine = Machine({2: 30e-6, 1: 60e-6})
    tuner = _tuner(machine)
    _run(tuner, machine, 0.2)
    # Each probe: one warm-up call and one judged call on one thread, then back (the last probe
    # may still be under way).
    per_probe = at.WARM_UP_CALLS + 1
    assert tuner.probes > 1
    assert (tuner.probes - 1) * per_probe <= machine.calls_on[1] <= tuner.probes * per_probe


def test_one_thread_is_left_alone():
    machine = Machine({1: 30e-6})
    tuner = _tuner(machine)
    _run(tuner, machine, 0.5)
    assert tuner.probes == 0 and machine.resizes == 0


def test_shapes_get_their_own_tuner():
    made = []

    def make():
        made.append(at.ThreadCountTuner((2, 1), Machine({2: 1e-5, 1: 2e-5})))
        return made[-1]

    tuners = at.PerShapeTuners(make)
    rows = lambda n: [np.zeros((n, 4), np.float32)]  # noqa: E731
    for n in (1, 4, 1, 16, 4):
        assert tuners(lambda arrays: arrays[0].shape[0], rows(n)) == n
    assert len(made) == 3


def test_predictor_gives_the_same_outputs_on_every_count_and_the_pool_back(cnn_artifact):
    if tvm_runtime.thread_pool().size < 2:
        pytest.skip("one thread: nothing to adapt")
    adaptive = load(cnn_artifact, adaptive_threads=True)
    fixed = load(cnn_artifact, adaptive_threads=False)
    feeds = fixed.random_inputs()
    want = fixed(**feeds)
    adaptive(**feeds)
    tuner = adaptive._local.calls["main"][1]
    assert isinstance(tuner, at.ThreadCountTuner)
    pool = tvm_runtime.thread_pool()
    for count in tuner.counts:  # each count, as a switch would leave it
        tuner.current = count
        for _ in range(3):
            for got, ref in zip(adaptive(**feeds), want):
                np.testing.assert_array_equal(got, ref)
        assert pool.count == count
    tuner.current = 1
    adaptive(**feeds)
    assert pool.count == 1
    fixed(**feeds)  # a fixed predictor in the same thread runs on the whole pool again
    assert pool.count == pool.size
    for _ in range(2000):  # real rounds of baseline and probe
        adaptive(**feeds)
    assert tuner.probes > 0
    for got, ref in zip(adaptive(**feeds), want):
        np.testing.assert_array_equal(got, ref)


CHECK = ("import tvmopt\n"
         "p = tvmopt.load({path!r})\n"
         "print(p.adaptive_threads)\n")


@pytest.mark.parametrize("env, expected", [
    ({}, "True"),
    ({"TVM_NUM_THREADS": "2"}, "False"),  # the user fixed the count
    ({"TVMOPT_ADAPTIVE_THREADS": "0"}, "False"),
])
def test_on_by_default_unless_the_user_fixed_the_count(cnn_artifact, env, expected):
    base = {k: v for k, v in os.environ.items()
            if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "TVMOPT_SET_TVM_NUM_THREADS", "TVMOPT_ADAPTIVE_THREADS")}
    out = subprocess.run([sys.executable, "-c", CHECK.format(path=str(cnn_artifact))], env={**base, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected


def test_a_child_of_tvmopt_still_adapts(cnn_artifact):
    """tvmopt sets TVM_NUM_THREADS for its children (bench, serve workers); that is not the user's."""
    code = ("import os, subprocess, sys, tvmopt\n"
            f"print(subprocess.run([sys.executable, '-c', {CHECK.format(path=str(cnn_artifact))!r}],"
            " capture_output=True, text=True).stdout.strip())\n")
    base = {k: v for k, v in os.environ.items()
            if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "TVMOPT_SET_TVM_NUM_THREADS", "TVMOPT_ADAPTIVE_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True"

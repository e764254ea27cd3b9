"""The number of threads a small model runs on, chosen while it runs, from its own call times.

Why: a model of tens of microseconds pays for every parallel region twice, in the fork-join and
in the data one core wrote and the other then reads. How much depends on the machine's state,
not only on the model: on a cloud VM whose two vCPUs sometimes share no cache (benchmarks/
cross_core.py: a cross-core round trip of 60 ns in one phase, 340 ns in the other), the bundled
example CNN ran in 27 us on 2 threads and 38 on 1 in the near phase, 44 on 2 and 38 on 1 in the
far one, and the phases change every few seconds to minutes. No choice made once is right.

How: every so often the tuner times a few calls on the current count (the baseline), then a
probe: a few calls on another count. A count whose probe calls were clearly faster in two rounds
in a row is kept; else the current count comes back. A probe gives up at its first clearly
slower call, and probes are spaced so that what they cost stays under PROBE_BUDGET of the time
(the bundled CNN probes every 50 ms; a model of milliseconds, where one thread never wins, ever
more rarely, up to every 30 s). The calls in between are not timed: they pay one counter and one
attribute check (0.2 us).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")

BASELINE_CALLS = 8  # timed calls on the current count before each probe (their median)
PROBE_CALLS = 5  # judged calls of a probe that runs to the end
# Not judged: the first call on another count runs on cold caches (the bundled CNN's first call
# on one thread took 70-90 us, the next ones 42-44) and a larger pool's first call wakes workers
# that may have gone to sleep.
WARM_UP_CALLS = 1
# Timed on the current count after a lost probe: its data has to come back into the caches the
# probe disturbed (the zoo MLP, 6 MB of weights, lost ~2% to probes until this was counted).
RECOVERY_CALLS = 2
WIN_MARGIN = 0.05  # a probe wins when its median is this much below the baseline's
WINS_TO_SWITCH = 2  # rounds in a row a count must win to be kept
GIVE_UP = 1.25  # a probe call this much slower than the baseline ends the probe
PROBE_BUDGET = 0.005  # probes may cost this share of the time
# A probe whose count ran this much slower (one thread on MobileNetV2: 2x) is not a phase away
# from winning: each such loss in a row doubles the wait before the next probe.
CLEAR_LOSS = 1.5
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 30.0


def candidate_counts(threads: int) -> tuple[int, ...]:
    """Thread counts worth trying on a pool of `threads`: all of them, half, one."""
    return tuple(sorted({threads, max(1, threads // 2), 1}, reverse=True))


class Pool(Protocol):
    """A thread pool the tuner resizes: `count` threads now, `use(n)` to change it."""

    count: int

    def use(self, count: int) -> None: ...


@dataclass
class _Round:
    """One baseline-then-probe round."""

    probe_count: int
    baseline: list[float] = field(default_factory=list)
    warm_up_calls: int = WARM_UP_CALLS
    probe: list[float] = field(default_factory=list)
    probe_spent_s: float = 0.0  # the probe's calls, warm-up and resizes included
    lost: bool = False
    recovery: list[float] = field(default_factory=list)


class ThreadCountTuner:
    """Runs calls on the thread count that has been fastest lately (see the module docstring).

    `pool` is the calling thread's TVM pool (tvm_runtime.thread_pool()). One tuner serves one
    model function in one calling thread; tuners of one thread share its pool, so each call
    first sets the count it wants. `clock` is injectable so that the decisions can be tested.
    """

    def __init__(self, counts: tuple[int, ...], pool: Pool, clock: Callable[[], float] = time.perf_counter):
        if not counts:
            raise ValueError("no thread counts to choose from")
        self.counts = counts
        self.current = counts[0]
        self._pool = pool
        self._clock = clock
        self._countdown = 32  # untimed calls before the next round (the first calls warm up)
        self._round: _Round | None = None
        self._turn = 0  # which other count the next probe tries
        self._clear_losses = 0  # probes in a row that lost by CLEAR_LOSS or more
        self._candidate: int | None = None  # a count that won the last round, not yet kept
        self._wins = 0
        self.probes = 0
        self.switches = 0  # probes whose count was kept

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the thread count chosen for it."""
        if self._countdown > 0:  # the common case, kept lean
            self._countdown -= 1
            if self._pool.count != self.current:  # another tuner of this thread resized the pool
                self._pool.use(self.current)
            return fn(*args)
        return self._timed_call(fn, args)

    def _timed_call(self, fn: Callable[..., T], args: tuple) -> T:
        others = [c for c in self.counts if c != self.current]
        if not others:
            self._countdown = 1 << 62
            return fn(*args)
        rnd = self._round
        if rnd is None:
            if self._candidate in others:  # confirm it first
                rnd = self._round = _Round(self._candidate)
            else:
                rnd = self._round = _Round(others[self._turn % len(others)])
                self._turn += 1
        on_current = len(rnd.baseline) < BASELINE_CALLS or rnd.lost
        resizing = self._clock()
        self._pool.use(self.current if on_current else rnd.probe_count)
        began = self._clock()  # after the resize: its syscalls are not the model's time
        result = fn(*args)
        elapsed = self._clock() - began
        if rnd.lost:
            rnd.recovery.append(elapsed)
            if len(rnd.recovery) == RECOVERY_CALLS:
                self._after_loss(rnd)
        elif on_current:
            rnd.baseline.append(elapsed)
            if len(rnd.baseline) == BASELINE_CALLS:
                self.probes += 1
        else:
            rnd.probe_spent_s += elapsed + 2 * (began - resizing)  # this resize and the one back
            self._probe_call(rnd, elapsed)
        return result

    def _probe_call(self, rnd: _Round, elapsed: float) -> None:
        if rnd.warm_up_calls:
            rnd.warm_up_calls -= 1
            return
        rnd.probe.append(elapsed)
        base = statistics.median(rnd.baseline)
        if elapsed > base * GIVE_UP:
            rnd.lost = True
        elif len(rnd.probe) >= PROBE_CALLS:
            if statistics.median(rnd.probe) < base * (1 - WIN_MARGIN):
                self._won(rnd, base)
            else:
                rnd.lost = True

    def _won(self, rnd: _Round, base: float) -> None:
        """A count is kept after WINS_TO_SWITCH won rounds in a row: one round can be fooled by a
        baseline of cold calls (the first after an idle spell) that its probe then beats."""
        self._round = None
        self._clear_losses = 0
        if self._candidate != rnd.probe_count:
            self._candidate, self._wins = rnd.probe_count, 0
        self._wins += 1
        if self._wins >= WINS_TO_SWITCH:
            self.current = rnd.probe_count
            self.switches += 1
            self._candidate = None
            base = statistics.median(rnd.probe)
        self._countdown = self._calls_in(MIN_INTERVAL_S, base)

    def _after_loss(self, rnd: _Round) -> None:
        """Space the next round by what this one cost beyond running its calls at the current
        count's pace: the probe, its resizes, and the calls after it that found cold caches."""
        self._round = None
        self._candidate = None
        base = statistics.median(rnd.baseline)
        calls = WARM_UP_CALLS + len(rnd.probe) + len(rnd.recovery)
        cost = max(0.0, rnd.probe_spent_s + sum(rnd.recovery) - calls * base)
        self._clear_losses = self._clear_losses + 1 if min(rnd.probe) >= base * CLEAR_LOSS else 0
        wait = max(MIN_INTERVAL_S, cost / PROBE_BUDGET) * 2 ** min(self._clear_losses, 16)
        self._countdown = self._calls_in(min(MAX_INTERVAL_S, wait), base)

    @staticmethod
    def _calls_in(seconds: float, call_s: float) -> int:
        return max(1, int(seconds / max(call_s, 1e-9)))


# Input shapes a symbolic-shape function keeps tuners for; calls of further shapes run on whatever
# count the pool has (a server's batches take a few dozen sizes at most).
MAX_SHAPES = 64


class PerShapeTuners:
    """One ThreadCountTuner per input shapes, for a function whose shapes vary call by call (a
    batch of 16 rows and one of 1 cannot be judged by each other's times)."""

    def __init__(self, make: Callable[[], ThreadCountTuner]):
        self._make = make
        self._tuners: dict[tuple, ThreadCountTuner] = {}

    def __call__(self, fn: Callable[..., T], arrays: Any) -> T:
        key = tuple(a.shape for a in arrays)
        tuner = self._tuners.get(key)
        if tuner is None:
            if len(self._tuners) >= MAX_SHAPES:
                return fn(arrays)
            tuner = self._tuners[key] = self._make()
        return tuner(fn, arrays)

"""Ctrl-C during a tuning session: the first stops it at the next safe point, the second exits now.

Workaround: MetaSchedule's loop runs in C++ and calls back into Python (scheduler, builder,
runner, cost model); a KeyboardInterrupt raised inside a callback comes out of TVM as a bare
RuntimeError, and a second one unwinding through C++ ended in std::terminate (exit 139). So
while a session runs, SIGINT only sets a flag that the scheduler, builder and runner check
between candidates. A watcher thread reads Python's signal wakeup fd, so it sees each SIGINT
the moment it arrives, even while the main thread is busy inside TVM: it announces the stop
on the first, and on the second runs the caller's last words and exits with 130 at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable


class TuningInterrupted(KeyboardInterrupt):
    """Raised by tune() after a Ctrl-C stopped the session cleanly; `log` is its TuningLog."""

    def __init__(self, log):
        super().__init__("tuning interrupted")
        self.log = log


# Seconds a first Ctrl-C waits for the session's next safe point before ending it like a second
# one (None: wait; a library caller gets TuningInterrupted). The CLI sets it: a terminal user
# wants the prompt back, and ending under the log lock loses no record that was written.
GRACE_S: float | None = None


class InterruptGuard:
    """While active (`with`), SIGINT calls `on_first` once, then `on_second` and exits the process
    (also when the session has not stopped GRACE_S seconds after the first).

    Inactive outside the main thread (Python delivers signals there only) and where SIGINT is
    ignored (e.g. a background job started with `nohup` or `&` by a non-interactive shell).
    """

    def __init__(self, on_first: Callable[[], None], on_second: Callable[[], None]):
        self.on_first = on_first
        self.on_second = on_second
        self.count = 0
        self._active = False
        self._done = threading.Event()  # set when the guarded code has returned
        self._exiting = threading.Lock()

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return self
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._old_handler = signal.signal(signal.SIGINT, _no_keyboard_interrupt)
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="tvmopt-sigint", daemon=True)
        self._thread.start()
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if not self._active:
            return
        self._active = False
        signal.set_wakeup_fd(self._old_fd)
        signal.signal(signal.SIGINT, self._old_handler)
        os.close(self._write)  # the watcher reads end-of-file and returns
        self._thread.join(timeout=5)
        os.close(self._read)

    def _watch(self) -> None:
        # This thread takes SIGINT even where the main thread blocks it: a process started with
        # SIGINT blocked (inherited from its parent) would otherwise hold the Ctrl-C pending and
        # tune to the end (seen in a test run: exit 0 after 66 s). Python's C handler then runs
        # here and writes the wakeup fd read below.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum != signal.SIGINT:
                    continue
                self.count += 1
                if self.count == 1:
                    self.on_first()
                    if GRACE_S is not None:
                        threading.Thread(target=self._exit_unless_done, args=(GRACE_S,), daemon=True).start()
                else:
                    self._exit()

    def _exit_unless_done(self, grace_s: float) -> None:
        if not self._done.wait(grace_s):
            self._exit()

    def _exit(self) -> None:
        with self._exiting:  # once, whoever comes first
            try:
                self.on_second()
            finally:
                sys.stderr.flush()
                os._exit(130)


def _no_keyboard_interrupt(signum, frame) -> None:
    """Python-level SIGINT handler: nothing; the watcher thread acts (see module docstring)."""


def ignore_sigint() -> None:
    """Initializer of builder and runner worker processes: a Ctrl-C in the terminal reaches the whole
    process group; workers leave it to the session, which stops them at a safe point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def kill_children() -> None:
    """Kill this process's child processes (builder and runner workers) before an immediate exit."""
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
    except Exception:  # noqa: BLE001 - exiting anyway
        pass

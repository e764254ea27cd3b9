"""Ctrl-C outside tuning sessions: a flag that long loops check, and a backstop exit.

Python raises KeyboardInterrupt in whatever Python frame runs when the handler fires. Inside a
`__del__`, a weakref or gc callback, or a Python function that TVM's C++ called, the exception
is printed as "Exception ignored" or turned into a RuntimeError and the program runs on: a
`tvmopt bench --rounds 100000` ignored a Ctrl-C that landed as its timing loop began. So the
handler also sets a flag that the timing, `run --repeat` and batch-prediction loops check, and
a watchdog ends the process if it is still alive BACKSTOP_S after the Ctrl-C (cleanup that
follows a Ctrl-C, such as stopping a local Ray instance, takes a few seconds at most).
Tuning sessions install their own handler (tuning/interrupt.py) while they run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

BACKSTOP_S = 10.0

_seen = threading.Event()


def install() -> None:
    """Handle SIGINT as Python does (KeyboardInterrupt), remembering that it came; only where the
    default handler is in place (not under `nohup`, not inside a host program's own handler)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def requested() -> bool:
    """Whether the user pressed Ctrl-C (even if the KeyboardInterrupt it raised was lost)."""
    return _seen.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came: for loops that must stop even when it was swallowed."""
    if _seen.is_set():
        raise KeyboardInterrupt


def _on_sigint(signum, frame) -> None:
    if not _seen.is_set():
        _seen.set()
        threading.Thread(target=_backstop, name="tvmopt-ctrl-c-backstop", daemon=True).start()
    raise KeyboardInterrupt


def _backstop() -> None:
    """Exit 130 if the process outlives its Ctrl-C by BACKSTOP_S (a lost interrupt, a stuck cleanup)."""
    threading.Event().wait(BACKSTOP_S)
    try:
        print("tvmopt: interrupted", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    os._exit(130)

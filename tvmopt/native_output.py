"""TVM's own prints (C++ log lines, frontend messages) are kept off the terminal unless asked for.

TVM's C++ logging and some frontends write straight to the process's stdout/stderr ("Warning:
Fast mode segfaults ...", "Error converting operator ..."), which buries tvmopt's one-line
errors. Stages wrap their TVM calls in `captured()`; the CLI's --verbose calls `show(True)`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

_SHOW = False


def show(enabled: bool = True) -> None:
    """Let TVM's native output through (the CLI's --verbose, or TVMOPT_VERBOSE=1)."""
    global _SHOW
    _SHOW = enabled


def shown() -> bool:
    return _SHOW or os.environ.get("TVMOPT_VERBOSE") == "1"


@dataclass
class Captured:
    """What TVM printed inside a `captured()` block; `text` is filled when the block ends."""

    text: str = ""


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    """Collect what is written to file descriptors 1 and 2 inside the block (unless shown)."""
    box = Captured()
    if shown():
        yield box
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield box
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            box.text = sink.read().decode(errors="replace")

"""Start `tvmopt serve` as a child process and stop it cleanly: for tests, tutorials, benchmarks.

The server runs in its own session (process group), so stopping it reaches every worker it
started; stop() sends SIGTERM (a graceful drain), then SIGKILL to the group if it hangs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Sequence

from ..errors import TvmoptError

LISTENING = re.compile(r"listening on (http://\S+)")


class ServerProcess:
    """A running `tvmopt serve`; `url` is its base URL. Use as a context manager."""

    def __init__(self, models: Sequence[str | os.PathLike], *, args: Sequence[str] = (), host: str = "127.0.0.1",
                 port: int = 0, timeout: float = 120, env: dict | None = None):
        command = [sys.executable, "-m", "tvmopt", "serve", *map(str, models), "--host", host, "--port", str(port),
                   *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                                     **(env or {})})
        self.output: list[str] = []
        self.url = ""
        found = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(found,), daemon=True)
        self._reader.start()
        try:
            self._wait_ready(found, timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def host_port(self) -> str:
        """'127.0.0.1:PORT', as tritonclient takes it."""
        return self.url.split("://", 1)[1]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the server's process group, wait; SIGKILL what is left. Returns its exit status."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.process.pid, signal.SIGKILL)  # workers that outlived their supervisor
        self.process.wait()
        self._reader.join(5)
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _read(self, found: threading.Event) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                self.url = match.group(1)
                found.set()
        found.set()

    def _wait_ready(self, found: threading.Event, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        found.wait(timeout)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TvmoptError(f"tvmopt serve exited with status {self.process.returncode}: "
                                  f"{self.log().strip()[-2000:]}")
            if self.url:
                try:
                    with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as response:
                        if response.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.1)
        raise TvmoptError(f"tvmopt serve was not ready after {timeout:.0f} s: {self.log().strip()[-2000:]}")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_server(models: Sequence[str | os.PathLike | Path], **kwargs) -> ServerProcess:
    """`tvmopt serve MODELS` in a child process, returned once it is ready."""
    return ServerProcess(models, **kwargs)

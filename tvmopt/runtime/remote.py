"""Remote devices through TVM's RPC tracker: run artifacts there (tuning measures there too).

A device registers with `python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`; the
tracker (`python -m tvm.exec.rpc_tracker --port PORT`) hands sessions to tvmopt by key. The RPC
client is part of TVM's Python package, so this module imports `tvm` when it is used.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np

from ..errors import RemoteError, last_line
from .artifact import Artifact


@dataclass(frozen=True)
class RpcDevice:
    """Devices registered with a tracker under one key."""

    host: str
    port: int
    key: str

    @staticmethod
    def parse(tracker: str, key: str | None) -> "RpcDevice":
        host, sep, port = tracker.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise RemoteError(f"--rpc-tracker '{tracker}': expected HOST:PORT, e.g. 127.0.0.1:9190")
        if not key:
            raise RemoteError("--rpc-tracker needs --rpc-key KEY (the key the devices registered with)")
        return RpcDevice(host, int(port), key)

    def __str__(self) -> str:
        return f"{self.key}@{self.host}:{self.port}"

    def check_reachable(self) -> None:
        try:  # TVM's own connect retries for a minute; a quick probe answers at once
            socket.create_connection((self.host, self.port), timeout=5).close()
        except OSError as err:
            raise RemoteError(f"RPC tracker {self.host}:{self.port} is not reachable: {err}") from err
        try:
            from tvm import rpc

            summary = str(rpc.connect_tracker(self.host, self.port).text_summary())
        except Exception as err:  # noqa: BLE001 - socket errors of all kinds
            raise RemoteError(f"RPC tracker {self.host}:{self.port} is not reachable: {err}") from err
        if self.key not in summary:
            raise RemoteError(f"RPC tracker {self.host}:{self.port} has no device with key '{self.key}'")

    def session(self, timeout_s: float = 60.0):
        """A session on a device of this key (blocks until one is free)."""
        from tvm import rpc

        return rpc.connect_tracker(self.host, self.port).request(self.key, priority=1, session_timeout=timeout_s)


def run_remote(artifact: Artifact, device: RpcDevice, arrays: list[np.ndarray], repeat: int = 20):
    """Run an artifact on a tracker device; returns (outputs, per-run seconds measured there)."""
    device.check_reachable()
    try:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        session = device.session()
        session.upload(str(artifact.library_path))
        lib = session.load_module(os.path.basename(artifact.library_path))
        remote_dev = session.device(artifact.manifest.target.device_type, 0)
        vm = VirtualMachine(lib, remote_dev)
        tensors = [tvm.runtime.tensor(a, remote_dev) for a in arrays]
        outputs = _flatten(vm["main"](*tensors))
        seconds = list(vm.time_evaluator("main", remote_dev, number=1, repeat=repeat)(*tensors).results)
    except Exception as err:  # noqa: BLE001
        raise RemoteError(f"{artifact.path} on {device}: {last_line(err)}") from err
    return outputs, seconds


def _flatten(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [array for item in result for array in _flatten(item)]

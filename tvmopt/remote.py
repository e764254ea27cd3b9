"""Remote devices through TVM's RPC tracker: measure tuning candidates, run artifacts there.

A device registers with `python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`; the
tracker (`python -m tvm.exec.rpc_tracker --port PORT`) hands sessions to tvmopt by key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _tvm
from .artifact import Artifact
from .errors import TvmoptError
from .runtime import Latency, _flatten


class RemoteError(TvmoptError):
    """The tracker or the device cannot be reached, or the artifact failed there."""


@dataclass(frozen=True)
class RpcDevice:
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
        import socket

        try:  # TVM's own connect retries for a minute; a quick probe answers at once
            socket.create_connection((self.host, self.port), timeout=5).close()
        except OSError as err:
            raise RemoteError(f"RPC tracker {self.host}:{self.port} is not reachable: {err}") from err
        try:
            summary = _tvm.rpc_tracker_summary(self.host, self.port)
        except Exception as err:  # noqa: BLE001 - socket errors of all kinds
            raise RemoteError(f"RPC tracker {self.host}:{self.port} is not reachable: {err}") from err
        if self.key not in summary:
            raise RemoteError(f"RPC tracker {self.host}:{self.port} has no device with key '{self.key}'")


def run_remote(artifact: Artifact, device: RpcDevice, arrays: list[np.ndarray], repeat: int = 20):
    """Run an artifact on a tracker device; returns (outputs, Latency measured there)."""
    device.check_reachable()
    device_type = "cuda" if artifact.manifest["target"].get("device") == "cuda" else "cpu"
    try:
        session = _tvm.rpc_session(device.host, device.port, device.key)
        result, seconds = _tvm.run_remote(session, str(artifact.library_path), device_type, arrays, repeat)
        outputs = _flatten(result)
    except Exception as err:  # noqa: BLE001
        lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
        raise RemoteError(f"{artifact.path} on {device}: {lines[-1] if lines else type(err).__name__}") from err
    return outputs, Latency(tuple(s * 1e3 for s in seconds))

"""Serving and batch prediction: `tvmopt serve` (the Open Inference Protocol over HTTP, dynamic
batching, metrics) and `tvmopt predict` (files in, chunked outputs, resumable; optionally on Ray).

Built on the runtime (tvmopt.runtime.load / Predictor): no TVM compiler, torch or onnx in a
serving process. One module per job: protocol (v2 codec), batching (dynamic batcher), app
(HTTP routes), metrics, server (uvicorn, drain, workers), launch (a server as a child process),
models + ort_backend (what is served), data + batch_predict (batch prediction), ray_job (Ray Data).
Needs `pip install 'tvmopt[serve]'` to serve, `tvmopt[parquet]` / `tvmopt[ray]` for those inputs.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "serve": ("tvmopt.serving.server", "serve"),
    "ServeSettings": ("tvmopt.serving.server", "ServeSettings"),
    "create_app": ("tvmopt.serving.app", "create_app"),
    "start_server": ("tvmopt.serving.launch", "start_server"),
    "ServerProcess": ("tvmopt.serving.launch", "ServerProcess"),
    "predict": ("tvmopt.serving.batch_predict", "predict"),
    "PredictResult": ("tvmopt.serving.batch_predict", "PredictResult"),
    "read_outputs": ("tvmopt.serving.batch_predict", "read_outputs"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'tvmopt.serving' has no attribute {name!r}")

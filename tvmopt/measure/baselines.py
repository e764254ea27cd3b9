"""What a user would deploy otherwise (ONNX Runtime), timed the same way as tvmopt's artifacts."""

from __future__ import annotations

import os

import numpy as np

from ..threads import default_threads
from ..errors import require


class OrtSession:
    """ONNX Runtime on the CPU with the same thread count tvmopt uses (all available cores)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ort = require("onnxruntime", "ort")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

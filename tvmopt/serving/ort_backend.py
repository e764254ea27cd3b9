"""ONNX Runtime behind the same server stack, so a comparison measures the kernels and nothing else.

Imported only when an .onnx file is served (`tvmopt serve model.onnx`); needs onnxruntime.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArtifactError, InputSpecError, require
from ..runtime.batching import batch_dim, run_merged, with_rows
from ..runtime.inputs import warm_up_inputs
from ..specs import TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32", "tensor(int64)": "int64",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(uint32)": "uint32", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


class OrtModel:
    """An ONNX file run by ONNX Runtime's CPU provider with all available cores, like tvmopt."""

    platform = "onnxruntime_onnx"
    version = "1"

    def __init__(self, path: str | os.PathLike, name: str | None = None, threads: int | None = None):
        ort = require("onnxruntime", "ort")
        path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing request is answered with the error; not logged twice
        options.intra_op_num_threads = threads or int(os.environ.get("TVM_NUM_THREADS", 0)) or \
            len(os.sched_getaffinity(0))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own kinds
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({str(err).strip().splitlines()[-1]})") from err
        self.name = name or path.stem
        self.inputs = tuple(_spec(v) for v in self.session.get_inputs())
        self.outputs = tuple(_spec(v) for v in self.session.get_outputs())
        self.batch_dim = batch_dim(self.inputs, self.outputs)
        self.max_batch_size = 1
        self.description = f"{path.name} on ONNX Runtime"
        self._names = [s.name for s in self.inputs]

    def run_many(self, requests: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        if self.batch_dim is None:
            return [self._run(r) for r in requests]
        return run_merged(self._run, requests)

    def warm_up(self) -> bool:
        try:
            inputs = warm_up_inputs(with_rows(self.inputs, self.batch_dim, 1) if self.batch_dim else self.inputs)
        except InputSpecError:
            return False
        for _ in range(2):
            self._run([inputs[name] for name in self._names])
        return True

    def _run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, dict(zip(self._names, arrays)))
        except Exception as err:  # noqa: BLE001 - ORT's Fail, InvalidArgument, ...
            raise RuntimeError(ort_message(str(err))) from err


def ort_message(text: str) -> str:
    """ONNX Runtime's error without its source location and C++ signature: 'GatherElements node:
    GatherElements op: Out of range value in index tensor'."""
    text = text.strip().splitlines()[0] if text.strip() else text
    node = re.search(r"while running (\S+) node", text)
    status = text.rsplit("Status Message: ", 1)[-1]
    status = re.sub(r"^\S+:\d+ .*?\)( \[with [^\]]*\])? ", "", status)
    return f"{node.group(1)} node: {status}" if node else status


def _spec(value) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or f"{value.name}_dim{i}") for i, d in enumerate(value.shape))
    if value.type not in _ORT_TYPES:
        raise ArtifactError(f"tensor '{value.name}' of type {value.type} cannot be served")
    return TensorSpec(value.name, shape, _ORT_TYPES[value.type])

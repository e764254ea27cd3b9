"""What the server serves: a tvmopt artifact through the runtime's Predictor (or, for comparison,
an ONNX file through ONNX Runtime, serving/ort_backend.py), behind one small interface."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import ArtifactError, last_line
from ..specs import TensorSpec

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
log = logging.getLogger("tvmopt.serve")


class ServedModel(Protocol):
    """A model the server can run: its tensors, its batch dim, and a batched run."""

    name: str
    version: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch_dim: str | None  # requests merge along axis 0 when set
    max_batch_size: int  # rows per run unless the server is told otherwise

    def run_many(self, requests: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        """One list of outputs per request (each a list of input arrays in `inputs` order)."""
        ...

    def warm_up(self) -> bool:
        """A few runs on random inputs before serving; False when there is nothing to draw them for."""
        ...


class ArtifactModel:
    """A tvmopt artifact, run by the runtime's Predictor (the same path as predict_batch)."""

    platform = "tvmopt_tvm"
    version = "1"

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        from ..runtime import load

        self.predictor = load(path)
        manifest = self.predictor.artifact.manifest
        self.name = name or manifest.model.name
        self.inputs = self.predictor.inputs
        self.outputs = self.predictor.outputs
        self.batch_dim = self.predictor.batch_dim
        self.max_batch_size = self.predictor.max_batch_size
        self.description = f"{manifest.model.name} for {manifest.target.name}"

    def run_many(self, requests: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
        return self.predictor.run_many(requests)

    def warm_up(self) -> bool:
        return self.predictor.warm_up()


def parse_model_arg(text: str) -> tuple[str | None, Path]:
    """'NAME=PATH' or 'PATH' -> (name or None, path)."""
    name, sep, path = text.partition("=")
    if sep and NAME.match(name) and not Path(text).exists():
        return name, Path(path)
    return None, Path(text)


def check_model_arg(text: str) -> str:
    """Fail fast, without loading, on a model argument that cannot be served (for a supervisor
    that loads its models only in worker processes); returns the model's name."""
    name, path = parse_model_arg(text)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise ArtifactError(f"{path}: no such ONNX file")
        return name or path.stem
    from ..runtime import check_runs_here, read_artifact

    artifact = read_artifact(path)
    check_runs_here(artifact)
    return name or artifact.manifest.model.name


def load_model(text: str) -> ServedModel:
    """The model named by a command-line argument: an artifact directory (tvmopt's runtime), or
    an .onnx file (ONNX Runtime, for comparisons); 'NAME=PATH' renames it."""
    name, path = parse_model_arg(text)
    if path.suffix == ".onnx":
        from .ort_backend import OrtModel

        return OrtModel(path, name)
    return ArtifactModel(path, name)


def load_models(args: Sequence[str]) -> list[ServedModel]:
    """Load every model argument (names must be unique and URL-safe)."""
    models = [load_model(a) for a in args]
    seen: dict[str, str] = {}
    for arg, model in zip(args, models):
        if not NAME.match(model.name):
            raise ArtifactError(f"{arg}: model name '{model.name}' cannot be part of a URL; serve it as NAME={arg}")
        if model.name in seen:
            raise ArtifactError(f"{arg} and {seen[model.name]} are both named '{model.name}'; "
                                f"rename one: NAME={arg}")
        seen[model.name] = arg
    return models


def warm_up_model(model: ServedModel) -> None:
    """`model.warm_up()`, logged; a failure is not fatal (the model's requests report their errors)."""
    try:
        if not model.warm_up():
            log.info("%s: not warmed up (symbolic input dims: no inputs to make)", model.name)
    except Exception as err:  # noqa: BLE001 - whatever the model raises on the warm-up inputs
        log.warning("%s: warm-up failed (%s); serving it anyway", model.name, last_line(err))

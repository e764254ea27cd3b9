"""The import stage: ONNX files, torch.nn.Modules and .pt2 programs -> Model (Relax IRModule + specs).

Also home of the models tvmopt brings itself: the benchmark zoo and the bundled example.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ModelImportError, require
from ..model import Model
from ..specs import Dim

ShapeOverrides = Mapping[str, Sequence[Dim]]

__all__ = ["import_model", "Model"]


def import_model(
    source: Any,
    *,
    input_shapes: ShapeOverrides | None = None,
    example_inputs: Sequence[Any] | Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Model:
    """Import an ONNX path, a .pt2 path, or a torch.nn.Module (with `example_inputs`).

    `input_shapes` fixes dynamic dims, e.g. {"input_ids": (1, 128)}; unknown names are errors.
    `example_inputs` as a dict passes them to forward() by keyword, and the model's inputs take
    those names (a forward(*args) module otherwise gets args_0, args_1, ...).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ModelImportError(f"{path}: no such file")
        if path.is_dir():
            raise ModelImportError(f"{path}: is a directory, expected a .onnx or .pt2 file")
        if path.suffix == ".pt2":
            from .torch import import_pt2

            return import_pt2(path, input_shapes, name)
        from .onnx import import_onnx

        return import_onnx(path, input_shapes, name)
    torch = require("torch", "torch")
    if isinstance(source, torch.nn.Module):
        if example_inputs is None:
            raise ModelImportError(
                f"torch module {type(source).__name__}: pass example_inputs=(tensor, ...) to trace it"
            )
        from .torch import import_module

        if not isinstance(example_inputs, Mapping):
            example_inputs = tuple(example_inputs)
        return import_module(source, example_inputs, input_shapes, name)
    raise ModelImportError(
        f"cannot import a {type(source).__name__}: expected an ONNX/.pt2 path or a torch.nn.Module"
    )

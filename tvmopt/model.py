"""Model: a Relax IRModule plus the input/output specs a user and an artifact need."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import tvm

Dim = Union[int, str]  # an int, or the name of a symbolic (dynamic) dimension


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output; str dims are symbolic."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        return "x".join(str(d) for d in self.shape) or "scalar"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @staticmethod
    def from_json(obj: dict) -> "TensorSpec":
        return TensorSpec(str(obj["name"]), tuple(obj["shape"]), str(obj["dtype"]))


@dataclass(frozen=True, eq=False)
class Model:
    """An imported model: Relax `mod` (function "main"), its inputs/outputs and provenance."""

    mod: tvm.IRModule
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    name: str
    source: str  # file path, or "torch.nn.Module <ClassName>"
    format: str  # "onnx" | "torch" | "pt2"
    sha256: str  # of the source file, or of the exported program's text
    params: dict = field(default_factory=dict)

    @property
    def is_static(self) -> bool:
        return all(spec.is_static for spec in self.inputs)

    def dynamic_dims(self) -> list[tuple[str, int, str]]:
        """(input name, axis, dim name) for each symbolic dimension."""
        return [
            (spec.name, axis, str(dim))
            for spec in self.inputs
            for axis, dim in enumerate(spec.shape)
            if not isinstance(dim, int)
        ]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_shape(text: str) -> tuple[str, tuple[Dim, ...]]:
    """Parse a CLI shape override 'NAME:1x3x224x224' (a non-integer dim stays symbolic)."""
    from .errors import InputSpecError

    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise InputSpecError(f"--input-shape '{text}': expected NAME:DIMS, e.g. input:1x3x224x224")
    out: list[Dim] = []
    for part in dims.lower().split("x") if dims else []:
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
        elif part.isidentifier():
            out.append(part)
        else:
            raise InputSpecError(f"--input-shape '{text}': dim '{part}' is not an integer")
    return name, tuple(out)

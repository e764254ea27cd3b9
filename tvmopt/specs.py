"""TensorSpec: name, shape and dtype of a model input or output; pure Python, shared by every stage.

The runtime reads these from an artifact's manifest without importing the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

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


def signature(specs: "tuple[TensorSpec, ...] | list[TensorSpec]") -> str:
    """`name: dtype[shape], ...` as error messages and `inspect` show it."""
    return ", ".join(f"{s.name}: {s.dtype}[{s.shape_str()}]" for s in specs)


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

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


@dataclass(frozen=True)
class BatchBuckets:
    """Batch sizes compiled as static copies of the model, one VM function each (e.g. main_b4).

    Inputs and outputs keep the batch dim `dim` (axis 0) symbolic; a batch of any size runs in
    the buckets that run it cheapest, padded where that pays, outputs sliced back
    (runtime/batching.py).
    """

    dim: str
    sizes: tuple[int, ...]
    functions: tuple[str, ...]  # one per size, in the same order

    @staticmethod
    def named(dim: str, sizes: "tuple[int, ...] | list[int]") -> "BatchBuckets":
        """Buckets for `sizes` (sorted, unique) with tvmopt's function names main_b<size>."""
        ordered = tuple(sorted(set(int(s) for s in sizes)))
        return BatchBuckets(dim, ordered, tuple(f"main_b{s}" for s in ordered))

    @property
    def largest(self) -> int:
        return self.sizes[-1]

    def fit(self, rows: int) -> int:
        """The smallest bucket holding `rows` rows (the largest one if none does)."""
        return next((s for s in self.sizes if s >= rows), self.sizes[-1])

    def function(self, size: int) -> str:
        return self.functions[self.sizes.index(size)]

    def to_json(self) -> dict:
        return {"dim": self.dim, "buckets": [{"size": s, "function": f} for s, f in zip(self.sizes, self.functions)]}

    @staticmethod
    def from_json(obj: dict | None) -> "BatchBuckets | None":
        if not obj:
            return None
        buckets = sorted(((int(b["size"]), str(b["function"])) for b in obj["buckets"]))
        if not buckets or buckets[0][0] < 1:
            raise ValueError("batch_buckets needs at least one size >= 1")
        return BatchBuckets(str(obj["dim"]), tuple(b[0] for b in buckets), tuple(b[1] for b in buckets))


def signature(specs: "tuple[TensorSpec, ...] | list[TensorSpec]") -> str:
    """`name: dtype[shape], ...` as error messages and `inspect` show it."""
    return ", ".join(f"{s.name}: {s.dtype}[{s.shape_str()}]" for s in specs)


SHAPE_SYNTAX = ("NAME:DIMS with dims separated by 'x' or ',', e.g. input:1x3x224x224 or input_ids:1,128; "
                "a name instead of a number keeps a dynamic dim symbolic, e.g. input_ids:batch,128")


def parse_shape(text: str) -> tuple[str, tuple[Dim, ...]]:
    """Parse a CLI shape override 'NAME:1x3x224x224' or 'NAME:1,3,224,224' (a name keeps a dim symbolic).

    Commas always separate. An 'x' separates only where a number meets it ('1x128', 'batchx128',
    '1xseq'), so a dim name containing x ('max_batch', 'maxb') works without commas; two names
    need a comma ('batch,seq').
    """
    from .errors import InputSpecError

    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise InputSpecError(f"--input-shape '{text}': expected {SHAPE_SYNTAX}")
    if not dims.strip():
        raise InputSpecError(f"--input-shape '{text}': no dims after ':'; expected {SHAPE_SYNTAX}")
    out: list[Dim] = []
    for part in _split_dims(dims):
        if not part:
            raise InputSpecError(f"--input-shape '{text}': an empty dim; expected {SHAPE_SYNTAX}")
        if part.isdigit():
            if int(part) == 0:
                raise InputSpecError(f"--input-shape '{text}': dim {len(out)} is 0; sizes must be positive")
            out.append(int(part))
        elif part.isidentifier():
            out.append(part)
        else:
            raise InputSpecError(f"--input-shape '{text}': dim '{part}' is neither a positive integer nor a "
                                 f"name; expected {SHAPE_SYNTAX}")
    return name, tuple(out)


def parse_shapes(texts: "list[str] | tuple[str, ...]") -> dict[str, tuple[Dim, ...]]:
    """Every --input-shape of a command line, by input name; an input named twice is an error."""
    from .errors import InputSpecError

    shapes: dict[str, tuple[Dim, ...]] = {}
    for text in texts:
        name, dims = parse_shape(text)
        if name in shapes:
            raise InputSpecError(f"--input-shape names input '{name}' twice ({'x'.join(map(str, shapes[name]))} "
                                 f"and {'x'.join(map(str, dims))}); give each input once")
        shapes[name] = dims
    return shapes


def _split_dims(dims: str) -> list[str]:
    """Split on ',' and on every 'x' that has a digit on at least one side and text on both."""
    parts: list[str] = []
    for chunk in dims.split(","):
        chunk = "".join(chunk.split())  # '1 x 16' is 1x16
        start = 0
        for i, char in enumerate(chunk):
            if char in "xX" and 0 < i < len(chunk) - 1 and (chunk[i - 1].isdigit() or chunk[i + 1].isdigit()):
                parts.append(chunk[start:i])
                start = i + 1
        parts.append(chunk[start:])
    return parts

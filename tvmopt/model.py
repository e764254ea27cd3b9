"""Model: what the import stage hands to the optimize, tune and compile stages.

A Relax IRModule (function "main") plus the input/output specs a user and an artifact need,
and where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .specs import BatchBuckets, Dim, TensorSpec

if TYPE_CHECKING:
    import tvm

__all__ = ["Model", "TensorSpec", "Dim"]


@dataclass(frozen=True, eq=False)
class Model:
    """An imported model: Relax `mod` (function "main"), its inputs/outputs and provenance."""

    mod: "tvm.IRModule"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    name: str
    source: str  # file path, or "torch.nn.Module <ClassName>"
    format: str  # "onnx" | "torch" | "pt2"
    sha256: str  # of the source file, or of the exported program's text
    # Set by compiler.buckets.with_batch_buckets: `mod` then holds one static function per batch
    # size (main_b1, main_b4, ...) instead of "main", and the batch dim counts as static.
    batch_buckets: BatchBuckets | None = None

    @property
    def is_static(self) -> bool:
        return not self.dynamic_dims()

    def dynamic_dims(self) -> list[tuple[str, int, str]]:
        """(input name, axis, dim name) for each symbolic dimension (a bucketed batch dim is static)."""
        bucketed = self.batch_buckets.dim if self.batch_buckets else None
        return [
            (spec.name, axis, str(dim))
            for spec in self.inputs
            for axis, dim in enumerate(spec.shape)
            if not isinstance(dim, int) and not (axis == 0 and dim == bucketed)
        ]

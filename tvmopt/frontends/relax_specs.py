"""Read input/output specs off an imported Relax function (both frontends produce one).

TVM 0.27 calls Relax's struct info `ty` (TensorType, TupleType); these helpers keep that here.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .._compat import IntImm, tirx
from ..specs import TensorSpec


def symbolic_dim(name: str):
    """A symbolic int64 dimension for the ONNX frontend's shape_dict."""
    return tirx.Var(name, "int64")


def input_specs(func: relax.Function) -> tuple[TensorSpec, ...]:
    """One TensorSpec per tensor parameter of a Relax function; symbolic dims as str."""
    return tuple(TensorSpec(p.name, _shape(p.ty), str(getattr(p.ty, "dtype", ""))) for p in func.params)


def output_specs(mod: tvm.IRModule, names: list[str]) -> tuple[TensorSpec, ...]:
    """One TensorSpec per tensor "main" returns (nested tuples flattened), named by `names` when
    they are as many, else output0, output1, ..."""
    leaves: list[tuple[tuple, str]] = []

    def walk(ty) -> None:
        if isinstance(ty, relax.TupleType):
            for item in ty.fields:
                walk(item)
        elif isinstance(ty, relax.TensorType):
            leaves.append((_shape(ty), str(ty.dtype)))

    walk(mod["main"].ret_ty)
    if len(names) != len(leaves):
        names = [f"output{i}" for i in range(len(leaves))]
    return tuple(TensorSpec(n, shape, dtype) for n, (shape, dtype) in zip(names, leaves))


def _shape(ty) -> tuple:
    shape = getattr(ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return ()
    return tuple(int(d) if isinstance(d, IntImm) else str(d) for d in shape.values)

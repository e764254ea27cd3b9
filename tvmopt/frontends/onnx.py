"""Import ONNX files into a Model through TVM's Relax ONNX frontend, with its workarounds.

Errors say which file, which node or input, and what was expected, in one line.
"""

from __future__ import annotations

import gc
from pathlib import Path
import numpy as np

from .._files import sha256_file
from ..errors import InputSpecError, ModelImportError, UnsupportedOperatorError, last_line
from ..model import Model
from ..native_output import captured
from ..specs import Dim, TensorSpec
from . import ShapeOverrides
from .relax_specs import output_specs, symbolic_dim


def import_onnx(path: Path, input_shapes: ShapeOverrides | None, name: str | None) -> Model:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise ModelImportError(
            f"{path}: not a readable ONNX model ({last_line(err)}); is the file truncated or of another format?"
        ) from err
    if not proto.graph.node:
        raise ModelImportError(f"{path}: the ONNX graph has no nodes (empty or not an ONNX model)")
    _check_operators(path, proto)

    initializers = {init.name for init in proto.graph.initializer}
    graph_inputs = [vi for vi in proto.graph.input if vi.name not in initializers]
    declared = {vi.name: (_dims(vi), _dtype(vi)) for vi in graph_inputs}
    shapes = _apply_overrides(path, {k: v[0] for k, v in declared.items()}, input_shapes)

    # Overridden inputs go to shape_dict; a str dim stays symbolic (one tir.Var per name).
    # With any override, every input of known rank goes there too: the frontend makes its own
    # tir.Var per dim name, which would be a second, unrelated "seq" beside ours.
    sym: dict = {}
    shape_dict = {
        k: [d if isinstance(d, int) else sym.setdefault(d, symbolic_dim(d)) for d in shapes[k]]
        for k in shapes
        if input_shapes and (k in input_shapes or shapes[k])
    }
    static = all(isinstance(d, int) for dims in shapes.values() for d in dims)
    try:
        mod = _convert(proto, shape_dict)
    except Exception as err:  # noqa: BLE001 - the frontend raises anything
        if not static:
            dims = ", ".join(f"{n}:{_fmt(d)}" for n, d in shapes.items() if not all(isinstance(x, int) for x in d))
            raise ModelImportError(
                f"{path}: TVM's ONNX frontend failed {last_line(err)} (the model has dynamic dims {dims}; "
                "fixing them with --input-shape often lets shape arithmetic fold away)"
            ) from err
        try:  # shape arithmetic (dynamo exporter) folds to constants once shapes are static
            folded = fold_constants(proto, {n: tuple(d) for n, d in shapes.items()})
            mod = _convert(folded, shape_dict)
        except Exception:  # noqa: BLE001 - report the original failure, not the retry's
            raise ModelImportError(f"{path}: TVM's ONNX frontend failed {last_line(err)}") from err
    else:
        if static and unknown_shapes(mod):
            # Converted, but some tensors lost their shapes: the legacy exporter computes Slice
            # bounds (torch's chunk() in ShuffleNet) from Shape/Div chains, which TVM's Slice
            # takes as run-time values; the build then fails in emit_te ("only supports Tensor
            # that has ShapeExpr shape"). Folded with the static input shapes they are constants.
            try:
                folded = _convert(fold_constants(proto, {n: tuple(d) for n, d in shapes.items()}), shape_dict)
            except Exception:  # noqa: BLE001 - keep the first conversion
                folded = None
            if folded is not None and unknown_shapes(folded) < unknown_shapes(mod):
                mod = folded
    inputs = tuple(TensorSpec(n, tuple(shapes[n]), declared[n][1]) for n in declared)
    params = mod["main"].params
    if len(params) != len(inputs):
        raise ModelImportError(
            f"{path}: the converted graph takes {len(params)} inputs, the ONNX graph declares {len(inputs)}"
        )
    return Model(
        mod=mod,
        inputs=inputs,
        outputs=output_specs(mod, [vi.name for vi in proto.graph.output]),
        name=name or path.stem,
        source=str(path),
        format="onnx",
        sha256=sha256_file(path),
    )


# --------------------------------------------------------------------------- TVM's ONNX frontend


def _convert(proto, shape_dict: dict):
    """ONNX ModelProto -> Relax (weights become constants; input dtypes from the graph).

    Raises RuntimeError whose text names the node that failed ("converting a Reshape node
    'node_view': ...").
    """
    from .onnx_importer import NodeConversionError, convert

    with captured():
        try:
            return convert(proto, shape_dict)
        except NodeConversionError as err:
            message = f"converting a {err.op_type} node '{err.node}': {err.reason}"
        except Exception as err:  # noqa: BLE001 - the frontend raises anything
            message = last_line(err)
        # The traceback's frames hold the importer's BlockBuilder, whose destructor prints a C++
        # warning; collect it now, while output is still captured.
        gc.collect()
    raise RuntimeError(message)


def unknown_shapes(mod) -> int:
    """How many tensors bound in "main" have no known shape (only a rank, or not even that)."""
    from tvm import relax

    count = 0
    body = mod["main"].body
    for block in getattr(body, "blocks", []):
        for binding in block.bindings:
            ty = binding.var.ty
            if isinstance(ty, relax.TensorType) and not isinstance(ty.shape, relax.ShapeExpr):
                count += 1
    return count


def fold_constants(proto, static_shapes: dict[str, tuple[int, ...]]):
    """Pin input dims and fold shape arithmetic to constants (onnxscript's optimizer).

    Workaround: torch's dynamo ONNX exporter computes reshape targets from Shape/Gather/Mul
    chains; TVM's ONNX frontend turns those into PrimValues and then fails ("Reshape expects
    the input data to be a Tensor"). With static input shapes they fold to constants.
    """
    import onnx
    from onnxscript import optimizer

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for value in proto.graph.input:
        if value.name in static_shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, static_shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    return optimizer.optimize(proto)


def supported_ops() -> set[str]:
    """ONNX op types the import converts (TVM's frontend checks its map itself, but only reports
    op types; checking first lets the error name the nodes too)."""
    from .onnx_importer import supported_ops as importer_ops

    return importer_ops()


def _check_operators(path: Path, proto) -> None:
    """Report every operator TVM cannot convert, by op type and the nodes that use it."""
    known = supported_ops()
    unsupported: dict[str, list[str]] = {}
    for i, node in enumerate(proto.graph.node):
        if node.op_type not in known or node.domain not in ("", "ai.onnx"):
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            unsupported.setdefault(op, []).append(node.name or f"#{i}")
    if unsupported:
        parts = []
        for op, nodes in sorted(unsupported.items()):
            shown = ", ".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
            parts.append(f"{op} (node {shown})")
        raise UnsupportedOperatorError(
            f"{path}: TVM's ONNX frontend has no converter for: {'; '.join(parts)}"
            " (export the model from PyTorch and import the nn.Module / .pt2 instead,"
            " or replace these ops)"
        )


# --------------------------------------------------------------------------- shapes


def _dims(value_info) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for i, dim in enumerate(value_info.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or f"{value_info.name}_dim{i}")
    return tuple(dims)


def _dtype(value_info) -> str:
    import onnx

    elem = value_info.type.tensor_type.elem_type
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))


def _apply_overrides(path: Path, declared: dict[str, tuple[Dim, ...]], overrides: ShapeOverrides | None):
    shapes = dict(declared)
    for in_name, dims in (overrides or {}).items():
        if in_name not in declared:
            raise InputSpecError(
                f"{path}: --input-shape names '{in_name}', but the model's inputs are: {', '.join(declared)}"
            )
        want = declared[in_name]
        dims = tuple(dims)
        if len(dims) != len(want):
            raise InputSpecError(
                f"{path}: input '{in_name}' has rank {len(want)} ({_fmt(want)}), --input-shape gives {_fmt(dims)}"
            )
        for axis, (old, new) in enumerate(zip(want, dims)):
            # A fixed dim cannot become symbolic either (the weights fix it).
            if isinstance(old, int) and old != new:
                raise InputSpecError(
                    f"{path}: input '{in_name}' dim {axis} is fixed to {old} in the model, --input-shape gives {new}"
                )
        shapes[in_name] = dims
    # ONNX dims with one name are one dim: fixing input_ids to 1x8 also fixes attention_mask's
    # (batch, seq). Without this the other input keeps symbolic dims that never unify with the
    # fixed ones, and the build fails deep inside TVM.
    bound: dict[str, tuple[Dim, str]] = {}
    for in_name, dims in (overrides or {}).items():
        for old, new in zip(declared[in_name], dims):
            if isinstance(old, str):
                prev = bound.setdefault(old, (new, in_name))
                if prev[0] != new:
                    raise InputSpecError(
                        f"{path}: dim '{old}' is {prev[0]} for input '{prev[1]}' but {new} for input "
                        f"'{in_name}'; inputs that share a dim name must get the same size"
                    )
    for in_name, dims in declared.items():
        if in_name not in (overrides or {}):
            shapes[in_name] = tuple(bound[d][0] if isinstance(d, str) and d in bound else d for d in dims)
    return shapes


def _fmt(dims) -> str:
    return "x".join(str(d) for d in dims)

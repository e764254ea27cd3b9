"""Import ONNX files, torch.nn.Modules and saved .pt2 ExportedPrograms into a Relax Model.

Errors say which file, which node or input, and what was expected, in one line.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import tvm

from . import _tvm
from .errors import InputSpecError, ModelImportError, UnsupportedOperatorError, require
from .model import Dim, Model, TensorSpec, sha256_file, sha256_text

ShapeOverrides = Mapping[str, Sequence[Dim]]


def import_model(
    source: Any,
    *,
    input_shapes: ShapeOverrides | None = None,
    example_inputs: Sequence[Any] | None = None,
    name: str | None = None,
) -> Model:
    """Import an ONNX path, a .pt2 path, or a torch.nn.Module (with `example_inputs`).

    `input_shapes` fixes dynamic dims, e.g. {"input_ids": (1, 128)}; unknown names are errors.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ModelImportError(f"{path}: no such file")
        if path.is_dir():
            raise ModelImportError(f"{path}: is a directory, expected a .onnx or .pt2 file")
        if path.suffix == ".pt2":
            return _import_pt2(path, input_shapes, name)
        return _import_onnx(path, input_shapes, name)
    torch = require("torch", "torch")
    if isinstance(source, torch.nn.Module):
        if example_inputs is None:
            raise ModelImportError(
                f"torch module {type(source).__name__}: pass example_inputs=(tensor, ...) to trace it"
            )
        return _import_torch_module(source, tuple(example_inputs), input_shapes, name)
    raise ModelImportError(
        f"cannot import a {type(source).__name__}: expected an ONNX/.pt2 path or a torch.nn.Module"
    )


# --------------------------------------------------------------------------- ONNX


def _onnx_dims(value_info) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for i, dim in enumerate(value_info.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or f"{value_info.name}_dim{i}")
    return tuple(dims)


def _onnx_dtype(value_info) -> str:
    import onnx

    elem = value_info.type.tensor_type.elem_type
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))


def _import_onnx(path: Path, input_shapes: ShapeOverrides | None, name: str | None) -> Model:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise ModelImportError(
            f"{path}: not a readable ONNX model ({_one_line(err)}); is the file truncated or of another format?"
        ) from err
    if not proto.graph.node:
        raise ModelImportError(f"{path}: the ONNX graph has no nodes (empty or not an ONNX model)")
    _check_onnx_operators(path, proto)

    initializers = {init.name for init in proto.graph.initializer}
    graph_inputs = [vi for vi in proto.graph.input if vi.name not in initializers]
    declared = {vi.name: (_onnx_dims(vi), _onnx_dtype(vi)) for vi in graph_inputs}
    shapes = _apply_overrides(path, {k: v[0] for k, v in declared.items()}, input_shapes)

    # Overridden inputs go to shape_dict; a str dim stays symbolic (one tir.Var per name).
    # With any override, every input of known rank goes there too: the frontend makes its own
    # tir.Var per dim name, which would be a second, unrelated "seq" beside ours.
    sym: dict = {}
    shape_dict = {
        k: [d if isinstance(d, int) else sym.setdefault(d, _tvm.symbolic_dim(d)) for d in shapes[k]]
        for k in shapes
        if input_shapes and (k in input_shapes or shapes[k])
    }
    static = all(isinstance(d, int) for dims in shapes.values() for d in dims)
    try:
        mod = _convert_onnx(proto, shape_dict)
    except Exception as err:  # noqa: BLE001 - the frontend raises anything
        if not static:
            dims = ", ".join(f"{n}:{_fmt(d)}" for n, d in shapes.items() if not all(isinstance(x, int) for x in d))
            raise ModelImportError(
                f"{path}: TVM's ONNX frontend failed {_one_line(err)} (the model has dynamic dims {dims}; "
                "fixing them with --input-shape often lets shape arithmetic fold away)"
            ) from err
        try:  # shape arithmetic (dynamo exporter) folds to constants once shapes are static
            folded = _tvm.fold_onnx_constants(proto, {n: tuple(d) for n, d in shapes.items()})
            mod = _convert_onnx(folded, shape_dict)
        except Exception:  # noqa: BLE001 - report the original failure, not the retry's
            raise ModelImportError(f"{path}: TVM's ONNX frontend failed {_one_line(err)}") from err
    inputs = tuple(TensorSpec(n, tuple(shapes[n]), declared[n][1]) for n in declared)
    _check_relax_inputs(path, mod, inputs)
    output_names = [vi.name for vi in proto.graph.output]
    return Model(
        mod=mod,
        inputs=inputs,
        outputs=_output_specs(mod, output_names),
        name=name or path.stem,
        source=str(path),
        format="onnx",
        sha256=sha256_file(path),
    )


def _convert_onnx(proto, shape_dict: dict):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frontend warns on every symbolic dim
        return _tvm.onnx_to_relax(proto, shape_dict or None)


def _check_onnx_operators(path: Path, proto) -> None:
    """Report every operator TVM cannot convert, by op type and the nodes that use it."""
    known = _tvm.onnx_supported_ops()
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


# --------------------------------------------------------------------------- PyTorch


def _import_torch_module(module, example_inputs: tuple, input_shapes, name: str | None) -> Model:
    import torch

    if input_shapes:
        raise InputSpecError(
            "input_shapes applies to ONNX models; for a torch module pass example_inputs of the wanted shape"
        )
    label = type(module).__name__
    try:
        exported = torch.export.export(module.eval(), example_inputs)
    except Exception as err:  # noqa: BLE001 - torch.export raises many kinds
        raise ModelImportError(f"torch module {label}: torch.export failed: {_one_line(err)}") from err
    return _from_exported(exported, f"torch.nn.Module {label}", "torch", name or label.lower())


def _import_pt2(path: Path, input_shapes, name: str | None) -> Model:
    torch = require("torch", "torch")
    if input_shapes:
        raise InputSpecError(f"{path}: input_shapes applies to ONNX models; a .pt2 has its shapes fixed at export")
    try:
        exported = torch.export.load(str(path))
    except Exception as err:  # noqa: BLE001
        raise ModelImportError(f"{path}: not a readable torch.export .pt2 file ({_one_line(err)})") from err
    return _from_exported(exported, str(path), "pt2", name or path.stem, sha256_file(path))


def _from_exported(exported, source: str, fmt: str, name: str, sha: str | None = None) -> Model:
    try:
        mod = _tvm.exported_program_to_relax(exported)
    except Exception as err:  # noqa: BLE001
        raise ModelImportError(f"{source}: TVM's PyTorch frontend failed: {_one_line(err)}") from err
    inputs = tuple(TensorSpec(n, shape, dtype) for n, shape, dtype in _tvm.param_specs(mod["main"]))
    return Model(
        mod=mod,
        inputs=inputs,
        outputs=_output_specs(mod, []),
        name=name,
        source=source,
        format=fmt,
        sha256=sha or sha256_text(str(exported.graph_module.code) + str(inputs)),
    )


# --------------------------------------------------------------------------- shapes


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


def _check_relax_inputs(path: Path, mod: tvm.IRModule, inputs: tuple[TensorSpec, ...]) -> None:
    params = mod["main"].params
    if len(params) != len(inputs):
        raise ModelImportError(
            f"{path}: the converted graph takes {len(params)} inputs, the ONNX graph declares {len(inputs)}"
        )


def _output_specs(mod: tvm.IRModule, names: list[str]) -> tuple[TensorSpec, ...]:
    leaves = _tvm.output_types(mod["main"])
    if len(names) != len(leaves):
        names = [f"output{i}" for i in range(len(leaves))]
    return tuple(TensorSpec(n, shape, dtype) for n, (shape, dtype) in zip(names, leaves))


def _fmt(dims) -> str:
    return "x".join(str(d) for d in dims)


def _one_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(err).__name__
    return msg if len(msg) < 300 else msg[:297] + "..."

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
    proto = read_onnx(path)
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
        # Shape arithmetic (dynamo exporter) folds to constants once shapes are static; chains of
        # constants (the legacy exporter's pads) fold with dynamic dims too.
        fixed = {n: tuple(d) for n, d in shapes.items() if all(isinstance(x, int) for x in d)}
        try:
            mod = _convert(fold_constants(proto, fixed), shape_dict)
        except Exception:  # noqa: BLE001 - report the original failure, not the retry's
            if static:
                raise ModelImportError(f"{path}: TVM's ONNX frontend failed {last_line(err)}") from err
            dims = ", ".join(f"{n}:{_fmt(d)}" for n, d in shapes.items() if n not in fixed)
            raise ModelImportError(
                f"{path}: TVM's ONNX frontend failed {last_line(err)} (the model has dynamic dims {dims}; "
                "fixing them with --input-shape often lets shape arithmetic fold away)"
            ) from err
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


# --------------------------------------------------------------------------- reading the file

# ModelProto's fields (onnx.proto) and their protobuf wire types: 0 varint, 2 length-delimited.
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_GRAPH_FIELD = 7


def read_onnx(path: Path):
    """The ModelProto of `path` with its external data; every failure a ModelImportError naming the file."""
    import onnx
    from google.protobuf.message import DecodeError

    check_onnx_header(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise ModelImportError(
            f"{path}: not a readable ONNX model ({last_line(err)}); is the file truncated or of another format?"
        ) from err
    _load_external_data(path, proto)
    return proto


def check_onnx_header(path: Path, max_fields: int = 10_000) -> None:
    """Walk the file's top-level protobuf fields (seeking past their contents) before anything reads it
    whole: a multi-GB file of zeros or another format is refused at once, not after loading it."""
    size = path.stat().st_size
    expected = "is the file truncated or of another format?"
    if size == 0:
        raise ModelImportError(f"{path}: empty file, not an ONNX model")
    graph = False
    with open(path, "rb") as stream:
        for _ in range(max_fields):
            offset = stream.tell()
            if offset >= size:
                break
            tag = _varint(stream)
            field, wire = (tag >> 3, tag & 7) if tag is not None else (0, -1)
            if field == 0 or wire not in (0, 1, 2, 5) or _MODEL_FIELDS.get(field, wire) != wire:
                raise ModelImportError(f"{path}: not a readable ONNX model (byte {offset} does not start a "
                                       f"field of an ONNX ModelProto); {expected}")
            if wire == 0:
                length = 0 if _varint(stream) is not None else size
            elif wire == 2:
                value = _varint(stream)
                length = value if value is not None else size
            else:
                length = 8 if wire == 1 else 4
            if stream.tell() + length > size:
                raise ModelImportError(f"{path}: not a readable ONNX model (field {field} at byte {offset} runs "
                                       f"past the end of the file, {size} bytes); {expected}")
            stream.seek(length, 1)
            graph = graph or field == _GRAPH_FIELD
        else:
            return  # many top-level fields, all well-formed so far: let the parser decide
    if not graph:
        raise ModelImportError(f"{path}: not an ONNX model (no graph in it); {expected}")


def _varint(stream) -> int | None:
    """One protobuf varint, or None at end of file or after 10 bytes."""
    value = 0
    for shift in range(0, 70, 7):
        byte = stream.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
    return None


def _load_external_data(path: Path, proto) -> None:
    """Read the tensors stored beside the model; a missing file is named, with where it was expected."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, load_external_data_for_model

    external = [t for t in _get_all_tensors(proto) if t.HasField("data_location") and t.data_location == t.EXTERNAL]
    if not external:
        return
    for tensor in external:
        location = ExternalDataInfo(tensor).location
        file = path.parent / location
        if not file.is_file():
            raise ModelImportError(
                f"{path}: tensor '{tensor.name}' keeps its data in the external file '{location}', which is "
                f"missing (expected at {file}); copy it beside the model"
            )
    try:
        load_external_data_for_model(proto, str(path.parent))
    except Exception as err:  # noqa: BLE001 - onnx raises ValidationError, OSError, ValueError
        raise ModelImportError(f"{path}: cannot read its external data ({last_line(err)}); "
                               "is an external data file truncated or from another model?") from err


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
    return _fold_small_constants(optimizer.optimize(proto))


# Ops never folded: quantization must stay visible to the int8 path, random ops are not constant.
_NOT_FOLDED = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "RandomNormal",
               "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
_MAX_FOLDED_ELEMENTS = 1 << 16  # shape arithmetic is small; weights are left to TVM's FoldConstant


def _fold_small_constants(proto):
    """Evaluate nodes whose inputs are all constants and whose outputs are small (ONNX's reference
    evaluator), replacing them with initializers.

    Workaround: the legacy exporter builds F.pad's pads from ConstantOfShape -> Concat ->
    Reshape -> Slice -> Transpose -> Cast on constants, which onnxscript's optimizer leaves;
    TVM's Pad converter then sees a run-time tensor ("Dynamic pads are not supported yet").
    """
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    opsets = {o.domain or "": o.version for o in proto.opset_import}
    graph = proto.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    keep, folded = [], []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            try:
                known[node.output[0]] = ReferenceEvaluator(node, opsets=opsets).run(None, {})[0]
            except Exception:  # noqa: BLE001 - a Constant the reference cannot read stays a node
                pass
            keep.append(node)
            continue
        inputs = [i for i in node.input if i]
        if (node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDED or not inputs
                or any(i not in known for i in inputs) or any(a.g.node or a.graphs for a in node.attribute)):
            keep.append(node)
            continue
        try:
            values = ReferenceEvaluator(node, opsets=opsets).run(None, {i: known[i] for i in inputs})
        except Exception:  # noqa: BLE001 - whatever the reference cannot run stays for TVM
            keep.append(node)
            continue
        if any(np.asarray(v).size > _MAX_FOLDED_ELEMENTS for v in values):
            keep.append(node)
            continue
        for name, value in zip(node.output, values):
            known[name] = np.asarray(value)
            folded.append(numpy_helper.from_array(np.asarray(value), name))
    if folded:
        used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
        # Constant nodes whose only readers were folded go too.
        keep = [n for n in keep if n.op_type != "Constant" or any(o in used for o in n.output)]
        del graph.node[:]
        graph.node.extend(keep)
        graph.initializer.extend(t for t in folded if t.name in used)
    return proto


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
            # A name with an 'x' between two names reads as one dim: '1,batchxseq' needs commas.
            hint = (" (dims are separated by 'x' next to a number, or by ','; write names apart with commas, "
                    "e.g. batch,seq)" if any(isinstance(d, str) and "x" in d.lower() for d in dims) else "")
            raise InputSpecError(
                f"{path}: input '{in_name}' has rank {len(want)} ({_fmt(want)}), --input-shape gives "
                f"{len(dims)} dim(s) ({_fmt(dims)}){hint}"
            )
        for axis, (old, new) in enumerate(zip(want, dims)):
            # A fixed dim cannot become symbolic either (the weights fix it).
            if isinstance(old, int) and isinstance(new, str):
                raise InputSpecError(
                    f"{path}: input '{in_name}' dim {axis}: --input-shape gives '{new}', which is not a number "
                    f"(a name keeps only a dynamic dim symbolic; the model fixes this one to {old})"
                )
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

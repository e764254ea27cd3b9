"""TVM's Relax ONNX importer with tvmopt's converter overrides, and the node it failed on.

`from_onnx` takes no custom converter map, so we drive TVM's own `ONNXGraphImporter` (the class
`from_onnx` instantiates) through a subclass: an op type listed in `onnx_converters.OVERRIDES`
is converted by tvmopt, every other op by TVM's converter, and the node being converted is
remembered so a failure names it (TVM only prints the op type).
"""

from __future__ import annotations

import warnings

from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _frontend

from .onnx_converters import OVERRIDES


class NodeConversionError(RuntimeError):
    """TVM's frontend failed on one node: `node` and `op_type` say which."""

    def __init__(self, op_type: str, node: str, reason: str):
        super().__init__(f"converting {op_type} node '{node}': {reason}")
        self.op_type, self.node, self.reason = op_type, node, reason


class _Importer(_frontend.ONNXGraphImporter):
    current: tuple[str, str] | None = None

    def _check_for_unsupported_ops(self, graph) -> None:
        """tvmopt checks operators itself before converting (frontends/onnx.py names the nodes)."""

    def _convert_operator(self, op_name: str, inputs, attrs: dict, opset: int):
        self.current = (op_name, str(attrs.get("tvm_custom", {}).get("name", "")))
        override = OVERRIDES.get(op_name)
        if override is None:
            sym = super()._convert_operator(op_name, inputs, attrs, opset)
        else:
            sym = override.get_converter(opset)(self.bb, inputs, attrs, [self._nodes, self._params])
            sym = self.bb.normalize(sym) if isinstance(sym, relax.Expr) else sym
        self.current = None  # a later failure outside any node must not blame this one
        return sym


def supported_ops() -> set[str]:
    """ONNX op types this importer converts ("Constant" and "If" are handled outside the map)."""
    return set(_frontend._get_convert_map()) | set(OVERRIDES) | {"Constant", "If"}


def convert(proto, shape_dict: dict | None):
    """ONNX ModelProto -> Relax IRModule (weights as constants). Raises NodeConversionError
    naming the node when a converter fails, the original exception otherwise."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    importer = _Importer(shape_dict or None, "float32", keep_params_in_input=False, sanitize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frontend warns on every symbolic dim
        try:
            return importer.from_onnx(proto.graph, opset)
        except Exception as err:  # noqa: BLE001 - converters raise anything
            if importer.current is None:
                raise
            reason = _reason(err)
            op_type, node = importer.current
            raise NodeConversionError(op_type, node or "(unnamed)", reason) from err


def _reason(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__

"""The Open Inference Protocol v2 (KServe, Triton) over HTTP/REST: decode and check an inference
request against a model's tensors, encode the response, with the binary tensor data extension.

Every problem with a request is a RequestError whose message names the input or output and what
was expected; the server answers it with its status and `{"error": message}`.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ..runtime.inputs import numpy_dtype
from ..specs import TensorSpec

# v2 datatype <-> numpy dtype. BYTES (strings) and BF16 have no numpy dtype our models take.
DATATYPES = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
}
V2_DATATYPE = {dtype: v2 for v2, dtype in DATATYPES.items()}
_V2_OF_NUMPY = {np.dtype(dtype): v2 for v2, dtype in DATATYPES.items()}  # str(np.dtype) takes 4.5 us
HEADER_LENGTH = "inference-header-content-length"


class RequestError(Exception):
    """A request the server cannot serve: HTTP status and a one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class TensorSignature(Protocol):
    """What a served model declares (tvmopt artifacts and the ONNX Runtime backend alike)."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch_dim: str | None


@dataclass(frozen=True)
class RequestedOutput:
    index: int  # into the model's outputs
    binary: bool
    classes: int = 0  # the classification extension: the top `classes` as "value:index" strings


@dataclass(frozen=True)
class InferRequest:
    """A checked request: one array per model input (in the model's order), its batch rows, and
    which outputs to return how."""

    id: str | None
    arrays: list[np.ndarray]
    rows: int
    outputs: tuple[RequestedOutput, ...]


def v2_datatype(dtype: str) -> str:
    return V2_DATATYPE.get(str(dtype), str(dtype).upper())


def v2_shape(spec: TensorSpec) -> list[int]:
    """The spec's shape as v2 metadata gives it: -1 for a dynamic dim."""
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def describe(spec: TensorSpec) -> str:
    return f"{spec.name} ({v2_datatype(spec.dtype)} {v2_shape(spec)})"


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding gzip/deflate (tritonclient's request_compression_algorithm), at most
    `limit` bytes out so a small compressed body cannot blow up in memory."""
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise RequestError(f"Content-Encoding '{encoding}' is not supported (gzip, deflate or none)")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise RequestError(f"the {encoding} request body is corrupt ({err})") from err
    if len(out) > limit:
        raise RequestError(f"the request body inflates to over the server's limit of {limit} bytes")
    return out


def decode_request(body: bytes, header_length: str | None, model: TensorSignature) -> InferRequest:
    """Parse a v2 inference request (JSON, or JSON header + binary tensors) and check every input
    against `model`'s inputs: names, datatypes, shapes, element counts, binary sizes."""
    json_end = _header_length(header_length, len(body))
    header = _parse_json(body[:json_end])
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("the request has no 'inputs' list")
    specs = {s.name: s for s in model.inputs}
    given: dict[str, np.ndarray] = {}
    offset = json_end
    dims: dict[str, tuple[int, str]] = {}  # symbolic dim -> (size, first input with it)
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError("each entry of 'inputs' needs a 'name'")
        name = item["name"]
        spec = specs.get(name)
        if spec is None:
            raise RequestError(f"unknown input '{name}'; model '{model.name}' takes: "
                               + ", ".join(describe(s) for s in model.inputs))
        if name in given:
            raise RequestError(f"input '{name}' is given twice")
        shape = _check_shape(item, spec, dims)
        datatype = item.get("datatype")
        expected = v2_datatype(spec.dtype)
        if datatype != expected:
            raise RequestError(f"input '{name}': datatype {datatype!r}, expected {expected}")
        array, offset = _tensor_data(item, spec, shape, body, offset)
        given[name] = array
    missing = [describe(s) for s in model.inputs if s.name not in given]
    if missing:
        raise RequestError(f"missing input(s): {', '.join(missing)}")
    if offset != len(body):
        raise RequestError(f"the body holds {len(body) - json_end} bytes of binary tensor data after the JSON "
                           f"header, the inputs' binary_data_size add up to {offset - json_end}")
    arrays = [given[s.name] for s in model.inputs]
    rows = int(arrays[0].shape[0]) if model.batch_dim is not None else 1
    request_id = header.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, arrays, rows,
                        _requested_outputs(header, model))


def encode_response(model_name: str, version: str, request: InferRequest, specs: Sequence[TensorSpec],
                    outputs: Sequence[np.ndarray], batched: bool = False) -> tuple[bytes, dict[str, str]]:
    """The v2 response body and headers: JSON data, or binary after a JSON header where asked.
    `batched`: axis 0 is the batch (the classification extension ranks each row on its own)."""
    entries, blobs = [], []
    for wanted in request.outputs:
        spec, array = specs[wanted.index], np.asarray(outputs[wanted.index], order="C")
        if wanted.classes:
            labels = top_classes(array, wanted.classes, batched)
            entry: dict[str, Any] = {"name": spec.name, "datatype": "BYTES", "shape": list(labels.shape)}
            if wanted.binary:
                blob = b"".join(len(b).to_bytes(4, "little") + b for b in labels.ravel())
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = [b.decode() for b in labels.ravel()]
            entries.append(entry)
            continue
        entry = {"name": spec.name, "datatype": _V2_OF_NUMPY.get(array.dtype) or v2_datatype(str(array.dtype)),
                 "shape": list(array.shape)}
        if wanted.binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    text = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return b"".join([text, *blobs]), {"content-type": "application/octet-stream",
                                      "inference-header-content-length": str(len(text))}


def top_classes(array: np.ndarray, k: int, batched: bool) -> np.ndarray:
    """Triton's classification extension: the `k` largest values of each row (of the whole tensor
    when not `batched`) as b"value:index" strings, largest first; shape [rows, k] or [k]."""
    scores = array.reshape(array.shape[0], -1) if batched and array.ndim > 1 else array.reshape(1, -1)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    labels = np.array([[f"{float(row[i]):f}:{int(i)}".encode() for i in top] for row, top in zip(scores, order)],
                      dtype=object)
    return labels if batched and array.ndim > 1 else labels[0]


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


# --------------------------------------------------------------------------- internals


def _header_length(value: str | None, body_length: int) -> int:
    if value is None:
        return body_length
    try:
        length = int(value)
    except ValueError:
        raise RequestError(f"Inference-Header-Content-Length {value!r} is not an integer") from None
    if not 0 < length <= body_length:
        raise RequestError(f"Inference-Header-Content-Length {length} does not fit a body of {body_length} bytes")
    return length


def _parse_json(text: bytes) -> dict:
    try:
        header = json.loads(text)
    except UnicodeDecodeError as err:
        raise RequestError(f"the request's JSON is not UTF-8 ({err.reason} at byte {err.start}); binary tensors "
                           "need the Inference-Header-Content-Length header") from None
    except json.JSONDecodeError as err:
        raise RequestError(f"malformed JSON in the request: {err.msg} at line {err.lineno} "
                           f"column {err.colno}") from None
    if not isinstance(header, dict):
        raise RequestError("the request's JSON must be an object with an 'inputs' list")
    return header


def _check_shape(item: dict, spec: TensorSpec, dims: dict[str, tuple[int, str]]) -> tuple[int, ...]:
    shape = item.get("shape")
    want = v2_shape(spec)
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise RequestError(f"input '{spec.name}': 'shape' must be a list of integers, expected {want}")
    if len(shape) != len(spec.shape) or any(isinstance(w, int) and w != d for w, d in zip(spec.shape, shape)):
        raise RequestError(f"input '{spec.name}': shape {shape}, expected {want}")
    if any(d < 1 for d in shape):
        raise RequestError(f"input '{spec.name}': shape {shape} has an empty or negative dim")
    for axis, (want_dim, got) in enumerate(zip(spec.shape, shape)):
        if isinstance(want_dim, str):
            first = dims.setdefault(want_dim, (got, spec.name))
            if first[0] != got:
                raise RequestError(f"input '{spec.name}': dim {axis} ('{want_dim}') is {got}, but input "
                                   f"'{first[1]}' has {first[0]}")
    return tuple(shape)


def _tensor_data(item: dict, spec: TensorSpec, shape: tuple[int, ...], body: bytes,
                 offset: int) -> tuple[np.ndarray, int]:
    """The input's array (JSON `data`, or its slice of the binary part) and the next binary offset."""
    dtype = numpy_dtype(spec.dtype)
    if dtype is None:  # no numpy dtype (bfloat16): np.dtype raises for it, as before
        dtype = np.dtype(spec.dtype)
    count = math.prod(shape)
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(f"input '{spec.name}': 'parameters' must be an object")
    if "shared_memory_region" in parameters:
        raise RequestError(f"input '{spec.name}': the shared-memory extension is not supported; send the data")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in item:
            raise RequestError(f"input '{spec.name}' has both 'data' and parameters.binary_data_size")
        expected = count * dtype.itemsize
        if not isinstance(size, int) or size != expected:
            raise RequestError(f"input '{spec.name}': binary_data_size {size}, but shape {list(shape)} of "
                               f"{v2_datatype(spec.dtype)} needs {expected} bytes")
        if offset + size > len(body):
            raise RequestError(f"input '{spec.name}': binary_data_size {size} bytes, but only "
                               f"{len(body) - offset} bytes of the body are left")
        return np.frombuffer(body, dtype, count, offset).reshape(shape), offset + size
    if "data" not in item:
        raise RequestError(f"input '{spec.name}' has neither 'data' nor parameters.binary_data_size")
    return _json_array(item["data"], spec, dtype, shape, count), offset


def _json_array(data: Any, spec: TensorSpec, dtype: np.dtype, shape: tuple[int, ...], count: int) -> np.ndarray:
    kind = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}[dtype.kind]
    bad = RequestError(f"input '{spec.name}': 'data' must be a (flat or nested) list of {count} "
                       f"{v2_datatype(spec.dtype)} {kind}")
    if not isinstance(data, list):
        raise bad
    try:
        array = np.array(data)
    except ValueError:  # ragged nesting
        raise bad from None
    if array.size != count:
        raise RequestError(f"input '{spec.name}': shape {list(shape)} needs {count} values, 'data' has {array.size}")
    allowed = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[dtype.kind]  # JSON ints are fine for floats
    if array.size and array.dtype.kind not in allowed:
        raise bad
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise RequestError(f"input '{spec.name}': values out of range for {v2_datatype(spec.dtype)} "
                               f"[{info.min}, {info.max}]")
    return array.astype(dtype, copy=False).reshape(shape)


def _requested_outputs(header: dict, model: TensorSignature) -> tuple[RequestedOutput, ...]:
    parameters = header.get("parameters") or {}
    binary_default = bool(parameters.get("binary_data_output", False)) if isinstance(parameters, dict) else False
    requested = header.get("outputs")
    if requested is None:
        return tuple(RequestedOutput(i, binary_default) for i in range(len(model.outputs)))
    if not isinstance(requested, list):
        raise RequestError("'outputs' must be a list")
    index = {s.name: i for i, s in enumerate(model.outputs)}
    out = []
    for item in requested:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in index:
            raise RequestError(f"unknown output {name!r}; model '{model.name}' returns: "
                               + ", ".join(describe(s) for s in model.outputs))
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise RequestError(f"output '{name}': 'parameters' must be an object")
        classes = params.get("classification", 0)
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
            raise RequestError(f"output '{name}': 'classification' must be a number of classes (an integer >= 1), "
                               f"got {classes!r}")
        if "shared_memory_region" in params:
            raise RequestError(f"output '{name}': the shared-memory extension is not supported")
        out.append(RequestedOutput(index[name], bool(params.get("binary_data", binary_default)), classes))
    return tuple(out)

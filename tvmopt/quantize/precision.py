"""Reduced floating-point precision: fp16 (weights and activations) and bf16 (weights).

fp16 uses ONNX Runtime's converter (`onnxruntime.transformers.float16`), keeping float32 graph
inputs and outputs so callers feed the same arrays; TVM compiles the fp16 graph (CUDA targets
gain from it). bf16 has no well-kept ONNX converter and few ONNX ops accept bfloat16, so we store
the float weights as bfloat16 and cast them back to float32 where they are used: half the file,
and the accuracy of bf16 weights; the compute stays fp32 (see scheme.py's warning).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import QuantizeError, last_line

MIN_WEIGHT_ELEMENTS = 16  # smaller float initializers (scales, epsilons, shapes) stay float32


def to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    except Exception as err:  # noqa: BLE001
        raise QuantizeError(f"{src}: fp16 conversion failed: {last_line(err)}") from err
    sort_nodes(model.graph)
    onnx.save(model, str(dst))


def sort_nodes(graph) -> None:
    """Order nodes so that each comes after the producers of its inputs.

    The fp16 converter appends the Casts of kept float32 inputs/outputs at the end of the node
    list; ONNX Runtime does not mind, TVM's ONNX frontend converts nodes in list order and fails
    on the first input not yet produced.
    """
    available = {vi.name for vi in graph.input} | {init.name for init in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node.input):
                available.update(node.output)
                ordered.append(node)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):  # a cycle, or inputs from outer scopes: keep them as they were
            ordered.extend(waiting)
            break
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def to_bf16_weights(src: Path, dst: Path) -> None:
    """Every float32 initializer of MIN_WEIGHT_ELEMENTS or more becomes bfloat16 + a Cast to float."""
    import ml_dtypes
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < MIN_WEIGHT_ELEMENTS:
            kept.append(init)
            continue
        values = numpy_helper.to_array(init).astype(ml_dtypes.bfloat16)
        stored = helper.make_tensor(f"{init.name}__bf16", TensorProto.BFLOAT16, list(init.dims),
                                    values.view(np.uint16).tobytes(), raw=True)
        kept.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_float"))
    if not casts:
        raise QuantizeError(f"{src}: no float32 weights to store as bfloat16")
    del graph.initializer[:]
    graph.initializer.extend(kept)
    converted = {cast.output[0] for cast in casts}  # old IR versions list initializers as inputs too
    inputs = [vi for vi in graph.input if vi.name not in converted]
    del graph.input[:]
    graph.input.extend(inputs)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))

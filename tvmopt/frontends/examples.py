"""The bundled example model, generated in code (fixed seed) so nothing is downloaded.

A small image classifier: conv3x3(16)-relu-conv3x3(32, stride 2)-relu-flatten-linear(10) on
1x3x32x32, written with onnx.helper (opset 17) so making it needs no PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EXAMPLE_PATH = Path("examples") / "small_cnn.onnx"


def write_small_cnn(path: str | Path = EXAMPLE_PATH, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [
        weight("conv1.w", 16, 3, 3, 3), weight("conv1.b", 16),
        weight("conv2.w", 32, 16, 3, 3), weight("conv2.b", 32),
        weight("fc.w", 10, 32 * 16 * 16), weight("fc.b", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tvmopt")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path

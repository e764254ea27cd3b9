"""The fp32 ONNX model a quantization starts from: the given file, or a torch module exported."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import ModelImportError, QuantizeError, last_line, require


def fp32_onnx(model: Any, output: Path, example_inputs: Sequence[Any] | None,
              input_names: Sequence[str] | None, output_names: Sequence[str] | None) -> Path:
    """An ONNX path as it is; a torch.nn.Module exported (opset 17) to `<output stem>.fp32.onnx`."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelImportError(f"{path}: no such file")
        if path.suffix != ".onnx":
            raise QuantizeError(f"{path}: quantize takes an ONNX file or a torch.nn.Module "
                                "(export a .pt2's module to ONNX first)")
        return path
    torch = require("torch", "torch")
    if not isinstance(model, torch.nn.Module):
        raise QuantizeError(f"cannot quantize a {type(model).__name__}: expected an ONNX path or a torch.nn.Module")
    if example_inputs is None:
        raise QuantizeError(f"torch module {type(model).__name__}: pass example_inputs=(tensor, ...) to export it")
    example = tuple(example_inputs)
    path = output.with_name(output.stem + ".fp32.onnx")
    names = list(input_names or [f"input{i}" if len(example) > 1 else "input" for i in range(len(example))])
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA fast path has no ONNX symbolic
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), example, str(path), input_names=names,
                              output_names=list(output_names) if output_names else None,
                              opset_version=17, dynamo=False)
    except Exception as err:  # noqa: BLE001
        raise ModelImportError(f"torch module {type(model).__name__}: ONNX export failed: {last_line(err)}") from err
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path

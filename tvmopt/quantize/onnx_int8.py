"""Int8 graph rewrites with ONNX Runtime's quantizer (`onnxruntime.quantization`).

- dynamic: weights int8 offline, activations quantized per call (DynamicQuantizeLinear +
  MatMulInteger; embedding tables as int8 Gather + DequantizeLinear).
- static: QDQ format (QuantizeLinear/DequantizeLinear pairs around each op) with activation
  ranges calibrated on sample inputs.

Both only emit ops TVM's ONNX frontend imports: dynamic quantization of Conv would produce
ConvInteger (no TVM converter), so dynamic mode quantizes MatMul/Gemm/Gather and leaves
convolutions in fp32 (static QDQ is the mode for CNNs).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from ..errors import QuantizeError, last_line, require
from .data import Samples
from .scheme import QuantScheme

DYNAMIC_OPS = ["MatMul", "Gemm", "Gather"]
log = logging.getLogger(__name__)


def quantize_dynamic(src: Path, dst: Path, scheme: QuantScheme) -> None:
    quantization = require("onnxruntime.quantization", "ort")
    with _preprocessed(src) as model:
        try:
            quantization.quantize_dynamic(
                str(model), str(dst),
                op_types_to_quantize=DYNAMIC_OPS,
                per_channel=scheme.per_channel,
                reduce_range=scheme.reduce_range,
                weight_type=quantization.QuantType.QInt8,
            )
        except Exception as err:  # noqa: BLE001 - the quantizer raises anything
            raise QuantizeError(f"{src}: ONNX Runtime's dynamic quantization failed: {last_line(err)}") from err


def quantize_static(src: Path, dst: Path, scheme: QuantScheme, calibration: Samples) -> None:
    quantization = require("onnxruntime.quantization", "ort")
    with _preprocessed(src) as model:
        try:
            quantization.quantize_static(
                str(model), str(dst),
                _Reader(calibration),
                quant_format=quantization.QuantFormat.QDQ,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                per_channel=scheme.per_channel,
                reduce_range=scheme.reduce_range,
                calibrate_method=quantization.CalibrationMethod.MinMax,
            )
        except Exception as err:  # noqa: BLE001
            raise QuantizeError(f"{src}: ONNX Runtime's static quantization failed: {last_line(err)}") from err


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over our samples."""

    def __init__(self, samples: Samples):
        self._feeds = iter(samples.feeds)

    def get_next(self):
        return next(self._feeds, None)


class _preprocessed:
    """ONNX Runtime's recommended pre-processing (shape inference + basic graph optimisation) into
    a temp file; the original model if it fails (quantization still works, only less well)."""

    def __init__(self, src: Path):
        self.src = src
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.tmp = tempfile.TemporaryDirectory(prefix="tvmopt-quant-")
        out = Path(self.tmp.name) / "preprocessed.onnx"
        try:
            quant_pre_process(str(self.src), str(out), skip_symbolic_shape=True)
            return out
        except Exception as err:  # noqa: BLE001
            log.warning("%s: ONNX Runtime's quantization pre-processing failed (%s); quantizing the model as it is",
                        self.src, last_line(err))
            return self.src

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


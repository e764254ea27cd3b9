"""Which quantization scheme a mode gets on a target, and what to warn about.

The scheme follows the target's capabilities (targets.Capabilities): on an x86 CPU whose int8
dot product is `vpmaddubsw` (AVX2, AVX-512 without VNNI), u8 x s8 products are summed in pairs in
int16 with saturation, in ONNX Runtime's kernels and in tvmopt's alike; weights quantized to 7 bits
(`reduce_range`) keep every pair within int16, so both compute the exact integer result. VNNI,
Arm dot product and GPUs accumulate in int32 and get full 8-bit weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import QuantizeError
from ..targets import TargetSpec

MODES = ("int8-dynamic", "int8-static", "fp16", "bf16")


@dataclass(frozen=True)
class QuantScheme:
    """How a model is quantized: the options handed to the quantizer, and why."""

    mode: str
    target: str
    weight_type: str | None = None  # int8 modes: "int8"
    activation_type: str | None = None  # int8 modes: "uint8"
    reduce_range: bool = False  # 7-bit weights
    per_channel: bool = False  # one weight scale per output channel
    calibration: str | None = None  # static: ONNX Runtime's calibration method
    note: str = ""  # why, in a line

    def to_json(self) -> dict:
        return asdict(self)


def choose_scheme(mode: str, spec: TargetSpec, per_channel: bool | None = None) -> tuple[QuantScheme, list[str]]:
    """The scheme for `mode` on `spec`, and warnings about what the target cannot do natively."""
    if mode not in MODES:
        raise QuantizeError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    caps = spec.supports
    warnings: list[str] = []
    if mode in ("fp16", "bf16"):
        if mode == "fp16" and not caps.fp16:
            warnings.append(f"target {spec.name} has no native fp16 arithmetic ({caps.describe()}): fp16 halves "
                            "the weights, but kernels convert to fp32 around every op; fp16 pays off on CUDA targets")
        if mode == "bf16":
            warnings.append("bf16: weights are stored as bfloat16 (half the file); TVM 0.27 computes bf16 in fp32 on "
                            "CPUs (it emits no avx512_bf16 instructions) and constant folding widens the weights "
                            "again, so expect fp32 speed" + ("" if caps.bf16 else
                                                             f"; target {spec.name} has no bf16 arithmetic either"))
        return QuantScheme(mode, spec.name, note=f"{mode} weights and activations"), warnings
    saturating = caps.int8_dot == "pmaddubsw" or (caps.int8_dot is None and spec.requires.arch == "x86_64")
    if caps.int8_dot is None:
        warnings.append(f"target {spec.name} has no int8 dot-product instruction: int8 kernels run as widened "
                        "integer code, expect little speedup over fp32 (the model still shrinks ~4x)")
    if saturating:
        note = ("7-bit weights (reduce_range): this target's u8 x s8 dot product (vpmaddubsw) sums pairs in int16 "
                "with saturation; 7-bit weights keep it exact, in ONNX Runtime and in tvmopt")
    else:
        note = f"8-bit weights: the target's int8 dot product ({caps.int8_dot or 'none'}) accumulates exactly"
    static = mode == "int8-static"
    return QuantScheme(
        mode=mode,
        target=spec.name,
        weight_type="int8",
        activation_type="uint8",
        reduce_range=saturating,
        per_channel=static if per_channel is None else per_channel,
        calibration="minmax" if static else None,
        note=note,
    ), warnings

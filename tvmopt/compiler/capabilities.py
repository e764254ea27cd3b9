"""What a model's arithmetic needs against what the target supports: compile's warnings.

A float16 or bfloat16 graph compiles for any target, but on one without that arithmetic LLVM
converts around every op (slower than fp32); int8 matmuls without an int8 dot product run as
widened integer code. `compile` says so instead of silently producing a slow artifact.
"""

from __future__ import annotations

import tvm
from tvm import relax

from ..targets import TargetSpec


def precision_warnings(mod: tvm.IRModule, spec: TargetSpec) -> list[str]:
    """One line per reduced precision the graph uses and the target lacks natively."""
    dtypes = _dtypes(mod)
    caps = spec.supports
    warnings = []
    if "float16" in dtypes and not caps.fp16:
        warnings.append(f"the model computes in float16, but target {spec.name} has no fp16 arithmetic "
                        f"({caps.describe()}): kernels convert to fp32 around every op")
    if "bfloat16" in dtypes and not caps.bf16:
        warnings.append(f"the model uses bfloat16, but target {spec.name} has no bf16 arithmetic ({caps.describe()})")
    if dtypes & {"int8", "uint8"} and caps.int8_dot is None and spec.device == "cpu":
        warnings.append(f"the model is int8, but target {spec.name} has no int8 dot-product instruction: its "
                        "int8 matmuls run as widened integer code")
    return warnings


def _dtypes(mod: tvm.IRModule) -> set[str]:
    """Tensor dtypes bound in the module's Relax functions (constants and intermediates)."""
    found: set[str] = set()

    def visit(expr) -> None:
        dtype = getattr(getattr(expr, "ty", None), "dtype", None)
        if dtype is not None:
            found.add(str(dtype))

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return found

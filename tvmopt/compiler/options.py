"""GraphOptions: the optimisations compile and tune apply, as one record.

They change the kernels (and so the workloads a tuning log is keyed by), so tune and compile
must use the same options to share records; the manifest and the session record say which were
used. Defaults are what makes CPU inference fastest here (benchmarks/RESULTS.md, ablation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class GraphOptions:
    """Which optimisations to apply; each is measured on its own in benchmarks/ablation.py."""

    blocked_layout: bool = True  # convolutions in NCHW{block}c on CPUs (compiler/layout.py)
    templates: bool = True  # tvmopt's schedule templates for conv / depthwise / GEMM (tuning/templates.py)
    prepack_weights: bool = True  # weights re-laid-out for the tuned kernels, once at compile time
    compiled_vm: bool = True  # the Relax VM's control flow compiled to native code (CPU targets)
    winograd: bool = True  # 3x3 stride-1 convs as Winograd F(4x4 or 2x2, 3x3) where it pays (compiler/winograd.py)
    depthwise_pointwise: bool = True  # a depthwise conv fused into the 1x1 conv after it (compiler/dwpw.py)
    block: int | None = None  # channel block of the blocked layout; None: the target's vector width

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(obj: dict | None) -> "GraphOptions":
        known = {f.name for f in fields(GraphOptions)}
        values = {k: v for k, v in (obj or {}).items() if k in known}
        return GraphOptions(**{k: (v if k == "block" else bool(v)) for k, v in values.items()})

    @staticmethod
    def none() -> "GraphOptions":
        """Plain TVM: NCHW, generic MetaSchedule rules, no prepacking, bytecode VM."""
        return GraphOptions(blocked_layout=False, templates=False, prepack_weights=False, compiled_vm=False,
                            winograd=False, depthwise_pointwise=False)

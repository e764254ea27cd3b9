"""What `tvmopt inspect` shows: operators before fusion, fused kernels and tuning tasks after."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import tvm
from tvm import relax

from .._compat import PrimFunc
from ..logs.workload import estimate_flops
from ..model import Model
from .layout import LayoutDecision, block_size, layout_decisions
from .options import GraphOptions
from .passes import extract_tasks, fuse


@dataclass(frozen=True)
class Kernel:
    name: str
    flops: float
    calls: int


@dataclass(frozen=True)
class Task:
    name: str
    weight: int
    flops: float


@dataclass(frozen=True)
class ModelReport:
    op_counts: dict[str, int]
    kernels: list[Kernel]
    tasks: list[Task]
    layouts: list[LayoutDecision]  # per conv2d: blocked or not, and why not
    reorders: int  # layout_transform kernels left in the graph (entry, exit, ops without a layout rule)
    winograd: int = 0  # convs computed as Winograd (compiler/winograd.py): their batched GEMMs
    winograd_4x4: int = 0  # of those, the ones in 4x4 output tiles, F(4x4, 3x3) (the rest: F(2x2, 3x3))

    @property
    def total_flops(self) -> float:
        return sum(k.flops * k.calls for k in self.kernels)


def op_counts(mod: tvm.IRModule) -> dict[str, int]:
    counts: Counter[str] = Counter()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name.removeprefix("relax.")] += 1

    for _, func in mod.functions.items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return dict(counts.most_common())


def describe(model: Model, target: tvm.target.Target, options: GraphOptions | None = None) -> ModelReport:
    options = options or GraphOptions()
    fused = fuse(model.mod, target, options)
    calls: Counter[str] = Counter()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.call_tir":
            calls[expr.args[0].name_hint] += 1

    relax.analysis.post_order_visit(fused["main"], visit)
    kernels = [
        Kernel(gv.name_hint, estimate_flops(func), calls.get(gv.name_hint, 0))
        for gv, func in fused.functions.items()
        if isinstance(func, PrimFunc)
    ]
    kernels.sort(key=lambda k: -k.flops * max(k.calls, 1))
    tasks = []
    if model.is_static:
        tasks = [Task(t.task_name, int(t.weight), estimate_flops(t.dispatched[0])) for t in extract_tasks(fused, target)]
    block = block_size(target) if options.blocked_layout else None
    layouts = layout_decisions(model.mod, block)
    reorders = sum(count for name, count in calls.items() if "layout_transform" in name)
    winograd = sum(count for name, count in calls.items() if "winograd_gemm" in name)
    return ModelReport(op_counts(model.mod), kernels, tasks, layouts, reorders, winograd, _winograd_4x4(fused, calls))


def _winograd_4x4(fused: tvm.IRModule, calls: Counter[str]) -> int:
    """Winograd convs in 4x4 tiles: their batched GEMMs have 36 transform points (2x2 tiles: 16)."""
    count = 0
    for gv, func in fused.functions.items():
        if isinstance(func, PrimFunc) and "winograd_gemm" in gv.name_hint:
            if int(func.params[0].shape[0]) == (4 + 2) ** 2:  # 0.27: a PrimFunc's params are its buffers
                count += calls.get(gv.name_hint, 0)
    return count

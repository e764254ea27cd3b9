"""Batch buckets: one static copy of the model per batch size, all in one IRModule.

Tuned kernels need static shapes, while a server merges requests into batches of any size.
Each bucket binds the model's symbolic batch dim to one size (function main_b<size>); all
copies live in one module, so one tuning session tunes every bucket's kernels into the one log
(records are matched by workload, so a kernel two buckets share is tuned once), and one build
gives one library and one manifest. The runtime pads a batch to the next bucket and slices the
outputs (runtime/batching.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import tvm
from tvm import relax

from ..errors import CompileError, InputSpecError
from ..model import Model
from ..specs import BatchBuckets

MAX_BATCH_SIZE = 4096


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16); a one-line error for anything else."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= MAX_BATCH_SIZE:
            raise InputSpecError(f"--batch-sizes '{text}': '{part}' is not a batch size from 1 to {MAX_BATCH_SIZE}")
        sizes.append(int(part))
    return tuple(sorted(set(sizes)))


def with_batch_buckets(model: Model, sizes: Sequence[int]) -> Model:
    """`model` with one static function per batch size instead of "main" (see the module doc)."""
    if model.batch_buckets is not None:
        if tuple(sorted(set(sizes))) != model.batch_buckets.sizes:
            raise CompileError(f"model {model.name} already has batch buckets {model.batch_buckets.sizes}")
        return model
    if not sizes or any(int(s) < 1 or int(s) > MAX_BATCH_SIZE for s in sizes):
        raise InputSpecError(f"batch sizes {list(sizes)}: give one or more sizes from 1 to {MAX_BATCH_SIZE}")
    dim = batch_dim_of(model)
    buckets = BatchBuckets.named(dim, sizes)
    main = model.mod["main"]
    batch_vars = [v for v in relax.analysis.defined_symbolic_vars(main) if v.name == dim]
    functions = {gv: f for gv, f in model.mod.functions.items() if gv.name_hint != "main"}
    mod = tvm.IRModule(functions, attrs=model.mod.attrs)
    for size, name in zip(buckets.sizes, buckets.functions):
        bound = main.bind_symbolic_vars({var: size for var in batch_vars})
        mod[name] = bound.with_attr("global_symbol", name)
    return replace(model, mod=mod, batch_buckets=buckets)


def batch_dim_of(model: Model) -> str:
    """The symbolic dim every input and output has at axis 0; errors say which tensor lacks it."""
    first = None
    for kind, specs in (("input", model.inputs), ("output", model.outputs)):
        for spec in specs:
            if not spec.shape:
                raise InputSpecError(f"model {model.name}: {kind} '{spec.name}' is a scalar; batch buckets need "
                                     "every input and output to have the batch dim at axis 0")
            dim = spec.shape[0]
            if isinstance(dim, int):
                hint = (f"; export the model with a dynamic axis 0 (torch.onnx.export(..., dynamic_axes="
                        f"{{'{spec.name}': {{0: 'batch'}}}})) and keep it symbolic, e.g. --input-shape "
                        f"{spec.name}:batchx{'x'.join(str(d) for d in spec.shape[1:])}") if kind == "input" else \
                    "; its rows cannot be split back per request"
                raise InputSpecError(f"model {model.name}: {kind} '{spec.name}' has a fixed size {dim} at axis 0 "
                                     f"(shape {spec.shape_str()}), batch buckets need a dynamic batch dim{hint}")
            if first is None:
                first = (dim, spec.name)
            elif dim != first[0]:
                raise InputSpecError(f"model {model.name}: {kind} '{spec.name}' has '{dim}' at axis 0 but "
                                     f"'{first[1]}' has '{first[0]}'; batch buckets need one batch dim shared by "
                                     "every input and output")
    if first is None:
        raise InputSpecError(f"model {model.name} has no inputs to batch")
    return str(first[0])

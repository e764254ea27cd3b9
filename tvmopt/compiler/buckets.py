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
    return replace(model, mod=specialize_call_tir(mod), batch_buckets=buckets)


def specialize_call_tir(mod: tvm.IRModule) -> tvm.IRModule:
    """Give every call_tir of a PrimFunc with symbolic buffer shapes a copy specialized to its
    arguments' static shapes.

    Workaround: the ONNX importer emits some ops (reflect Pad's mirror_pad, ...) as call_tir of a
    PrimFunc with the batch dim symbolic. Binding the batch dim in the Relax function leaves the
    PrimFunc symbolic, and FuseTIR then fails fusing it with a static producer ("Inconsistent
    buffers T_concat and A mapped to the same relax var"); a symbolic kernel could not be tuned
    either.
    """
    import tvm_ffi
    from tvm import tirx

    @relax.expr_functor.mutator
    class Specializer(relax.PyExprMutator):
        def __init__(self, mod: tvm.IRModule):
            super().__init__(mod)
            self.mod_ = mod

        def visit_call_(self, call: relax.Call) -> relax.Expr:
            call = super().visit_call_(call)
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.call_tir") or len(call.args) != 2:
                return call
            callee = call.args[0]
            func = self.mod_[callee] if isinstance(callee, relax.GlobalVar) else None
            outs = call.ty_args[0].fields if isinstance(call.ty_args[0], relax.TupleType) else [call.ty_args[0]]
            types = [a.ty for a in call.args[1].fields] + list(outs)
            if not isinstance(func, tirx.PrimFunc) or len(func.params) != len(types):
                return call
            shapes = [_static_shape(t) for t in types]
            if any(s is None for s in shapes):
                return call
            buffers = {param: tirx.decl_buffer([tirx.IntImm("int64", d) for d in shape], t.dtype, param.name)
                       for param, shape, t in zip(func.params, shapes, types)}
            try:
                specialized = func.specialize(buffers)
            except Exception:  # noqa: BLE001 - a signature specialize cannot match stays as it is
                return call
            if tvm_ffi.structural_equal(specialized, func):
                return call
            gv = self.builder_.add_func(specialized, f"{callee.name_hint}_static")
            return relax.call_tir(gv, call.args[1], call.ty_args[0])

    specializer = Specializer(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            specializer.builder_.update_func(gv, specializer.visit_expr(func))
    return relax.transform.DeadCodeElimination()(specializer.builder_.get())


def _static_shape(ty) -> list[int] | None:
    """A tensor type's shape as ints, or None where a dim is not a constant."""
    shape = getattr(ty, "shape", None)
    if not isinstance(shape, relax.ShapeExpr):
        return None
    dims = []
    for dim in shape.values:
        if not isinstance(dim, tvm.tirx.IntImm):
            return None
        dims.append(int(dim.value))
    return dims


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

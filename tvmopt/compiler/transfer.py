"""Zero-trial schedules for kernels without a record, borrowed from a tuned kernel of the same
computation: another batch bucket of the same layer, another layer's size, or the same kind of
kernel of another model in the log (a new CNN's conv+bias+ReLU from ResNet-18's).

TVM's default lowering of an unscheduled kernel is a scalar, single-threaded loop nest: one
untuned kernel can cost more than the rest of the model together (a batch-16 bucket of the zoo
MLP whose tuning was cut short ran 170 ms a batch against 0.2 ms for batch 1). A MetaSchedule
trace names blocks, not shapes; replayed on a kernel with the same blocks it keeps the tuned
structure (tiling depth, parallel, vectorize, unroll); a tile split that does not divide the new
extent is rescaled (rescaled_tiles). As MetaSchedule's own search replays a trace, the trace is applied
without its postprocessing steps and the target's postprocessors run afresh: then a trace also
applies to a kernel with more blocks than its own (a 1x1 conv+bias tuned in ResNet-18 on a 1x1
conv+bias+ReLU: 162 -> 11 us here), the extra blocks keeping their default loops. Each borrowed
schedule must apply and build; tuning replaces it. A reduction kernel no trace fits gets a sample
of the tuning space instead (sampled.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import tvm

from ..logs.workload import structural_hash
from ..native_output import captured

_MAX_BUILDS = 3  # traces that apply but fail to build, tried per kernel before it keeps TVM's default
_MAX_DIM_RATIO = 16  # a donor's dims within this factor of the kernel's (see near())
_MAX_TRIES = 8  # traces tried per kernel (one that does not apply costs milliseconds, a build ~1 s)


@dataclass(frozen=True)
class TunedKernel:
    """A kernel of this build that has a record: its name and its best trace."""

    name: str
    trace: object  # tvm.s_tir.Trace
    shapes: tuple[tuple[int, ...], ...] = ()  # its buffers' shapes, to rank similar kernels
    blocks: tuple[str, ...] = ()  # its block names: a trace looks blocks up by name
    own: bool = True  # a kernel of this build; False: another workload of the log (another model)


def block_names(func) -> tuple[tuple[str, ...], frozenset[str]]:
    """The names of a PrimFunc's blocks, in order, and of its reduction blocks (those with an init:
    the conv, the GEMM, a pool: where its time goes). Kernels with the same names compute the same
    thing (a trace's get_block calls find them), whatever the shapes."""
    # TVM 0.27 has no Python statement visitor for TIR; the printed script names every block.
    script = func.script()
    found = [(m.start(), m.group(1)) for m in _BLOCK.finditer(script)]
    ends = [start for start, _ in found[1:]] + [len(script)]
    reductions = frozenset(name for (start, name), end in zip(found, ends) if "T.init()" in script[start:end])
    return tuple(name for _, name in found), reductions


_BLOCK = re.compile(r'T\.s?block\("([^"]+)"')
_VAR_PREFIX = re.compile(r"^(?:lv|gv)\d+_")


def canonical_block(name: str) -> str:
    """A block name without the Relax variable it was named after: TOPI's layer norm names its
    blocks after its input ("lv24_sum", "lv24_mean"), so the same kernel of another layer or model
    has other names ("lv8_sum") and a trace that looks blocks up by name would not find them."""
    return _VAR_PREFIX.sub("", name)


def buffer_shapes(func) -> tuple[tuple[int, ...], ...]:
    """The shapes of a PrimFunc's buffer parameters (-1 for a symbolic dim)."""
    # TVM 0.27: a PrimFunc's params are its buffers (there is no buffer_map); scalars have no shape
    return tuple(tuple(int(d) if isinstance(d, tvm.tirx.IntImm) else -1 for d in p.shape)
                 for p in func.params if hasattr(p, "shape"))


def borrow_schedules(mod: tvm.IRModule, target: tvm.target.Target, tuned: Sequence[TunedKernel],
                     tuning_target: tvm.target.Target | None = None) -> tuple[tvm.IRModule, dict[str, str]]:
    """Give every unscheduled kernel of `mod` the schedule of the most similar tuned kernel that
    applies to it; returns the module and {kernel: the tuned kernel it borrowed from}.
    `tuning_target` (default `target`) is the one the postprocessors are made for: MetaSchedule's
    CPU rules need its `num-cores`."""
    if not tuned:
        return mod, {}
    normalize = tvm.get_global_func("tvm.s_tir.meta_schedule.normalize_mod")
    borrowed: dict[str, str] = {}
    postprocs: list = []  # made once, for the first kernel that needs them
    found: dict[int, tuple[object, str] | None] = {}  # repeated layers' identical kernels: one search
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is not None and func.attrs.get("tirx.is_scheduled"):
            continue
        kernel = normalize(func)
        key = structural_hash(kernel)
        if key not in found:
            postprocs = postprocs or _postprocs(kernel, tuning_target or target)
            found[key] = _borrow_one(gv.name_hint, func, kernel, tuned, target, postprocs)
        if found[key] is not None:
            scheduled, source = found[key]
            main = scheduled.mod["main"]
            mod[gv] = tvm.tirx.PrimFunc(main.params, main.body, main.ret_type,
                                        attrs=func.attrs).with_attr("tirx.is_scheduled", True)
            borrowed[gv.name_hint] = source
    return mod, borrowed


def fit_schedule(name: str, kernel: tvm.IRModule, tuned: Sequence[TunedKernel], target: tvm.target.Target,
                 postprocs: list, build: bool = True) -> tuple[tvm.s_tir.Schedule, str] | None:
    """`kernel` (a normalized one-function module) scheduled by the most similar tuned kernel whose
    trace fits it, and that donor's name; None if none fits. With `build`, a schedule must also
    build (tried for at most _MAX_BUILDS traces); without, the first that applies is taken (a
    tuning session's builder builds it anyway). Its trace replays as a MetaSchedule record's does."""
    return _borrow_one(name, kernel["main"], kernel, tuned, target, postprocs, build)


def postprocs_for(kernel: tvm.IRModule, target: tvm.target.Target) -> list:
    """The postprocessors MetaSchedule runs after replaying a trace for `target` (made once, used
    for every kernel of that target)."""
    return _postprocs(kernel, target)


def _borrow_one(name: str, func, kernel: tvm.IRModule, tuned: Sequence[TunedKernel], target: tvm.target.Target,
                postprocs: list, build: bool = True) -> tuple[tvm.s_tir.Schedule, str] | None:
    """(the kernel scheduled by the first fitting trace that builds, its donor's name), or None."""
    builds = 0
    candidates = _most_similar_first(name, *block_names(func), buffer_shapes(func), tuned)
    script = kernel["main"].script() if candidates else ""  # printed once, renamed per donor
    for source in candidates[:_MAX_TRIES]:
        if builds == _MAX_BUILDS:
            break
        renamed = _with_block_names_of(kernel, script, source.blocks)
        if renamed is None:
            continue
        with captured():  # a trace that does not fit makes TVM print its error
            scheduled, built = _replay(renamed, source.trace, target, postprocs, build)
        builds += built
        if scheduled is not None:
            return scheduled, source.name
    return None


def _with_block_names_of(kernel: tvm.IRModule, script: str, donor_blocks: Sequence[str]) -> tvm.IRModule | None:
    """`kernel` (printed: `script`) with its blocks named as the donor's blocks of the same
    canonical name (the trace looks them up by name); the kernel itself where the names already
    agree, None where a canonical name is not unique on either side."""
    own = [m.group(1) for m in _BLOCK.finditer(script)]
    theirs = {canonical_block(b): b for b in donor_blocks}
    if len(theirs) != len(donor_blocks) or len({canonical_block(b) for b in own}) != len(own):
        return None
    renames = {b: theirs[canonical_block(b)] for b in own if canonical_block(b) in theirs and theirs[canonical_block(b)] != b}
    if not renames:
        return kernel
    text = _BLOCK.sub(lambda m: m.group(0).replace(f'"{m.group(1)}"', f'"{renames.get(m.group(1), m.group(1))}"'), script)
    try:
        return tvm.IRModule({"main": tvm.script.from_source(text)})
    except Exception:  # noqa: BLE001 - a kernel TVMScript does not read back keeps its names
        return None


def _stem(name: str) -> str:
    """'fused_matmul2_add11' -> 'fused_matmul_add': the ops, without the numbers that tell
    same-named kernels of other shapes apart."""
    return re.sub(r"\d+", "", name)


def _most_similar_first(name: str, blocks: tuple[str, ...], reductions: frozenset[str], shapes,
                        tuned: Sequence[TunedKernel]) -> list[TunedKernel]:
    """The tuned kernels whose traces can fit this one, best first: operands and output of the same
    ranks first; then the same blocks, then blocks that are a part of this kernel's (fewest missing
    first); among each, the fewest dims that are 1 on one side only, then the nearest shapes
    (the same layer in another batch bucket differs only in its batch dim), the same ops by name,
    this build's own before the log's other workloads.

    Left out: kernels with a block this one lacks (a trace looks its blocks up by name), and those
    without its reduction blocks: a bias-add schedule on a conv kernel would leave the conv at TVM's
    default, and an fp32 schedule on an int8 GEMM would take the place of its sampled dot-product
    schedule (int8_schedule.py). A kernel without a reduction (element-wise, layout) takes only a
    trace of exactly its blocks: a reshape's schedule on a reshape+erf+multiply kernel would
    schedule the cheap part at best."""
    stem = _stem(name)
    have = {canonical_block(b) for b in blocks}
    reductions = frozenset(canonical_block(b) for b in reductions)
    blocks = tuple(canonical_block(b) for b in blocks)

    def ranks(of: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
        # The first two buffers (a GEMM's or conv's operands) and the output: a trace splits the
        # reduction block's loops by position, so one of another rank does not apply (a 3-D GEMM's
        # on an attention batch-matmul of 4-D tensors).
        return tuple(len(s) for s in (*of[:2], *of[-1:]))

    def distance(kernel: TunedKernel) -> tuple:
        other_ranks = ranks(kernel.shapes) != ranks(shapes)
        missing = len(have - {canonical_block(b) for b in kernel.blocks})
        if len(kernel.shapes) != len(shapes) or any(len(a) != len(b) for a, b in zip(kernel.shapes, shapes)):
            return other_ranks, missing, 1 << 20, 1 << 20, 0.0, _stem(kernel.name) != stem, not kernel.own
        dims = [(x, y) for a, b in zip(kernel.shapes, shapes) for x, y in zip(a, b)]
        # A dim of 1 on one side only: the donor's loop there was trivial, so its schedule never
        # tiled it (a GEMV's trace on a 128-row GEMM ran 37x slower than ORT in GPT-2).
        unit = sum((x == 1) != (y == 1) for x, y in dims)
        ratio = sum(abs(math.log(x / y)) for x, y in dims if x > 0 and y > 0 and x != y)
        return (other_ranks, missing, unit, sum(x != y for x, y in dims), ratio, _stem(kernel.name) != stem,
                not kernel.own)

    def near(kernel: TunedKernel) -> bool:
        # A donor 16x smaller or larger in some dim tiled a different problem: GPT-2's 3072-column
        # GEMMs ran 8x slower than ORT on the trace of a 10-column one, 1.6x on a sample of the
        # tuning space with moderate tiles (sampled.py), which is where such kernels go instead.
        if len(kernel.shapes) != len(shapes) or any(len(a) != len(b) for a, b in zip(kernel.shapes, shapes)):
            return True
        return all(max(x, y) <= _MAX_DIM_RATIO * min(x, y) for a, b in zip(kernel.shapes, shapes)
                   for x, y in zip(a, b) if x > 0 and y > 0)

    def fits(kernel: TunedKernel) -> bool:
        if not kernel.blocks or not near(kernel):
            return False
        theirs = tuple(canonical_block(b) for b in kernel.blocks)
        return reductions <= set(theirs) <= have if reductions else theirs == blocks

    return sorted(filter(fits, tuned), key=distance)


def _replay(kernel: tvm.IRModule, trace, target: tvm.target.Target, postprocs: list,
            build: bool = True) -> tuple[tvm.s_tir.Schedule | None, bool]:
    """(`kernel`'s schedule by `trace`, its tile sizes redrawn where they do not fit, or None if the
    trace does not apply or, with `build`, the result does not build; whether a build was tried)."""
    sch = tvm.s_tir.Schedule(kernel, seed=1)

    def fit(inst, inputs, attrs, decision):
        # Keep a tile decision that still multiplies to its loop's extent; rescale one that does not.
        if inst.kind.name == "SamplePerfectTile":
            extent = sch.get(inputs[0]).extent
            if not isinstance(extent, tvm.tirx.IntImm):
                return None
            return rescaled_tiles([int(f) for f in decision], int(extent))
        return decision

    try:
        # Without the trace's own postprocessing steps (they count the kernel's blocks, so a kernel
        # with an extra block failed: "old_outputs.size() == new_outputs.size() (3 vs. 4)").
        trace.apply_to_schedule(sch, remove_postproc=True, decision_provider=fit)
        sch.enter_postproc()  # as MetaSchedule marks them: a replay of this trace drops what follows
        if not all(postproc.apply(sch) for postproc in postprocs):
            return None, False
    except Exception:  # noqa: BLE001 - blocks missing, an invalid tile: not this trace
        return None, False
    if not build:
        return sch, False
    try:
        tvm.compile(sch.mod, target=target)
    except Exception:  # noqa: BLE001 - applies but does not lower
        return None, True
    return sch, True


def rescaled_tiles(factors: list[int], extent: int) -> list[int]:
    """A tuned split of one loop carried to a loop of another extent: the inner factors (register
    tile, vector width: what the tuning found) kept as far as they divide the new extent, the outer
    one taking the rest (the parallel loop). A fresh random draw instead made borrowed GEMM
    schedules of other shapes as slow as untuned ones (GPT-2: 28x ORT)."""
    if math.prod(factors) == extent:
        return factors
    out = [1] * len(factors)
    rest = extent
    for i in range(len(factors) - 1, 0, -1):
        out[i] = math.gcd(factors[i], rest)
        rest //= out[i]
    out[0] = rest
    return out


def _postprocs(kernel: tvm.IRModule, target: tvm.target.Target) -> list:
    """The postprocessors MetaSchedule runs after replaying a trace for `target` (tuning/rules.py)."""
    from .._compat import ms
    from ..tuning.rules import space_generator

    context = ms.TuneContext(mod=kernel, target=target, space_generator=space_generator(target),
                             search_strategy="replay-trace", task_name="borrow", num_threads=1)
    return list(context.space_generator.postprocs)

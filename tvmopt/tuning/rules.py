"""Which MetaSchedule design space (schedule rules, postprocessors, mutators) a target searches.

MetaSchedule picks a rule set from the target's CPU features ("vnni", "avx512", "dotprod", or
plain LLVM rules). For targets with an int8 dot product (compiler/intrinsics.py) we build the
same space ourselves, with two changes:
- x86: multi-level tiling with the target's dot-product intrinsic before plain tiling, as
  MetaSchedule's x86 rule set does, now also on AVX2 (MetaSchedule has no int8 rule there) with
  tvmopt's `vpmaddubsw` intrinsic; VNNI and AVX-512 use their (repaired) intrinsics.
- a postprocessor that unrolls vectorized loops around tensorized blocks. Workaround:
  RewriteParallelVectorizeUnroll vectorizes the innermost spatial loop even when it encloses a
  block to be tensorized; TVM's vectorizer then fails on the intrinsic's vector operands
  ("Cannot broadcast lanes=32 ... to 64"), which made about half of all int8 candidates fail
  to build.
"""

from __future__ import annotations

import tvm

from .._compat import derived_object, ms
from ..compiler.intrinsics import SDOT, int8_dot_for

AUTO_TENSORIZE = "meta_schedule.auto_tensorize"


def space_generator(target: tvm.target.Target):
    """The design space to search for `target`: MetaSchedule's default, or the int8-aware one."""
    dot = int8_dot_for(target)
    if dot is None:
        return "post-order-apply"
    if dot is SDOT:
        rules = list(tvm.get_global_func("s_tir.meta_schedule.ScheduleRuleDefaultARM")("dotprod"))
    else:
        rules = list(ms.ScheduleRule.create("llvm"))
        tiling = next(i for i, rule in enumerate(rules) if type(rule).__name__ == "MultiLevelTiling")
        rules.insert(tiling, ms.schedule_rule.MultiLevelTilingWithIntrin(
            dot.intrinsic,
            structure="SSRSRS",
            tile_binds=None,
            max_innermost_factor=64,
            vector_load_lens=None,
            reuse_read=None,
            reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global"),
        ))
    # MetaSchedule's DefaultCPUTensorization postprocessors (not exposed to Python), plus ours.
    postprocs = [
        ms.postproc.DisallowDynamicLoop(),
        ms.postproc.RewriteParallelVectorizeUnroll(),
        SerialAroundTensorize(),
        ms.postproc.RewriteReductionBlock(),
        ms.postproc.RewriteTensorize(vectorize_init_loop=True),
        ms.postproc.RewriteLayout(),
    ]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=postprocs, mutator_probs="llvm")


@derived_object
class SerialAroundTensorize(ms.postproc.PyPostproc):
    """Unroll (instead of vectorize) the loops that enclose a block marked for tensorization."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch) -> bool:
        from tvm.tirx import ForKind

        for block in _all_blocks(sch):
            if AUTO_TENSORIZE not in sch.get(block).annotations:
                continue
            for loop in sch.get_loops(block):
                if sch.get(loop).kind == ForKind.VECTORIZED:
                    sch.unroll(loop)
        return True

    def clone(self):
        return SerialAroundTensorize()


def _all_blocks(sch) -> list:
    """Every block of the schedule's function ("main"), outer blocks first."""
    out, todo = [], list(sch.get_child_blocks(sch.get_sblock("root")))
    while todo:
        block = todo.pop(0)
        out.append(block)
        todo.extend(sch.get_child_blocks(block))
    return out

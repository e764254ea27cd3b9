"""Which MetaSchedule design space (schedule rules, postprocessors, mutators) a target searches.

MetaSchedule picks a rule set from the target's CPU features: "vnni" (AVX-512 VNNI: int8 GEMMs
tensorized with `vpdpbusd`), "avx512" (`vpmaddubsw`), "dotprod" (Arm `sdot`/`udot`), else plain
LLVM rules. Those are kept as they are (their intrinsics are registered, and VNNI's repaired, by
compiler/intrinsics.py). What we add: on AVX2 targets, where MetaSchedule has no int8 rule, the
same multi-level tiling with tvmopt's AVX2 dot-product intrinsic, tried before plain tiling, so
the int8 GEMMs of the graph rewrite (compiler/int8.py) are tensorized there too.
"""

from __future__ import annotations

import tvm

from .._compat import ms
from ..compiler.intrinsics import AVX2, int8_dot_for


def space_generator(target: tvm.target.Target):
    """The design space to search for `target`: MetaSchedule's default, or the AVX2 int8 one."""
    if int8_dot_for(target) is AVX2:
        return _avx2_space()
    return "post-order-apply"


def _avx2_space():
    rules = list(ms.ScheduleRule.create("llvm"))
    tiling = next(i for i, rule in enumerate(rules) if type(rule).__name__ == "MultiLevelTiling")
    rules.insert(tiling, ms.schedule_rule.MultiLevelTilingWithIntrin(
        AVX2.intrinsic,
        structure="SSRSRS",
        tile_binds=None,
        max_innermost_factor=64,
        vector_load_lens=None,
        reuse_read=None,
        reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global"),
    ))
    # MetaSchedule's DefaultCPUTensorization postprocessors (not exposed to Python).
    postprocs = [
        ms.postproc.DisallowDynamicLoop(),
        ms.postproc.RewriteParallelVectorizeUnroll(),
        ms.postproc.RewriteReductionBlock(),
        ms.postproc.RewriteTensorize(vectorize_init_loop=True),
        ms.postproc.RewriteLayout(),
    ]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=postprocs, mutator_probs="llvm")

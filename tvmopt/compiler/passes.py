"""Graph-level optimisation (Relax FuseOps/FuseTIR) and the tuning tasks it yields.

`fuse` is the one function both tuning and compiling call, so the kernels tuned are
structurally the kernels compiled (records are matched by structure).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import partial

import tvm
from tvm import relax

from .._compat import ms
from ..native_output import captured
from .options import GraphOptions


def fuse(mod: tvm.IRModule, target: tvm.target.Target, options: GraphOptions | None = None) -> tvm.IRModule:
    """Graph passes, legalize to TIR, fold constants, FuseOps + FuseTIR.

    The same sequence as relax.pipeline.static_shape_tuning_pipeline before its tuning step, plus,
    as `options` ask (all by default):
    - on CPUs, convolutions in a blocked NCHWc layout (layout.py), without the reorders that a
      weight permutation or a view can replace (reorders.py);
    - blocks marked for tvmopt's schedule templates (annotate.py, layout.py);
    - constant weights marked layout-free, so tuned kernels may re-lay them out (prepack_weights);
    - FastMathTransform: erf/exp/tanh/softmax become TOPI's vectorizable polynomial forms. LLVM
      has no erf intrinsic, so a GELU epilogue called scalar libm erff per element: in the
      BERT-style zoo model the FFN matmul+GELU kernel took 62% of the tuned time (10.9 of 17.5 ms,
      benchmarks/kernel_profile.py) against ORT's 1.8 ms for the same GEMMs.
    """
    from tvm.relax import transform

    from .annotate import mark_dag_epilogues, mark_gemms
    from .reorders import drop_reorders
    from .layout import block_size, clip_to_min_max, legalize_blocked_conv2d, to_blocked_layout

    options = options or GraphOptions()
    block = block_size(target)
    if block and options.block:
        block = options.block
    layout = []
    if block and options.blocked_layout:
        # FoldConstant undoes int8.py's scalars-as-data (0-dim constants again, inlined into every
        # layer's kernels as immediates: one tuning task per layer), hence pass_scalars_as_data.
        from .wide_gemms import pad_wide_gemms

        layout = [transform.FoldConstant(), _pass_scalars_as_data, pad_wide_gemms(block), clip_to_min_max(),
                  to_blocked_layout(block),
                  transform.Normalize(), drop_reorders()]
    if layout and options.templates and options.depthwise_pointwise:
        from .dwpw import fuse_depthwise_pointwise

        layout.append(fuse_depthwise_pointwise())
    templates = [mark_gemms(block)] if block and options.templates else []
    dag_epilogues = [mark_dag_epilogues()] if block and options.templates else []
    # Constant weights may be re-laid-out by MetaSchedule's RewriteLayout for the tiling it picks;
    # compile then packs them once (prepack_weights below).
    layout_free = [transform.AttachAttrLayoutFreeBuffers()] if block and options.prepack_weights else []
    legalize = {"relax.nn.conv2d": partial(legalize_blocked_conv2d, templates=options.templates,
                                           winograd=options.winograd)}
    from .int8 import lower_int8_matmuls

    mod = lower_int8_matmuls(mod, target)  # int8 products onto the CPU's dot-product instructions
    with target, captured():
        return tvm.transform.Sequential(
            [
                transform.DecomposeOpsForInference(),
                transform.CanonicalizeBindings(),
                *layout,
                transform.FastMathTransform(),
                transform.LegalizeOps(legalize),
                *templates,
                relax.get_pipeline("zero"),
                *dag_epilogues,
                *layout_free,
            ]
        )(mod)


@tvm.transform.module_pass(opt_level=0, name="PassQuantizationScalarsAsData")
def _pass_scalars_as_data(mod: tvm.IRModule, ctx) -> tvm.IRModule:
    from .int8 import pass_scalars_as_data

    return pass_scalars_as_data(mod)


def prepack_weights(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """After tuning records are applied: the weight re-layouts the records chose become separate
    kernels over constants, which FoldConstant runs now, at compile time (upstream PR #17445)."""
    from tvm.relax import transform

    with target, captured():
        return tvm.transform.Sequential(
            [transform.SplitLayoutRewritePreproc(), transform.LiftTransformParams(), transform.FoldConstant()]
        )(mod)


def extract_tasks(fused: tvm.IRModule, target: tvm.target.Target) -> list:
    """MetaSchedule tuning tasks (ExtractedTask: task_name, dispatched, weight) of a fused module."""
    register_tensor_intrinsics(target)
    return list(ms.relax_integration.extract_tasks(fused, target))


_INTRINSICS_DONE: set[str] = set()


def register_tensor_intrinsics(target: tvm.target.Target) -> None:
    """Register the tensor intrinsics MetaSchedule may tensorize to, for this target only.

    Workaround: `import tvm.s_tir.tensor_intrin` (done by TuneContext and by every
    LocalBuilder worker) costs ~21 s, 20 s of it parsing CUDA MMA intrinsics. On CPU
    targets we import only the x86 / Arm sets and mark the package imported, so that
    TVM's own `import tvm.s_tir.tensor_intrin` becomes a no-op. CUDA targets get all.
    """
    kind = target.kind.name
    arm = str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm"))
    key = f"{kind}-{'arm' if arm else 'other'}"
    if key in _INTRINSICS_DONE:
        return
    package = "tvm.s_tir.tensor_intrin"
    if kind != "llvm":
        module = sys.modules.get(package)
        if module is not None and getattr(module, "_tvmopt_partial", False):
            module.__spec__.loader.exec_module(module)  # run the real __init__: all intrinsics
            module._tvmopt_partial = False
        importlib.import_module(package)
    elif package not in sys.modules:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
        module._tvmopt_partial = True
        sys.modules[package] = module
    if kind == "llvm":
        importlib.import_module(package + (".arm_cpu" if arm else ".x86"))
        importlib.import_module("tvmopt.compiler.intrinsics").register(target)  # VNNI fix, AVX2 int8
    _INTRINSICS_DONE.add(key)

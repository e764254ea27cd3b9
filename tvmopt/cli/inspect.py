"""`tvmopt inspect MODEL`: what TVM makes of a model, without building anything."""

from __future__ import annotations

import json

from .common import import_from_args, model_args, table, target_arg


def register(sub) -> None:
    p = sub.add_parser("inspect", help="inputs, outputs, operators, fused kernels and tuning tasks of a model",
                       description="Import a model and show what TVM makes of it, without building anything.")
    model_args(p)
    target_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..compiler.inspect import describe
    from ..targets import get_target

    model = import_from_args(args)
    report = describe(model, get_target(args.target).tvm_target())
    if args.json:
        print(json.dumps({
            "model": model.name, "format": model.format, "sha256": model.sha256,
            "inputs": [s.to_json() for s in model.inputs], "outputs": [s.to_json() for s in model.outputs],
            "operators": report.op_counts,
            "kernels": [{"name": k.name, "flops": k.flops, "calls": k.calls} for k in report.kernels],
            "tasks": [{"name": t.name, "weight": t.weight, "flops": t.flops} for t in report.tasks],
            "layouts": [{"conv": d.name, "shapes": d.shape, "layout": d.layout, "reason": d.reason}
                        for d in report.layouts],
            "layout_reorders": report.reorders,
            "winograd_convs": report.winograd,
            "winograd_4x4_convs": report.winograd_4x4,
        }, indent=2))
        return 0
    print(f"model {model.name} ({model.format}, sha256 {model.sha256[:12]})")
    table(("input", "shape", "dtype"), [(s.name, s.shape_str(), s.dtype) for s in model.inputs])
    table(("output", "shape", "dtype"), [(s.name, s.shape_str(), s.dtype) for s in model.outputs])
    print(f"\noperators ({sum(report.op_counts.values())}): "
          + ", ".join(f"{k} x{v}" for k, v in report.op_counts.items()))
    print(f"\nfused kernels ({len(report.kernels)}), {report.total_flops / 1e6:.2f} MFLOP total:")
    table(("kernel", "calls", "MFLOP"), [(k.name, k.calls, f"{k.flops / 1e6:.3f}") for k in report.kernels])
    if report.layouts:
        blocked = [d for d in report.layouts if d.layout != "NCHW"]
        print(f"\nconvolution layouts: {len(blocked)}/{len(report.layouts)} blocked; "
              f"{report.reorders} layout reorder kernel(s) left in the graph; "
              f"{report.winograd} 3x3 conv(s) as Winograd{_tiles(report)}")
        table(("conv", "data * weight", "layout", "why not blocked"),
              [(d.name, d.shape, d.layout, d.reason) for d in report.layouts])
    if model.is_static:
        print(f"\ntuning tasks ({len(report.tasks)}):")
        table(("task", "weight", "MFLOP"), [(t.name, t.weight, f"{t.flops / 1e6:.3f}") for t in report.tasks])
    else:
        dims = ", ".join(f"{n}[{a}]={d}" for n, a, d in model.dynamic_dims())
        print(f"\ndynamic dims: {dims}; fix them with --input-shape to tune")
    return 0


def _tiles(report) -> str:
    """How many of the Winograd convs use 4x4 and 2x2 output tiles, when there are any."""
    if not report.winograd:
        return ""
    return f" ({report.winograd_4x4} in 4x4 output tiles, {report.winograd - report.winograd_4x4} in 2x2)"

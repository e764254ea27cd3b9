"""`tvmopt quantize MODEL -o OUT`: int8 / fp16 / bf16 model + accuracy report against fp32."""

from __future__ import annotations

import sys

from .common import target_arg


def register(sub) -> None:
    p = sub.add_parser(
        "quantize", help="int8 / fp16 / bf16 model with an accuracy report against fp32",
        description="Rewrite an ONNX model to int8 (ONNX Runtime's quantizer: dynamic, or static QDQ calibrated "
                    "on sample inputs), fp16 or bf16 weights, with a scheme chosen for the target's int8/fp16/bf16 "
                    "support; then compare it with the fp32 model (max/mean abs diff, cosine, top-1 agreement for "
                    "[batch, classes] outputs, size) and save that report as OUT's .accuracy.json. The output is an "
                    "ONNX file for tune / compile / run / bench.",
    )
    p.add_argument("model", help="fp32 ONNX file")
    p.add_argument("-o", "--output", required=True, help="quantized ONNX file to write")
    p.add_argument("--mode", choices=["int8-dynamic", "int8-static", "fp16", "bf16"], default="int8-dynamic",
                   help="default int8-dynamic (MatMul/Gemm/Gather); int8-static (QDQ, calibrated) for CNNs")
    target_arg(p)
    p.add_argument("--calibration", metavar="DATA.npz",
                   help="calibration inputs for int8-static (one array per input, N samples stacked); "
                        "default: seeded random inputs")
    p.add_argument("--eval", dest="evaluation", metavar="DATA.npz",
                   help="evaluation inputs for the report (default: --samples seeded random inputs)")
    p.add_argument("--samples", type=int, default=64, help="random evaluation samples (default 64)")
    p.add_argument("--calibration-samples", type=int, default=32, help="random calibration samples (default 32)")
    p.add_argument("--min-agreement", type=_fraction, metavar="X",
                   help="fail (exit 2) when top-1 agreement with fp32 is below X (0.98 or 98%%)")
    p.add_argument("--min-cosine", type=_fraction, metavar="X", help="fail when the worst cosine similarity is below X")
    p.add_argument("--per-channel", action="store_true", default=None, help="one weight scale per output channel "
                   "(default for int8-static)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME:DIMS",
                   help="fix a dynamic input dim for the random samples, e.g. input_ids:1x128")
    p.set_defaults(func=run)


def _fraction(text: str) -> float:
    import argparse

    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.98 or a percentage like 98%, got {text!r}")
    return value / 100 if text.endswith("%") or value > 1 else value


def run(args) -> int:
    from ..errors import AccuracyError
    from ..quantize import quantize
    from ..specs import parse_shape

    shapes = dict(parse_shape(s) for s in args.input_shape)
    try:
        result = quantize(args.model, args.output, mode=args.mode, target=args.target,
                          calibration=args.calibration, evaluation=args.evaluation, samples=args.samples,
                          calibration_samples=args.calibration_samples, min_agreement=args.min_agreement,
                          min_cosine=args.min_cosine, per_channel=args.per_channel, input_shapes=shapes or None)
    except AccuracyError:
        from ..quantize import AccuracyReport, report_path_for

        path = report_path_for(args.output)
        if path.is_file():
            print(AccuracyReport.load(path).format())
        raise
    for warning in result.warnings:
        print(f"tvmopt: warning: {warning}", file=sys.stderr)
    print(f"wrote {result.path} ({result.scheme.mode} for {result.scheme.target}: {result.scheme.note})")
    print(result.report.format())
    print(f"report saved to {result.report_path}")
    return 0

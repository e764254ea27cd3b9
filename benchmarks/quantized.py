"""Quantized zoo models: fp32 vs int8 (and bf16) x {tvmopt, ONNX Runtime}: latency, size, accuracy.

    .venv/bin/python benchmarks/quantized.py --models bert4,resnet18 --minutes 12 --samples 256

Per model, in a scratch directory:
1. export the zoo model (fp32 ONNX) and quantize it with `tvmopt.quantize` for the target:
   int8-dynamic for transformers/MLPs, int8-static (QDQ, calibrated on seeded random inputs)
   for CNNs; also bf16 weights. The accuracy report (ONNX Runtime, --samples seeded inputs) is
   kept.
2. tune the int8 model with `tvmopt.tune` (full preset, --minutes of wall time) into --log-dir;
   the fp32 model gets its records from --log-dir and the shipped reference logs (tune it
   first with --fp32-minutes to add more);
3. `tvmopt bench INT8 --baseline FP32` (one interleaved run: tvmopt int8 untuned/tuned, ORT int8,
   tvmopt fp32 tuned, ORT fp32), and the same for bf16;
4. tvmopt's own int8 outputs on the same samples, against ORT fp32 (cosine, top-1).
Results: benchmarks/results/quantized-<model>-<target>.json; the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import tvmopt
from tvmopt.frontends import zoo
from tvmopt.measure.baselines import OrtSession
from tvmopt.measure.bench import bench
from tvmopt.quantize.data import onnx_input_specs, random_samples
from tvmopt.quantize.report import compare_outputs
from tvmopt.tuning import make_budget

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
STATIC = {"resnet18", "mobilenetv2"}  # CNNs: calibrated static QDQ


def run_model(name: str, target: str, minutes: float, fp32_minutes: float, samples: int, log_root: Path,
              work: Path, rounds: int, runs: int) -> dict:
    fp32 = zoo.ZOO[name].export_onnx(work / f"{name}.onnx")
    mode = "int8-static" if name in STATIC else "int8-dynamic"
    int8 = tvmopt.quantize(fp32, work / f"{name}_int8.onnx", mode=mode, target=target, samples=samples)
    bf16 = tvmopt.quantize(fp32, work / f"{name}_bf16.onnx", mode="bf16", target=target, samples=samples)
    print(int8.report.format(), file=sys.stderr)
    if fp32_minutes:
        tvmopt.tune(tvmopt.import_model(fp32), target, budget=make_budget("full", timeout_s=fp32_minutes * 60),
                    log_root=log_root, seed=0)
    log = tvmopt.tune(tvmopt.import_model(int8.path), target, budget=make_budget("full", timeout_s=minutes * 60),
                      log_root=log_root, seed=0)
    untuned = name not in STATIC  # an untuned CNN takes seconds per call
    report = bench(str(int8.path), target, log_root=log_root, rounds=rounds, runs=runs, work_dir=work / "bench-int8",
                   baseline=fp32, untuned=untuned)
    report_bf16 = bench(str(bf16.path), target, log_root=log_root, rounds=rounds, runs=runs,
                        work_dir=work / "bench-bf16", baseline=fp32, untuned=False)
    accuracy = tvmopt_accuracy(fp32, work / "bench-int8" / "tuned", samples)
    return {
        "model": name,
        "target": report.target,
        "date": time.strftime("%Y-%m-%d"),
        "mode": mode,
        "scheme": int8.scheme.to_json(),
        "tuning": {"minutes_budget": minutes, "wall_s": log.wall_s, "trials": log.trials_run,
                   "tasks": len(log.tasks), "untuned_tasks": log.untuned_tasks, "status": log.status},
        "sizes": {
            "onnx_fp32": int8.report.size_before, "onnx_int8": int8.report.size_after,
            "onnx_bf16": bf16.report.size_after,
            "library_fp32": _size(work / "bench-int8" / "tuned-fp32" / "model.so"),
            "library_int8": _size(work / "bench-int8" / "tuned" / "model.so"),
            "library_bf16": _size(work / "bench-bf16" / "tuned" / "model.so"),
        },
        "accuracy": {"ort_int8": int8.report.to_json(), "ort_bf16": bf16.report.to_json(), "tvmopt_int8": accuracy},
        "bench_int8": report.to_json(),
        "bench_bf16": report_bf16.to_json(),
    }


def relative_to(value, work: Path):
    """`value` with every path under the scratch directory written relative to it: the results file
    is committed, and a path of the machine that ran it means nothing elsewhere."""
    if isinstance(value, dict):
        return {k: relative_to(v, work) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_to(v, work) for v in value]
    if isinstance(value, str) and value.startswith(f"{work}/"):
        return value[len(f"{work}/"):]
    return value


def tvmopt_accuracy(fp32: Path, artifact: Path, samples: int) -> dict | None:
    """tvmopt's own int8 outputs on the report's seeded inputs, against ONNX Runtime fp32."""
    if not (artifact / "model.so").exists():
        return None
    feeds = random_samples(fp32, onnx_input_specs(fp32), samples, 0).feeds  # the report's inputs (seed 0)
    predictor = tvmopt.load(artifact)
    reference = OrtSession(fp32)
    names = [o.name for o in reference.session.get_outputs()]
    ours = [predictor(**feed) for feed in feeds]
    theirs = [reference(feed) for feed in feeds]
    return [vars(o) for o in compare_outputs(names, theirs, ours)]


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.exists() else None


def table(result: dict) -> str:
    """One markdown table: fp32 / int8 / bf16 x {tvmopt, ORT}."""
    rows = {r["name"]: r for r in result["bench_int8"]["results"]}
    bf16 = {r["name"]: r for r in result["bench_bf16"]["results"]}
    sizes, acc = result["sizes"], result["accuracy"]

    def ms(row):
        return f"{row['median_ms']:.3f}" if row and row.get("median_ms") else "-"

    def quality(report_outputs):
        if not report_outputs:
            return "-"
        out = report_outputs[0]
        top1 = f", top-1 {out['top1_agreement']:.1%}" if out.get("top1_agreement") is not None else ""
        return f"cosine {out['cosine_mean']:.5f} (worst {out['cosine_min']:.5f}){top1}"

    def mb(value):
        return f"{value / 1e6:.1f}" if value else "-"

    fp32_t, fp32_o = rows.get("tvm-tuned-fp32"), rows.get("onnxruntime-fp32")
    int8_t, int8_o = rows.get("tvm-tuned"), rows.get("onnxruntime")
    lines = [
        "| precision | engine | median ms | vs same engine fp32 | vs ORT same precision | model MB | accuracy vs fp32 |",
        "|---|---|---|---|---|---|---|",
        f"| fp32 | tvmopt (tuned) | {ms(fp32_t)} | 1.00x | {_ratio(fp32_t, fp32_o)} | {mb(sizes['library_fp32'])} (.so) | exact (max diff {fp32_t['max_abs_diff']:.1e} vs ORT) |"
        if fp32_t and fp32_t.get("median_ms") else "| fp32 | tvmopt (tuned) | - | | | | |",
        f"| fp32 | ONNX Runtime | {ms(fp32_o)} | 1.00x | 1.00x | {mb(sizes['onnx_fp32'])} (.onnx) | reference |",
        f"| int8 | tvmopt (tuned) | {ms(int8_t)} | {_ratio(int8_t, fp32_t)} | {_ratio(int8_t, int8_o)} | {mb(sizes['library_int8'])} (.so) | {quality(acc['tvmopt_int8'])} |",
        f"| int8 | ONNX Runtime | {ms(int8_o)} | {_ratio(int8_o, fp32_o)} | 1.00x | {mb(sizes['onnx_int8'])} (.onnx) | {quality(acc['ort_int8']['outputs'])} |",
        f"| bf16 weights | tvmopt (tuned) | {ms(bf16.get('tvm-tuned'))} | {_ratio(bf16.get('tvm-tuned'), bf16.get('tvm-tuned-fp32'))} | {_ratio(bf16.get('tvm-tuned'), bf16.get('onnxruntime'))} | {mb(sizes['library_bf16'])} (.so) | as ORT bf16 (fp32 compute) |",
        f"| bf16 weights | ONNX Runtime | {ms(bf16.get('onnxruntime'))} | {_ratio(bf16.get('onnxruntime'), bf16.get('onnxruntime-fp32'))} | 1.00x | {mb(sizes['onnx_bf16'])} (.onnx) | {quality(acc['ort_bf16']['outputs'])} |",
    ]
    return "\n".join(lines)


def _ratio(a, b) -> str:
    if not a or not b or not a.get("median_ms") or not b.get("median_ms"):
        return "-"
    return f"{a['median_ms'] / b['median_ms']:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host")
    parser.add_argument("--models", default="bert4,resnet18")
    parser.add_argument("--minutes", type=float, default=12.0, help="int8 tuning wall time per model")
    parser.add_argument("--fp32-minutes", type=float, default=0.0, help="fp32 tuning first (default: use the log)")
    parser.add_argument("--samples", type=int, default=256, help="seeded evaluation inputs")
    parser.add_argument("--log-dir", default="tuning_logs")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--work", default=None, help="scratch directory (default: $TMPDIR/tvmopt-quantized)")
    args = parser.parse_args()
    RESULTS_DIR.mkdir(exist_ok=True)
    root = Path(args.work or os.environ.get("TMPDIR", "/tmp")) / "tvmopt-quantized"
    for name in args.models.split(","):
        work = root / name
        work.mkdir(parents=True, exist_ok=True)
        print(f"== {name} on {args.target}", file=sys.stderr)
        result = run_model(name, args.target, args.minutes, args.fp32_minutes, args.samples, Path(args.log_dir),
                           work, args.rounds, args.runs)
        path = RESULTS_DIR / f"quantized-{name}-{result['target']}.json"
        path.write_text(json.dumps(relative_to(result, work), indent=2, default=float) + "\n")
        print(f"\n### {name} ({result['mode']}, {result['target']})\n")
        print(table(result))
        print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

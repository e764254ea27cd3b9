"""Tune the benchmark zoo, draw each model's tuning curve, and write benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/zoo.py --target x86-avx512 --minutes 12 [--models resnet18,mlp]
    .venv/bin/python benchmarks/zoo.py --target x86-avx512 --minutes 15 --from-scratch --no-merge

--from-scratch measures what a user without tvmopt's shipped logs gets in --minutes: no seeds
from other logs, no shipped reference log to borrow schedules from (TVMOPT_SHIPPED_LOGS points at
an empty directory, for the bench's child processes too).

Per model, each into a fresh log (so the curve starts at zero):
1. `tvmopt.tune` with the full preset, stopped after --minutes of wall time;
2. the tuning curve: the log cut at a few points of the session's history (records are
   appended in measurement order), each cut compiled and timed end to end;
3. `tvmopt bench` on the final log: TVM untuned/tuned, ONNX Runtime, torch, torch.compile,
   interleaved in one run, plus the session's estimate against the measured latency.
Results go to benchmarks/results/<model>-<target>.json and a plot per model; RESULTS.md's zoo
section is rebuilt from every results file, so models can be run one at a time. The final
logs are merged into tuning_logs/<target>/ (the reference logs shipped with tvmopt).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tvmopt
from tvmopt.frontends import zoo
from tvmopt.logs.maintain import merge
from tvmopt.logs.store import RECORD_FILE
from tvmopt.measure.bench import bench
from tvmopt.tuning import make_budget

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
CURVE_POINTS = 5


def tune_model(name: str, target: str, minutes: float, work: Path, from_scratch: bool = False,
               torch_compile: bool = True) -> dict:
    model_def = zoo.ZOO[name]
    onnx_path = model_def.export_onnx(work / f"{name}.onnx")
    model = tvmopt.import_model(onnx_path)
    log_root = work / "logs"
    shutil.rmtree(log_root, ignore_errors=True)
    budget = make_budget("full", timeout_s=minutes * 60)
    log = tvmopt.tune(model, target, budget=budget, log_root=log_root, seed=0, seed_from_logs=not from_scratch)
    session = json.loads(log.session_path.read_text())
    curve = tuning_curve(model, target, log.log_dir, session["history"], work)
    report = bench(name, target, log_root=log_root, work_dir=work / "bench", torch_compile=torch_compile)
    tuned = report.result("tvm-tuned")
    return {
        "model": name,
        "target": log.target,
        "date": time.strftime("%Y-%m-%d"),
        "tuning": {
            "minutes_budget": minutes,
            "from_scratch": from_scratch,
            "wall_s": log.wall_s,
            "trials": log.trials_run,
            "trials_per_min": round(60 * log.trials_run / max(log.wall_s, 1e-9), 1),
            "tasks": len(log.tasks),
            "untuned_tasks": log.untuned_tasks,
            "estimated_ms": log.estimated_ms,
            "measured_ms": tuned.median_ms if tuned else None,
            "status": log.status,
        },
        "curve": curve,
        "bench": report.to_json(),
        "log_dir": str(log.log_dir),
    }


def tuning_curve(model, target: str, log_dir: Path, history: list, work: Path) -> list[dict]:
    """Measured end-to-end latency of the log as it stood at a few points of the session."""
    if not history:
        return []
    picks = sorted({min(len(history) - 1, round((len(history) - 1) * (i / CURVE_POINTS) ** 2))
                    for i in range(1, CURVE_POINTS + 1)})
    lines = (log_dir / RECORD_FILE).read_text().splitlines(keepends=True)
    points, seen = [], set()
    for index in picks:
        wall_s, trials, estimated = history[index]
        if trials in seen:
            continue
        seen.add(trials)
        cut = work / "curve" / f"{trials}"
        cut_log = cut / Path(log_dir).name
        shutil.rmtree(cut, ignore_errors=True)
        shutil.copytree(log_dir, cut_log, ignore=shutil.ignore_patterns("sessions"))
        (cut_log / RECORD_FILE).write_text("".join(lines[:trials]))
        artifact = tvmopt.compile(model, target, cut / "artifact", log_root=cut)
        predictor = tvmopt.load(artifact.path)
        latency = predictor.benchmark(repeat=20)
        points.append({"wall_s": wall_s, "trials": trials, "estimated_ms": estimated,
                       "measured_ms": round(latency.median_ms, 5),
                       "tasks_tuned": artifact.manifest.tuning.tasks_tuned})
        print(f"  curve: {wall_s / 60:5.1f} min, {trials:5d} trials -> {latency.median_ms:.3f} ms "
              f"(estimate {estimated})", file=sys.stderr)
    return points


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curve = result["curve"]
    ax.plot([p["wall_s"] / 60 for p in curve], [p["measured_ms"] for p in curve], "o-", label="tvmopt tuned (measured)")
    est = [(p["wall_s"] / 60, p["estimated_ms"]) for p in curve if p["estimated_ms"]]
    if est:
        ax.plot(*zip(*est), "x--", alpha=0.6, label="MetaSchedule estimate")
    styles = {"onnxruntime": "r-", "torch": "g--", "torch-compile": "m:"}
    for row in result["bench"]["results"]:
        if row["name"] in styles and row["median_ms"]:
            ax.axhline(row["median_ms"], color=styles[row["name"]][0], linestyle=styles[row["name"]][1:],
                       label=f"{row['name']} {row['median_ms']:.2f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("tuning wall time (min)")
    ax.set_ylabel("end-to-end latency (ms, log)")
    ax.set_title(f"{result['model']} on {result['target']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def results_section() -> str:
    """The zoo table in RESULTS.md, from every benchmarks/results/*.json."""
    rows, ratios = [], {}
    for path in sorted(RESULTS_DIR.glob("*.json")):
        r = json.loads(path.read_text())
        if "curve" not in r:
            continue  # another benchmark's results (coverage.json, quantized-*.json)
        by = {x["name"]: x for x in r["bench"]["results"]}
        ratio = lambda n: f"{by[n]['ratio_to_onnxruntime']:.2f}x" if by.get(n, {}).get("median_ms") else "-"  # noqa: E731
        ms = lambda n: f"{by[n]['median_ms']:.3f}" if by.get(n, {}).get("median_ms") else "-"  # noqa: E731
        t = r["tuning"]
        if by.get("tvm-tuned", {}).get("median_ms"):
            ratios.setdefault(r["target"], []).append(by["tvm-tuned"]["ratio_to_onnxruntime"])
        est = f"{t['estimated_ms']:.3f}" if t["estimated_ms"] else "n/a"
        rows.append(
            f"| {r['model']} | {r['target']} | {t['wall_s'] / 60:.1f}{' (scratch)' if t.get('from_scratch') else ''} | {t['trials']} | {len(t['untuned_tasks'])}/{t['tasks']} "
            f"| {ms('tvm-untuned')} | {ms('tvm-tuned')} ({ratio('tvm-tuned')}) | {est} | {ms('onnxruntime')} "
            f"| {ms('torch')} ({ratio('torch')}) | {ms('torch-compile')} ({ratio('torch-compile')}) "
            f"| {by.get('tvm-tuned', {}).get('max_abs_diff') or 0:.1e} | {r['date']} |"
        )
    geomeans = "; ".join(f"{target} **{statistics.geometric_mean(values):.2f}x** over {len(values)} models"
                         for target, values in sorted(ratios.items()))
    head = (
        "| model | target | tuned min | trials | untuned tasks | TVM untuned ms | TVM tuned ms (vs ORT) "
        "| estimate ms | ORT ms | torch ms (vs ORT) | torch.compile ms (vs ORT) | max abs diff | date |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    plots = "\n".join(f"![{p.stem}](results/{p.name})" for p in sorted(RESULTS_DIR.glob("*.png")))
    return (f"{head}\n" + "\n".join(rows) + "\n\n"
            + (f"Geomean tuned/ORT: {geomeans}.\n\n" if geomeans else "")
            + plots + "\n")


def bench_text(report: dict) -> str:
    from tvmopt.measure.timing import Timing, timings_table

    return timings_table([Timing(**r) for r in report["results"]], f"model {report['model']} on {report['target']}")


def write_results_md() -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- zoo:begin -->", "<!-- zoo:end -->"
    section = f"{start}\n{results_section()}{end}"
    if start in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += "\n## Zoo: tuned with tvmopt vs ONNX Runtime and PyTorch\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="host")
    parser.add_argument("--minutes", type=float, default=12.0, help="tuning wall time per model")
    parser.add_argument("--models", default=",".join(zoo.ZOO), help="comma-separated zoo names")
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--no-merge", action="store_true", help="don't merge the logs into tuning_logs/")
    parser.add_argument("--from-scratch", action="store_true",
                        help="no seeds and no shipped reference logs: what --minutes give a user without them")
    parser.add_argument("--no-torch-compile", action="store_true", help="skip torch.compile (minutes per model)")
    args = parser.parse_args()
    if args.from_scratch:
        empty = Path(tempfile.mkdtemp(prefix="tvmopt-no-shipped-logs-"))
        atexit.register(shutil.rmtree, empty, True)
        os.environ["TVMOPT_SHIPPED_LOGS"] = str(empty)
    RESULTS_DIR.mkdir(exist_ok=True)
    root = Path(args.work or os.environ.get("TMPDIR", "/tmp")) / "tvmopt-zoo"
    for name in args.models.split(","):
        work = root / name
        work.mkdir(parents=True, exist_ok=True)
        print(f"== {name} on {args.target}: tuning {args.minutes} min", file=sys.stderr)
        result = tune_model(name, args.target, args.minutes, work, args.from_scratch, not args.no_torch_compile)
        stem = f"{name}-{result['target']}"
        log_dir = result.pop("log_dir")  # a scratch path of this machine: not for the results file
        (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        plot(result, RESULTS_DIR / f"{stem}.png")
        print(bench_text(result["bench"]))
        t = result["tuning"]
        print(f"estimate {t['estimated_ms']} ms vs measured {t['measured_ms']} ms; "
              f"{t['trials']} trials in {t['wall_s'] / 60:.1f} min")
        if not args.no_merge:
            merge([log_dir], Path("tuning_logs") / result["target"])
        write_results_md()


if __name__ == "__main__":
    main()

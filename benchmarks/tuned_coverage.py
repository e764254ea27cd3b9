"""Tuned-path coverage: architectures no test names, through `tvmopt tune -> compile -> run`.

benchmarks/coverage.py checks the import and the untuned build; this runs what a user runs on
an unseen model: the CLI's smoke-budget tune (every template and design space, a few trials
each) into a fresh log, compile with that log, run the artifact on a seeded input, and compare
with ONNX Runtime on the same ONNX file. Random weights, nothing downloaded; each model's CLI
steps run as subprocesses, as a user would run them.

    pip install -e '.[coverage]'      # the torchvision wheel matching torch 2.13
    python benchmarks/tuned_coverage.py [--models squeezenet1_1,googlenet] [--image 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from coverage import _close, keep_signal, shim_torchvision  # noqa: E402

# Grouped (resnext, regnet, shufflenet), concat branches (googlenet, squeezenet), depthwise and
# odd channel counts (mnasnet): the conv shapes the zoo models do not have.
MODELS = ("squeezenet1_1", "shufflenet_v2_x0_5", "resnext50_32x4d", "googlenet", "mnasnet0_5", "regnet_x_400mf")


@dataclass
class Row:
    model: str
    image: int
    status: str = "failed"
    failed_step: str = ""
    error: str = ""
    max_diff: float | None = None
    seconds: float = 0.0


def export(name: str, image: int, path: Path) -> np.ndarray:
    """torchvision `name` (random weights, seed 0) as legacy-exported ONNX; returns its input."""
    import torch

    shim_torchvision()
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    keep_signal(model)
    x = torch.randn(1, 3, image, image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["output"],
                          opset_version=17, dynamo=False)
    return x.numpy()


def run_model(name: str, image: int, work: Path, tune_minutes: float) -> Row:
    import onnxruntime as ort

    row = Row(name, image)
    started = time.monotonic()
    onnx_path = work / f"{name}.onnx"
    x = export(name, image, onnx_path)
    np.savez(work / "input.npz", input=x)
    steps = {
        "tune": ["tune", str(onnx_path), "--budget", "smoke", "--timeout", str(tune_minutes), "--log-dir",
                 str(work / "logs"), "--no-progress"],
        "compile": ["compile", str(onnx_path), "--log-dir", str(work / "logs"), "-o", str(work / "artifact")],
        "run": ["run", str(work / "artifact"), "--inputs", str(work / "input.npz"), "--save-outputs",
                str(work / "output.npz"), "--repeat", "5"],
    }
    for step, args in steps.items():
        proc = subprocess.run([sys.executable, "-m", "tvmopt", *args], capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            row.failed_step, row.error = step, (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            row.seconds = round(time.monotonic() - started, 1)
            return row
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"input": x})[0]
    with np.load(work / "output.npz") as out:
        got = out[out.files[0]]
    row.max_diff, ok = _close(got, want)
    row.status = "ok" if ok else "mismatch"
    # A comparison only checks something if the output depends on the input.
    other = session.run(None, {"input": np.flip(x, axis=-1).copy() + 1.0})[0]
    if _close(other, want)[1]:
        row.status = "degenerate (the output does not depend on the input)"
    row.seconds = round(time.monotonic() - started, 1)
    return row


def render(rows: list[Row]) -> str:
    lines = ["| model | input | tune (smoke) -> compile -> run | max diff vs ORT | seconds |", "|---|---|---|---|---|"]
    for r in rows:
        result = r.status if not r.failed_step else f"failed at {r.failed_step}: {r.error}"
        diff = f"{r.max_diff:.1e}" if r.max_diff is not None else "-"
        lines.append(f"| {r.model} | 1x3x{r.image}x{r.image} | {result} | {diff} | {r.seconds:.0f} |")
    return "\n".join(lines)


def _save(path: Path, rows: list[Row]) -> None:
    """Merge `rows` into the JSON at `path`: a run of some models at one size replaces their earlier
    rows at that size and keeps the others (a run of three models no longer erases the rest)."""
    kept = []
    if path.exists():
        try:
            kept = [r for r in json.loads(path.read_text()) if isinstance(r, dict)]
        except (OSError, ValueError) as err:
            print(f"{path}: unreadable ({err}); writing this run's rows only", file=sys.stderr)
    fresh = {(r.model, r.image) for r in rows}
    merged = [r for r in kept if (r.get("model"), r.get("image")) not in fresh] + [asdict(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="torchvision model names, comma-separated")
    parser.add_argument("--image", type=int, default=64, help="input height and width (default 64)")
    parser.add_argument("--tune-minutes", type=float, default=6, help="tuning time limit per model")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "tuned-coverage.json")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix=f"tvmopt-tuned-{name}-") as work:
            try:
                row = run_model(name, args.image, Path(work), args.tune_minutes)
            except Exception as err:  # noqa: BLE001 - an export failure is a row, not the end of the run
                row = Row(name, args.image, failed_step="export", error=f"{type(err).__name__}: {err}")
        rows.append(row)
        print(render([row]).splitlines()[-1], flush=True)
    _save(args.json, rows)
    print(render(rows))
    return 0 if all(r.status == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounded load test of `tvmopt serve` on 127.0.0.1, with ONNX Runtime behind the same server stack.

For each zoo model (exported with a dynamic batch axis): compile a bucketed artifact with the
tuning records of the target's log (optionally tune the buckets first), time the in-process
Predictor, then start one server per configuration
    tvmopt + dynamic batching | tvmopt, no batching | ORT + dynamic batching | ORT, no batching
and drive it with a fixed number of asyncio clients (aiohttp, keep-alive, one-record binary v2
requests) for a fixed number of seconds per concurrency level. Reports throughput, p50, p99 and
errors, and checks the goals of issue 13. Every server is stopped (SIGTERM, then its process group
is killed) before the script ends.

    .venv/bin/python benchmarks/serve_load.py --models mlp,bert4 --concurrency 1,4,16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tvmopt  # noqa: E402
from tvmopt.frontends import zoo  # noqa: E402
from tvmopt.serving import start_server  # noqa: E402
from tvmopt.serving.protocol import v2_datatype  # noqa: E402


def request_body(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """One v2 request with binary inputs and binary outputs (what tritonclient sends)."""
    header = json.dumps({
        "inputs": [{"name": n, "shape": list(a.shape), "datatype": v2_datatype(str(a.dtype)),
                    "parameters": {"binary_data_size": a.nbytes}} for n, a in inputs.items()],
        "parameters": {"binary_data_output": True},
    }).encode()
    body = header + b"".join(a.tobytes() for a in inputs.values())
    return body, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


async def load(url: str, model: str, body: bytes, headers: dict, clients: int, seconds: float) -> dict:
    """`clients` concurrent clients, each sending requests back to back for `seconds`."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        endpoint = f"{url}/v2/models/{model}/infer"

        async def one_client(deadline: float) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    async with session.post(endpoint, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        warm = time.perf_counter() + min(1.0, seconds / 5)
        await asyncio.gather(*(one_client(warm) for _ in range(clients)))
        latencies.clear()
        errors = 0
        started = time.perf_counter()
        await asyncio.gather(*(one_client(started + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors, "throughput": len(latencies) / elapsed,
            "p50_ms": float(np.median(latencies) * 1e3) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1e3) if latencies else None}


def in_process_median_ms(predictor, inputs: dict[str, np.ndarray], calls: int = 300) -> float:
    for _ in range(20):
        predictor(**inputs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predictor(**inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_model(name: str, args, work: Path) -> list[dict]:
    entry = zoo.get(name)
    onnx_path = entry.export_onnx(work / f"{name}.onnx", dynamic_batch=True)
    model = tvmopt.import_model(onnx_path, input_shapes=None)
    sizes = tuple(int(s) for s in args.batch_sizes.split(","))
    if args.tune_minutes:
        from tvmopt.tuning import make_budget

        tvmopt.tune(model, args.target, budget=make_budget("quick", timeout_s=args.tune_minutes * 60),
                    log_root=args.log_dir, batch_sizes=sizes)
    artifact = tvmopt.compile(model, args.target, work / f"{name}-art", log_root=args.log_dir, batch_sizes=sizes)
    tuning = artifact.manifest.tuning
    print(f"{name}: {tuning.tasks_tuned}/{tuning.tasks_total} kernels tuned, batch sizes {sizes}", flush=True)
    predictor = tvmopt.load(artifact.path)
    inputs = predictor.random_inputs(rows=1)
    baseline = in_process_median_ms(predictor, inputs)
    print(f"{name}: in-process Predictor median {baseline:.3f} ms per 1-record call", flush=True)
    body, headers = request_body(inputs)
    rows = []
    configs = [("tvmopt", artifact.path, str(sizes[-1])), ("tvmopt", artifact.path, "1"),
               ("onnxruntime", onnx_path, str(sizes[-1])), ("onnxruntime", onnx_path, "1")]
    for backend, path, max_batch in configs:
        server = start_server([f"{name}={path}"], args=["--max-batch-size", max_batch,
                                                        "--max-queue-delay-ms", str(args.queue_delay_ms)])
        try:
            for clients in args.concurrency:
                result = asyncio.run(load(server.url, name, body, headers, clients, args.seconds))
                row = {"model": name, "backend": backend, "batching": max_batch != "1", "clients": clients,
                       "in_process_ms": round(baseline, 4), **result}
                rows.append(row)
                print(f"  {backend:11s} batching={'on ' if row['batching'] else 'off'} c={clients:<3d} "
                      f"{result['throughput']:8.1f} req/s  p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms"
                      f"  errors {result['errors']}", flush=True)
        finally:
            server.stop()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | backend | dynamic batching | clients | req/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['backend']} | {'on' if r['batching'] else 'off'} | {r['clients']} | "
                     f"{r['throughput']:.1f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} |")
    return "\n".join(lines)


def goals(rows: list[dict]) -> list[str]:
    """Issue 13's goals, each with the figures it is judged on."""
    out = []

    def find(model, backend, batching, clients):
        return next((r for r in rows if (r["model"], r["backend"], r["batching"], r["clients"]) ==
                     (model, backend, batching, clients)), None)

    out.append(f"errors under load: {sum(r['errors'] for r in rows)}")
    for model in sorted({r["model"] for r in rows}):
        c1 = find(model, "tvmopt", False, 1)
        if c1:
            gap = c1["p50_ms"] - c1["in_process_ms"]
            out.append(f"{model}: c=1 server p50 {c1['p50_ms']:.3f} ms vs in-process {c1['in_process_ms']:.3f} ms: "
                       f"+{gap:.3f} ms (goal <= 0.3)")
        high = max(r["clients"] for r in rows)
        on, off = find(model, "tvmopt", True, high), find(model, "tvmopt", False, high)
        if on and off:
            out.append(f"{model}: c={high} dynamic batching {on['throughput'] / off['throughput']:.2f}x the "
                       "throughput of no batching (goal >= 2x on the MLP)")
        best = {b: max((r["throughput"] for r in rows if r["model"] == model and r["backend"] == b), default=0)
                for b in ("tvmopt", "onnxruntime")}
        if best["onnxruntime"]:
            out.append(f"{model}: best tvmopt-served throughput {best['tvmopt'] / best['onnxruntime']:.2f}x the best "
                       "ORT-served (goal >= 1x)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,bert4")
    parser.add_argument("--concurrency", default="1,4,16", type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency level")
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--queue-delay-ms", type=float, default=0.0)
    parser.add_argument("--target", default="host")
    parser.add_argument("--log-dir", default="tuning_logs")
    parser.add_argument("--tune-minutes", type=float, default=0.0, help="tune the buckets first (per model)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tvmopt-load-") as tmp:
        for name in args.models.split(","):
            rows.extend(bench_model(name, args, Path(tmp)))
    print()
    print(table(rows))
    print()
    for line in goals(rows):
        print("- " + line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Bounded load test of `tvmopt serve` on 127.0.0.1, with ONNX Runtime behind the same server stack.

For each zoo model (exported with a dynamic batch axis): compile a bucketed artifact with the
tuning records of the target's log (optionally tune the buckets first), time the in-process
Predictor, then start one server per configuration
    tvmopt + dynamic batching | tvmopt, no batching | ORT + dynamic batching | ORT, no batching
and drive it with a fixed number of asyncio clients (a lean HTTP/1.1 client, or aiohttp; keep-alive, one-record binary v2
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


async def load(url: str, model: str, body: bytes, headers: dict, clients: int, seconds: float,
               client: str = "raw") -> dict:
    """`clients` concurrent clients, each on its own keep-alive connection, sending requests back
    to back for `seconds` (after a warm-up)."""
    send = _raw_client if client == "raw" else _aiohttp_client
    latencies: list[float] = []
    errors = [0]
    endpoint = f"{url}/v2/models/{model}/infer"
    warm = time.perf_counter() + min(1.0, seconds / 5)
    await asyncio.gather(*(send(endpoint, body, headers, warm, [], errors) for _ in range(clients)))
    errors = [0]
    started = time.perf_counter()
    await asyncio.gather(*(send(endpoint, body, headers, started + seconds, latencies, errors)
                           for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors[0], "throughput": len(latencies) / elapsed,
            "p50_ms": float(np.median(latencies) * 1e3) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1e3) if latencies else None}


async def _raw_client(endpoint: str, body: bytes, headers: dict, deadline: float, latencies: list, errors: list) -> None:
    """One client as lean as a C++ one (Triton's perf_analyzer): the request's bytes built once,
    written in one piece; the reply read by its Content-Length. On this 2-core machine aiohttp
    spends about 0.5 ms of CPU per request, as much as the server, on the cores the server needs."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    writer = None
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            start = time.perf_counter()
            try:
                writer.write(request)
                status = int((await reader.readline()).split(b" ", 2)[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                errors[0] += 1
                writer.close()
                writer = None
                continue
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors[0] += 1
    finally:
        if writer is not None:
            writer.close()


async def _aiohttp_client(endpoint: str, body: bytes, headers: dict, deadline: float, latencies: list,
                          errors: list) -> None:
    """One aiohttp client session (keep-alive), as a Python application would call the server."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
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
                errors[0] += 1


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
                result = _run(load(server.url, name, body, headers, clients, args.seconds, args.client))
                row = {"model": name, "backend": backend, "batching": max_batch != "1", "clients": clients,
                       "in_process_ms": round(baseline, 4), **result}
                rows.append(row)
                print(f"  {backend:11s} batching={'on ' if row['batching'] else 'off'} c={clients:<3d} "
                      f"{result['throughput']:8.1f} req/s  p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms"
                      f"  errors {result['errors']}", flush=True)
        finally:
            server.stop()
    return rows


def _run(coroutine):
    """asyncio.run on uvloop where installed (it comes with tvmopt[serve]): a leaner client loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


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
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="raw: a lean asyncio HTTP/1.1 client (default); aiohttp: a typical Python client, "
                             "whose own CPU time competes with the server on a small machine")
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

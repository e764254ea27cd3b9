"""Which server stack `tvmopt serve` is built on: per-request overhead and footprint, measured.

Serves one trivial model (y = 2x, FP32 1x64, numpy) behind (a) tvmopt's stack: uvicorn
(uvloop + httptools) + starlette implementing the Open Inference Protocol (tvmopt.serving.app),
and (b) KServe's Python ModelServer (FastAPI + uvicorn), then sends the same v2 JSON request
sequentially over one keep-alive connection and reports p50/p99 latency, the server's resident
memory and its import time. KServe lives in a throwaway venv outside the repository:

    python3 -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve==0.21.0
    .venv/bin/python benchmarks/serving_stack.py --kserve-python /tmp/kserve-venv/bin/python

Install sizes (du of site-packages over a venv holding only numpy) are measured by hand; the
commands are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil

KSERVE_SERVER = """
import sys
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

class Double(Model):
    def __init__(self):
        super().__init__("double")
        self.ready = True

    def predict(self, payload: InferRequest, headers=None):
        x = payload.inputs[0].as_numpy()
        out = InferOutput(name="y", shape=list(x.shape), datatype="FP32")
        out.set_data_from_numpy(x * 2, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id)

ModelServer(http_port=int(sys.argv[1]), grpc_port=int(sys.argv[2]), workers=1, enable_grpc=False).start([Double()])
"""

TVMOPT_SERVER = """
import socket, sys
import numpy as np
import uvicorn
from tvmopt.serving.app import create_app
from tvmopt.specs import TensorSpec

class Double:
    name, version, platform = "double", "1", "numpy"
    inputs = (TensorSpec("x", ("batch", 64), "float32"),)
    outputs = (TensorSpec("y", ("batch", 64), "float32"),)
    batch_dim, max_batch_size = "batch", 1

    def run_many(self, requests):
        return [[r[0] * 2] for r in requests]

app = create_app([Double()])
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                        log_level="warning", access_log=False)
uvicorn.Server(config).run()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with status {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server not ready")


def measure(port: int, requests: int, warmup: int = 200) -> tuple[float, float]:
    x = np.random.default_rng(0).standard_normal((1, 64)).astype("float32")
    body = json.dumps({"id": "1", "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    latencies = []
    for i in range(warmup + requests):
        start = time.perf_counter()
        conn.request("POST", "/v2/models/double/infer", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if i >= warmup:
            latencies.append(time.perf_counter() - start)
    assert response.status == 200, data
    got = np.array(json.loads(data)["outputs"][0]["data"], "float32")
    assert np.allclose(got, 2 * x.ravel()), "wrong answer"
    return float(np.median(latencies) * 1e3), float(np.percentile(latencies, 99) * 1e3)


def import_seconds(python: str, statement: str) -> float:
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([python, "-c", statement], check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return min(runs)


def run_stack(name: str, python: str, source: str, requests: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "server.py"
        script.write_text(textwrap.dedent(source))
        log = open(Path(tmp) / "server.log", "w")  # not a pipe: KServe logs every request, a full pipe blocks it
        process = subprocess.Popen([python, str(script), str(port), str(free_port())], stdout=log,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        try:
            wait_ready(port, process)
            p50, p99 = measure(port, requests)
            rss = sum(p.memory_info().rss for p in [psutil.Process(process.pid),
                                                      *psutil.Process(process.pid).children(recursive=True)])
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
    return {"stack": name, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "rss_mb": round(rss / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kserve-python", required=True, help="python of a venv with kserve installed")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    rows = [
        run_stack("uvicorn + starlette (tvmopt.serving)", sys.executable, TVMOPT_SERVER, args.requests),
        run_stack("KServe ModelServer", args.kserve_python, KSERVE_SERVER, args.requests),
    ]
    rows[0]["import_s"] = round(import_seconds(sys.executable, "import uvicorn, tvmopt.serving.app"), 2)
    rows[1]["import_s"] = round(import_seconds(args.kserve_python, "import kserve"), 2)
    print("| stack | p50 ms | p99 ms | server RSS MB | import s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stack']} | {r['p50_ms']} | {r['p99_ms']} | {r['rss_mb']} | {r['import_s']} |")


if __name__ == "__main__":
    main()

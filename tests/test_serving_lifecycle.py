"""The server's life: SIGTERM drains (in-flight requests finish, new ones get 503), several worker
processes share a port and their metrics, startup errors are one line, nothing outlives it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
import tvmopt
from conftest import run_cli

pytest.importorskip("uvicorn")
from tvmopt.serving import start_server  # noqa: E402


@pytest.fixture(scope="module")
def mlp_artifact(mlp_dynamic_onnx, tmp_path_factory):
    return tvmopt.compile(tvmopt.import_model(mlp_dynamic_onnx), "host", tmp_path_factory.mktemp("life") / "mlp",
                          log_root=None, batch_sizes=(1, 8)).path


def post(url: str, rows: int = 1, timeout: float = 30) -> tuple[int, dict]:
    x = np.ones((rows, 64), "float32")
    body = json.dumps({"inputs": [{"name": "x", "shape": [rows, 64], "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    request = urllib.request.Request(url + "/v2/models/mlp/infer", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(mlp_artifact):
    # A long queue delay keeps the first requests in flight while SIGTERM arrives.
    server = start_server([f"mlp={mlp_artifact}"], args=["--max-queue-delay-ms", "1500"])
    try:
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(post(server.url))) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the requests are queued, waiting for their batch
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(0.2)
        assert status(server.url + "/v2/health/ready") == 503
        assert status(server.url + "/v2/health/live") == 200
        code, answer = post(server.url)
        assert code == 503 and answer["error"] == "the server is shutting down"
        for thread in threads:
            thread.join(30)
        assert [r[0] for r in results] == [200, 200, 200], results
        expected = tvmopt.load(mlp_artifact)(np.ones((1, 64), "float32"))[0].ravel()
        for _, answer in results:
            np.testing.assert_allclose(answer["outputs"][0]["data"], expected, rtol=1e-5)
        assert server.process.wait(30) == 0  # drained, then exits cleanly
    finally:
        server.stop()


def test_workers_share_the_port_and_the_metrics(mlp_artifact):
    # --inline-under-ms 0: batches on each model's own runner thread (a model this small would
    # otherwise run them on the event loop's thread, as test_serving's server does).
    with start_server([f"mlp={mlp_artifact}"], args=["--workers", "2", "--inline-under-ms", "0"]) as server:
        children = psutil.Process(server.pid).children()
        workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in children]  # (+ multiprocessing's resource tracker)
        for _ in range(12):
            assert post(server.url, rows=3)[0] == 200
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        # Multiprocess mode: whichever worker answers the scrape reports all requests.
        assert 'tvmopt_requests_total{model="mlp",status="200"} 12.0' in metrics, metrics[:2000]
        assert server.stop() == 0  # SIGTERM reaches every worker; each drains and exits, then the supervisor
    assert "batches run on a thread of their own" in server.log() and "event loop" not in server.log(), server.log()
    # Every child exits too; multiprocessing's resource tracker may take a moment after the
    # supervisor (it leaves when its pipe closes), more so on a loaded machine.
    _, alive = psutil.wait_procs(children, timeout=15)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]


def test_a_model_that_fails_its_warm_up_is_still_served(tmp_path):
    """The warm-up's inputs are not valid for every model (here: ids 10..14 into a 5-row table;
    the warm-up sends integer 0s); the failure is logged and the model's valid requests served."""
    import onnx
    from onnx import TensorProto, helper

    table = np.arange(10, dtype=np.float32).reshape(5, 2)
    graph = helper.make_graph(
        [helper.make_node("Sub", ["index", "first"], ["row"]),
         helper.make_node("Gather", ["table", "row"], ["rows"], axis=0)], "lookup",
        [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("table", TensorProto.FLOAT, [5, 2], table.ravel()),
         helper.make_tensor("first", TensorProto.INT64, [], [10])])
    path = tmp_path / "lookup.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with start_server([path]) as server:
        body = json.dumps({"inputs": [{"name": "index", "shape": [2], "datatype": "INT64", "data": [14, 11]}]}).encode()
        request = urllib.request.Request(server.url + "/v2/models/lookup/infer", body)
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["outputs"][0]["data"] == [8.0, 9.0, 2.0, 3.0]
        assert "lookup: warm-up failed" in server.log(), server.log()


def test_startup_errors_are_one_line(tmp_path, mlp_artifact):
    proc = run_cli("serve", str(tmp_path / "missing"), "--port", "0", timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"tvmopt: error: {tmp_path / 'missing'}: no such artifact"
    proc = run_cli("serve", f"a={mlp_artifact}", f"a={mlp_artifact}", "--port", "0", timeout=120)
    assert proc.returncode == 2 and "are both named 'a'" in proc.stderr
    proc = run_cli("serve", str(mlp_artifact), "--workers", "0", timeout=120)
    assert proc.returncode == 2 and "--workers 0" in proc.stderr


def test_kserve_manifest_runs_this_cli():
    """deploy/kserve/inferenceservice.yaml starts `tvmopt serve` with arguments this CLI accepts and
    probes the endpoints it serves."""
    import yaml
    from conftest import REPO
    from tvmopt.cli import build_parser

    manifest = yaml.safe_load((REPO / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    assert manifest["kind"] == "InferenceService"
    container = manifest["spec"]["predictor"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["tvmopt", "serve"]
    args = build_parser().parse_args(command[1:])
    assert args.artifacts == ["mlp=/mnt/models"] and args.port == container["ports"][0]["containerPort"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert manifest["spec"]["predictor"]["terminationGracePeriodSeconds"] > args.grace_s

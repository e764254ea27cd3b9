"""`tvmopt serve` as clients see it: tritonclient's HTTP client against one server on 127.0.0.1,
answers matching the in-process Predictor, dynamic batching, curl-level bad requests, metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tvmopt
from conftest import ort_run

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tvmopt.serving import start_server  # noqa: E402

MAX_REQUEST_MB = 0.25
pytestmark = pytest.mark.skipif(shutil.which("curl") is None,
                                reason="the raw-HTTP tests use curl (apt-get install curl)")


def write_gather_onnx(path: Path) -> Path:
    """y[b, 0] = x[b, idx[b, 0]]: ONNX Runtime raises on an index out of range, a real model failure."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=1)], "gather",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def served(mlp_dynamic_onnx, cnn_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    mlp = tvmopt.compile(tvmopt.import_model(mlp_dynamic_onnx), "host", root / "mlp", log_root=None,
                         batch_sizes=(1, 4, 8))
    cnn = tvmopt.compile(tvmopt.import_model(cnn_onnx), "host", root / "cnn", log_root=None)
    gather = write_gather_onnx(root / "gather.onnx")
    models = [f"mlp={mlp.path}", cnn.path, f"gather={gather}", f"mlp_ort={mlp_dynamic_onnx}"]
    with start_server(models, args=["--max-queue-delay-ms", "20", "--max-request-mb", str(MAX_REQUEST_MB)]) as server:
        yield SimpleNamespace(server=server, url=server.url, mlp=tvmopt.load(mlp.path), cnn=tvmopt.load(cnn.path),
                              cnn_onnx=cnn_onnx, mlp_onnx=mlp_dynamic_onnx,
                              client=httpclient.InferenceServerClient(server.host_port, concurrency=16))


def infer(client, model: str, arrays: dict[str, np.ndarray], binary: bool = True, outputs=None):
    inputs = []
    for name, array in arrays.items():
        item = httpclient.InferInput(name, list(array.shape), {"float32": "FP32", "int64": "INT64"}[str(array.dtype)])
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in outputs] if outputs else None
    return client.infer(model, inputs, outputs=wanted)


def test_health_and_metadata(served):
    # Models this small run their batches on the event loop's thread (timed at warm-up).
    assert re.search(r"mlp: a 8-row batch takes [\d.]+ ms; batches run on the event loop's thread",
                     served.server.log()), served.server.log()
    client = served.client
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("small_cnn") and not client.is_model_ready("nope")
    meta = client.get_model_metadata("mlp")
    assert meta["platform"] == "tvmopt_tvm" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}]
    cnn = client.get_model_metadata("small_cnn")
    assert cnn["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32]}]
    assert client.get_model_metadata("mlp_ort")["platform"] == "onnxruntime_onnx"
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == 8 and config["input"][0]["dims"] == [64]
    assert client.get_model_config("small_cnn")["max_batch_size"] == 0
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification",
                                                          "model_configuration", "statistics"]


@pytest.mark.parametrize("rows", [1, 3, 8, 13])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_matches_the_in_process_predictor(served, rows, binary):
    x = np.random.default_rng(rows).standard_normal((rows, 64)).astype("float32")
    result = infer(served.client, "mlp", {"x": x}, binary=binary, outputs=["y"])
    np.testing.assert_allclose(result.as_numpy("y"), served.mlp(x)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("y"), ort_run(served.mlp_onnx, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("binary", [True, False])
def test_classification_extension_ranks_each_row(served, binary):
    """tritonclient's class_count: the top k of each row as b"value:index", largest first."""
    x = np.random.default_rng(5).standard_normal((3, 64)).astype("float32")
    item = httpclient.InferInput("x", [3, 64], "FP32")
    item.set_data_from_numpy(x, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput("y", binary_data=binary, class_count=3)]
    got = served.client.infer("mlp", [item], outputs=wanted).as_numpy("y")
    assert got.shape == (3, 3)
    scores = served.mlp(x)[0]
    for row, labels in zip(scores, got):
        parsed = [(float(v), int(i)) for v, i in (str(label.decode() if isinstance(label, bytes) else label).split(":")
                                                   for label in labels)]
        assert [i for _, i in parsed] == list(np.argsort(-row)[:3])
        np.testing.assert_allclose([v for v, _ in parsed], row[[i for _, i in parsed]], atol=1e-5)


def test_statistics_extension_counts_requests_and_runs(served):
    before = served.client.get_inference_statistics("small_cnn")["model_stats"][0]
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    for _ in range(3):
        infer(served.client, "small_cnn", {"input": image})
    after = served.client.get_inference_statistics("small_cnn")["model_stats"][0]
    assert after["name"] == "small_cnn" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["execution_count"] - before["execution_count"] == 3
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 3 and success["ns"] > 0
    assert any(b["batch_size"] == 1 and b["compute_infer"]["count"] >= 3 for b in after["batch_stats"])
    every = served.client.get_inference_statistics()["model_stats"]
    assert sorted(m["name"] for m in every) == ["gather", "mlp", "mlp_ort", "small_cnn"]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        served.client.get_inference_statistics("nope")


def test_static_model_and_onnxruntime_backend(served):
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    got = infer(served.client, "small_cnn", {"input": image}).as_numpy("logits")
    np.testing.assert_array_equal(got, served.cnn(image)[0])
    np.testing.assert_allclose(got, ort_run(served.cnn_onnx, {"input": image})[0], rtol=1e-4, atol=1e-4)
    x = np.random.default_rng(1).standard_normal((2, 64)).astype("float32")
    np.testing.assert_allclose(infer(served.client, "mlp_ort", {"x": x}).as_numpy("y"),
                               ort_run(served.mlp_onnx, {"x": x})[0], rtol=1e-6)


def _metric(url: str, name: str, labels: str) -> float:
    text = subprocess.run(["curl", "-s", url + "/metrics"], capture_output=True, text=True, check=True).stdout
    match = re.search(re.escape(name) + r"\{" + labels + r"\} (\S+)", text)
    return float(match.group(1)) if match else 0.0


def test_concurrent_requests_are_batched_and_split_back(served):
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((int(rng.integers(1, 4)), 64)).astype("float32") for _ in range(24)]
    runs_before = _metric(served.url, "tvmopt_batch_requests_count", 'model="mlp"')
    requests_before = _metric(served.url, "tvmopt_batch_requests_sum", 'model="mlp"')
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda x: infer(httpclient.InferenceServerClient(served.server.host_port), "mlp",
                                                {"x": x}).as_numpy("y"), xs))
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y, served.mlp(x)[0], rtol=1e-5, atol=1e-6)
    runs = _metric(served.url, "tvmopt_batch_requests_count", 'model="mlp"') - runs_before
    merged = _metric(served.url, "tvmopt_batch_requests_sum", 'model="mlp"') - requests_before
    assert merged == len(xs) and runs < len(xs), f"{len(xs)} requests ran in {runs} batches: nothing was merged"
    assert _metric(served.url, "tvmopt_batch_size_bucket", 'le="8.0",model="mlp"') > 0


def test_a_failing_request_fails_alone(served):
    """ONNX Runtime refuses an index out of range: that request gets 500, the requests batched with it
    get their answers."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 4)).astype("float32") for _ in range(8)]
    idx = [np.array([[i % 4]], "int64") for i in range(8)]
    idx[5] = np.array([[9]], "int64")

    def call(i):
        try:
            return infer(httpclient.InferenceServerClient(served.server.host_port), "gather",
                         {"x": xs[i], "idx": idx[i]}).as_numpy("y")
        except InferenceServerException as err:
            return err

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    failed = results.pop(5)
    assert isinstance(failed, InferenceServerException) and failed.status() == "500"
    assert failed.message() == ("model 'gather' failed: GatherElements node: GatherElements op: "
                                "Out of range value in index tensor")
    for i, y in zip([0, 1, 2, 3, 4, 6, 7], results):
        assert not isinstance(y, Exception), y
        np.testing.assert_array_equal(y, xs[i][:, idx[i][0, 0]][:, None])


def curl(url: str, *args: str, data: bytes | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON body) of one curl request."""
    proc = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args, url,
                           *(["--data-binary", "@-"] if data is not None else [])],
                          input=data, capture_output=True, timeout=60)
    body, _, status = proc.stdout.rpartition(b"\n")
    return int(status), json.loads(body) if body.strip() else {}


def _binary(header: dict, blob: bytes) -> tuple[list[str], bytes]:
    text = json.dumps(header).encode()
    return ["-H", f"Inference-Header-Content-Length: {len(text)}",
            "-H", "Content-Type: application/octet-stream"], text + blob


X64 = np.zeros((1, 64), "float32")
GOOD = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": X64.ravel().tolist()}]}


def _with(**changes) -> bytes:
    item = {**GOOD["inputs"][0], **changes}
    return json.dumps({"inputs": [{k: v for k, v in item.items() if v is not None}]}).encode()


BAD = [
    ("unknown model", "/v2/models/nope/infer", [], json.dumps(GOOD).encode(), 404,
     "unknown model 'nope'; this server has: gather, mlp, mlp_ort, small_cnn"),
    ("unknown version", "/v2/models/mlp/versions/7/infer", [], json.dumps(GOOD).encode(), 404,
     "model 'mlp' has no version '7'"),
    ("malformed JSON", "/v2/models/mlp/infer", [], b'{"inputs": [', 400, "malformed JSON in the request"),
    ("no inputs", "/v2/models/mlp/infer", [], b'{"id": "1"}', 400, "the request has no 'inputs' list"),
    ("unknown input", "/v2/models/mlp/infer", [], _with(name="image"), 400,
     "unknown input 'image'; model 'mlp' takes: x (FP32 [-1, 64])"),
    ("missing input", "/v2/models/gather/infer", [],
     json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}).encode(), 400,
     "missing input(s): idx (INT64 [-1, 1])"),
    ("wrong shape", "/v2/models/mlp/infer", [], _with(shape=[1, 63], data=[0.0] * 63), 400,
     "input 'x': shape [1, 63], expected [-1, 64]"),
    ("wrong rank", "/v2/models/mlp/infer", [], _with(shape=[64]), 400, "input 'x': shape [64], expected [-1, 64]"),
    ("wrong datatype", "/v2/models/mlp/infer", [], _with(datatype="FP64"), 400,
     "input 'x': datatype 'FP64', expected FP32"),
    ("data count", "/v2/models/mlp/infer", [], _with(data=[0.0] * 10), 400,
     "input 'x': shape [1, 64] needs 64 values, 'data' has 10"),
    ("data type", "/v2/models/mlp/infer", [], _with(data=["a"] * 64), 400,
     "input 'x': 'data' must be a (flat or nested) list of 64 FP32 numbers"),
    ("batch of a static model", "/v2/models/small_cnn/infer", [],
     json.dumps({"inputs": [{"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32",
                             "data": [0.0] * 6144}]}).encode(), 400,
     "input 'input': shape [2, 3, 32, 32], expected [1, 3, 32, 32]"),
    ("dims that must agree", "/v2/models/gather/infer", [],
     json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.0] * 8},
                            {"name": "idx", "shape": [3, 1], "datatype": "INT64", "data": [0, 0, 0]}]}).encode(), 400,
     "input 'idx': dim 0 ('batch') is 3, but input 'x' has 2"),
    ("int out of range", "/v2/models/gather/infer", [],
     json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4},
                            {"name": "idx", "shape": [1, 1], "datatype": "INT64", "data": [2**70]}]}).encode(), 400,
     "input 'idx': 'data' must be a (flat or nested) list of 1 INT64 integers"),
    ("unknown output", "/v2/models/mlp/infer", [],
     json.dumps({**GOOD, "outputs": [{"name": "logits"}]}).encode(), 400,
     "unknown output 'logits'; model 'mlp' returns: y (FP32 [-1, 10])"),
    ("bad class count", "/v2/models/mlp/infer", [],
     json.dumps({**GOOD, "outputs": [{"name": "y", "parameters": {"classification": "top"}}]}).encode(), 400,
     "output 'y': 'classification' must be a number of classes (an integer >= 1), got 'top'"),
    ("bad header length", "/v2/models/mlp/infer", ["-H", "Inference-Header-Content-Length: 99999"],
     json.dumps(GOOD).encode(), 400, "Inference-Header-Content-Length 99999 does not fit a body of"),
    ("bad content encoding", "/v2/models/mlp/infer", ["-H", "Content-Encoding: br"], json.dumps(GOOD).encode(), 400,
     "Content-Encoding 'br' is not supported"),
    ("no route", "/v2/modelz", [], None, 404, "no such endpoint: GET /v2/modelz"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_requests_get_a_specific_error(served, case):
    _, path, headers, body, status, message = case
    got, answer = curl(served.url + path, *headers, data=body)
    assert got == status, answer
    assert message in answer["error"], answer["error"]


def test_binary_tensor_errors(served):
    x = np.zeros((1, 64), "float32")
    # binary_data_size that does not fit the shape
    headers, body = _binary({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 100}}]}, x.tobytes()[:100])
    status, answer = curl(served.url + "/v2/models/mlp/infer", *headers, data=body)
    assert status == 400 and "input 'x': binary_data_size 100, but shape [1, 64] of FP32 needs 256 bytes" in \
        answer["error"]
    # the body holds less than declared
    headers, body = _binary({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 256}}]}, x.tobytes()[:200])
    status, answer = curl(served.url + "/v2/models/mlp/infer", *headers, data=body)
    assert status == 400 and "binary_data_size 256 bytes, but only 200 bytes of the body are left" in answer["error"]
    # more binary data than the inputs declare
    headers, body = _binary({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 256}}]}, x.tobytes() + b"junk")
    status, answer = curl(served.url + "/v2/models/mlp/infer", *headers, data=body)
    assert status == 400 and "260 bytes of binary tensor data" in answer["error"]
    # a good binary request with a binary answer, decoded by hand
    headers, body = _binary({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 256}}],
                             "parameters": {"binary_data_output": True}}, x.tobytes())
    proc = subprocess.run(["curl", "-s", "-D", "-", *headers, served.url + "/v2/models/mlp/infer", "--data-binary",
                           "@-"], input=body, capture_output=True, check=True)
    head, _, payload = proc.stdout.partition(b"\r\n\r\n")
    length = int(re.search(rb"inference-header-content-length: (\d+)", head, re.I).group(1))
    meta = json.loads(payload[:length])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 40
    np.testing.assert_allclose(np.frombuffer(payload[length:], "float32"), served.mlp(x)[0].ravel(), rtol=1e-5)


def test_body_over_the_limit(served):
    rows = int(MAX_REQUEST_MB * (1 << 20) / 256) + 1
    x = np.zeros((rows, 64), "float32")
    headers, body = _binary({"inputs": [{"name": "x", "shape": [rows, 64], "datatype": "FP32",
                                         "parameters": {"binary_data_size": x.nbytes}}]}, x.tobytes())
    status, answer = curl(served.url + "/v2/models/mlp/infer", *headers, data=body)
    assert status == 400 and "over the server's limit of 262144 bytes" in answer["error"]


def test_server_still_answers_and_counts_every_status(served):
    """After every bad request above, the server answers correctly, and /metrics counted them."""
    x = np.ones((2, 64), "float32")
    np.testing.assert_allclose(infer(served.client, "mlp", {"x": x}).as_numpy("y"), served.mlp(x)[0], rtol=1e-5)
    assert _metric(served.url, "tvmopt_requests_total", 'model="mlp",status="200"') > 0
    assert _metric(served.url, "tvmopt_requests_total", 'model="mlp",status="400"') > 0
    assert _metric(served.url, "tvmopt_requests_total", 'model="_unknown",status="404"') > 0
    assert _metric(served.url, "tvmopt_requests_total", 'model="gather",status="500"') > 0
    assert _metric(served.url, "tvmopt_request_duration_seconds_count", 'model="mlp"') > 0
    assert _metric(served.url, "tvmopt_queue_duration_seconds_count", 'model="mlp"') > 0
    assert served.server.process.poll() is None


def test_compressed_request(served):
    import gzip

    x = np.random.default_rng(4).standard_normal((2, 64)).astype("float32")
    body = gzip.compress(json.dumps({"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32",
                                                 "data": x.ravel().tolist()}]}).encode())
    status, answer = curl(served.url + "/v2/models/mlp/infer", "-H", "Content-Encoding: gzip", data=body)
    assert status == 200
    np.testing.assert_allclose(np.array(answer["outputs"][0]["data"], "float32").reshape(2, 10), served.mlp(x)[0],
                               rtol=1e-5, atol=1e-6)


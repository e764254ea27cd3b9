"""Serving: one artifact with batch buckets -> `tvmopt serve` -> tritonclient and curl -> batch predict.

Run from the repository root:  python tutorials/03_serving.py [--budget smoke|quick|full]
Needs `pip install 'tvmopt[serve]' tritonclient[http]` (both are in the test extra) and curl.
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

import tvmopt
from tvmopt.frontends import zoo
from tvmopt.serving import predict, read_outputs, start_server

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--budget", default="quick", choices=["smoke", "quick", "full"])
parser.add_argument("--log-root", default="tuning_logs")
parser.add_argument("--output", default="artifacts/serving")
args = parser.parse_args()

# 1. A model with a dynamic batch dim (axis 0): the zoo's MLP, 512 -> 1024 -> 1024 -> 10.
onnx_path = zoo.get("mlp").export_onnx("examples/mlp_batch.onnx", dynamic_batch=True)
model = tvmopt.import_model(onnx_path)
print("inputs:", model.inputs)  # input: ('batch', 512) -> logits: ('batch', 10)

# 2. Tune and compile one static copy per batch size into ONE artifact (one library, one manifest).
#    The same from the shell: tvmopt tune/compile examples/mlp_batch.onnx --batch-sizes 1,4,16
sizes = (1, 4, 16)
tvmopt.tune(model, "host", budget=args.budget, log_root=args.log_root, batch_sizes=sizes)
artifact = tvmopt.compile(model, "host", args.output, log_root=args.log_root, batch_sizes=sizes)
print("batch buckets:", artifact.manifest.batch_buckets)
predictor = tvmopt.load(artifact.path)  # runs any batch on the buckets, padding where that is cheaper
reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

# 3. Serve it: `tvmopt serve ARTIFACT --port 8000` in a shell; here a child process on a free port.
with start_server([f"mlp={artifact.path}"], args=["--max-queue-delay-ms", "2"]) as server:
    print("serving on", server.url)

    # 3a. tritonclient, Triton's own Python client, speaks the same protocol (binary tensors).
    client = httpclient.InferenceServerClient(server.host_port)
    print("metadata:", client.get_model_metadata("mlp"))
    x = np.random.default_rng(0).standard_normal((3, 512)).astype("float32")
    request = httpclient.InferInput("input", list(x.shape), "FP32")
    request.set_data_from_numpy(x)
    served = client.infer("mlp", [request]).as_numpy("logits")
    diff = float(np.max(np.abs(served - reference.run(None, {"input": x})[0])))
    print(f"max |tvmopt served - onnxruntime| = {diff:.2e}")
    assert diff < 1e-4 and np.allclose(served, predictor(x)[0], rtol=1e-5, atol=1e-6)

    # 3b. curl with a JSON body, as any HTTP client can.
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 512], "datatype": "FP32", "data": x[0].tolist()}]})
    answer = subprocess.run(["curl", "-s", f"{server.url}/v2/models/mlp/infer", "-d", body],
                            capture_output=True, text=True, check=True).stdout
    print("curl:", answer[:120], "...")
    assert np.allclose(json.loads(answer)["outputs"][0]["data"], served[0], rtol=1e-5, atol=1e-6)

    # 3c. A bad request is answered 400 with what is wrong; the server goes on.
    bad = subprocess.run(["curl", "-s", f"{server.url}/v2/models/mlp/infer", "-d",
                          '{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}'],
                         capture_output=True, text=True, check=True).stdout
    print("bad request:", bad)

    # 3d. Prometheus metrics: requests by model and status, latency, queue time, batch sizes.
    metrics = subprocess.run(["curl", "-s", f"{server.url}/metrics"], capture_output=True, text=True).stdout
    print("\n".join(line for line in metrics.splitlines() if line.startswith("tvmopt_requests_total")))
# Leaving the block sent SIGTERM: the server drained and exited.

# 4. Batch prediction: records from files (.npz / .npy / Parquet / a directory), chunked output
#    that a killed job resumes.  Shell: tvmopt predict ARTIFACT --input records.npz --output preds/
with tempfile.TemporaryDirectory() as tmp:
    records = np.random.default_rng(1).standard_normal((1000, 512)).astype("float32")
    np.savez(Path(tmp) / "records.npz", input=records)
    result = predict(artifact.path, Path(tmp) / "records.npz", Path(tmp) / "preds", chunk_size=256)
    outputs, index = read_outputs(result.output)
    diff = float(np.max(np.abs(outputs["logits"] - reference.run(None, {"input": records})[0])))
    print(f"predicted {result.ok} records in {result.chunks} chunks; max |tvmopt batch - onnxruntime| = {diff:.2e}")
    assert diff < 1e-4 and list(index) == list(range(1000))

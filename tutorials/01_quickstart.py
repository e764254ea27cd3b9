"""Quickstart: ONNX model -> tune for this CPU -> compile -> load -> compare with ONNX Runtime.

Run from the repository root:  python tutorials/01_quickstart.py [--budget smoke|quick|full]
Tuning records go to tuning_logs/<host name>/; running it again resumes and reuses them.
"""

import argparse

import numpy as np
import onnxruntime as ort

import tvmopt
from tvmopt.frontends.examples import write_small_cnn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--budget", default="quick", choices=["smoke", "quick", "full"])
parser.add_argument("--log-root", default="tuning_logs")
parser.add_argument("--output", default="artifacts/quickstart")
args = parser.parse_args()

# 1. Import: any ONNX file works the same way; this one is generated, nothing is downloaded.
path = write_small_cnn("examples/small_cnn.onnx")
model = tvmopt.import_model(path)
print("inputs:", model.inputs, "outputs:", model.outputs)

# 2. Tune every fused kernel for the machine we run on ("host"). Progress shows on stderr.
log = tvmopt.tune(model, "host", budget=args.budget, log_root=args.log_root)
print(f"{log.trials_run} new trials, estimated latency {log.estimated_ms} ms, log in {log.log_dir}")

# 3. Compile with the best records found and write an artifact (library + manifest.json).
artifact = tvmopt.compile(model, "host", args.output, log_root=args.log_root)
print("artifact:", artifact.path, "kernels tuned:", artifact.manifest.tuning.tasks_tuned)

# 4. Load it as production code would, run it, and compare with ONNX Runtime.
predictor = tvmopt.load(artifact.path)
x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
ours = predictor(input=x)[0]
theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
diff = float(np.max(np.abs(ours - theirs)))
print(f"max |tvmopt - onnxruntime| = {diff:.2e}")
assert diff < 1e-4, diff
print(f"latency: median {predictor.benchmark(repeat=20).median_ms:.4f} ms")

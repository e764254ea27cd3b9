"""PyTorch: nn.Module (via torch.export) and a saved .pt2 -> tune -> compile -> load.

Run from the repository root:  python tutorials/02_pytorch.py [--budget smoke|quick|full]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

import tvmopt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--budget", default="quick", choices=["smoke", "quick", "full"])
parser.add_argument("--log-root", default="tuning_logs")
parser.add_argument("--output", default="artifacts/pytorch")
args = parser.parse_args()


class TinyClassifier(torch.nn.Module):
    """A small MLP head: what people put on top of embeddings."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )

    def forward(self, x):
        return torch.softmax(self.body(x), dim=-1)


torch.manual_seed(0)
module = TinyClassifier().eval()
example = torch.randn(1, 64)

# 1. Import the module directly (traced with torch.export on the example input) ...
model = tvmopt.import_model(module, example_inputs=(example,), name="tiny_classifier")
# ... or a saved ExportedProgram, e.g. one produced by a training job.
pt2 = Path("examples/tiny_classifier.pt2")
pt2.parent.mkdir(exist_ok=True)
torch.export.save(torch.export.export(module, (example,)), str(pt2))
assert tvmopt.import_model(pt2).sha256  # same graph, read back from disk

# 2-3. Tune for this CPU and compile with the records.
log = tvmopt.tune(model, "host", budget=args.budget, log_root=args.log_root)
artifact = tvmopt.compile(model, "host", args.output, log_root=args.log_root)

# 4. Load and compare against PyTorch itself.
predictor = tvmopt.load(artifact.path)
x = torch.randn(1, 64)
ours = predictor(x.numpy())[0]
with torch.no_grad():
    theirs = module(x).numpy()
diff = float(np.max(np.abs(ours - theirs)))
print(f"{log.trials_run} new trials; max |tvmopt - torch| = {diff:.2e}; "
      f"median {predictor.benchmark(repeat=20).median_ms:.4f} ms")
assert diff < 1e-4, diff

# Many inputs at once, with a progress bar:
outputs = predictor.predict_batch([np.random.randn(1, 64).astype("float32") for _ in range(8)])
print("batch of", len(outputs), "predictions, first:", outputs[0][0].round(3))

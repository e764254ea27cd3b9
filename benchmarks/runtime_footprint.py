"""What a production process pays to load an artifact: import time, peak RSS, modules imported.

    .venv/bin/python benchmarks/runtime_footprint.py [--repeat 5]

Each measurement is a fresh interpreter (no warm imports): `import tvmopt`, and `import
tvmopt.runtime` + `tvmopt.load(artifact)` + one call on the bundled example CNN. Medians of
--repeat runs. `--pythonpath DIR` measures another checkout of tvmopt (e.g. an older commit in a
git worktree) the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBES = {
    "import tvmopt": "import tvmopt",
    "import tvmopt.runtime + load + 1 call": (
        "import tvmopt.runtime, numpy as np\n"
        "p = tvmopt.runtime.load(ARTIFACT)\n"
        "p(np.zeros((1, 3, 32, 32), 'float32'))"
    ),
}
WRAP = """
import time, sys
start = time.perf_counter()
{code}
elapsed = time.perf_counter() - start
heavy = [m for m in ("torch", "onnx", "tvm.relax", "tvm.s_tir.meta_schedule") if m in sys.modules]
import json
# VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({{"s": elapsed, "rss_mb": hwm / 1024,
                   "modules": len(sys.modules), "heavy": heavy}}))
"""


def measure(code: str, repeat: int, pythonpath: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    runs = []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-c", WRAP.format(code=code)], capture_output=True, text=True,
                              check=True, env=env, cwd=tempfile.gettempdir())
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {"s": statistics.median(r["s"] for r in runs), "rss_mb": statistics.median(r["rss_mb"] for r in runs),
            "modules": runs[-1]["modules"], "heavy": runs[-1]["heavy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pythonpath", help="measure the tvmopt found here instead of this one")
    args = parser.parse_args()
    import tvmopt
    from tvmopt.frontends.examples import write_small_cnn

    tmp = Path(tempfile.mkdtemp(prefix="tvmopt-footprint-"))
    artifact = tvmopt.compile(tvmopt.import_model(write_small_cnn(tmp / "cnn.onnx")), "host", tmp / "art",
                              log_root=None)
    print("| probe | median s | peak RSS MB | modules | heavy modules loaded |")
    print("|---|---|---|---|---|")
    for name, code in PROBES.items():
        row = measure(code.replace("ARTIFACT", repr(str(artifact.path))), args.repeat, args.pythonpath)
        print(f"| {name} | {row['s']:.2f} | {row['rss_mb']:.0f} | {row['modules']} | {', '.join(row['heavy']) or '-'} |")


if __name__ == "__main__":
    main()

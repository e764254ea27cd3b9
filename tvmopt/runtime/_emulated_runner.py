"""Runs inside an emulated (QEMU) aarch64 Python that has TVM's runtime and tvmopt's runtime only.

usage: python3 _emulated_runner.py ARTIFACT_DIR INPUTS.npz OUTPUTS.npz
Inputs go to the model in the npz's order (arr_0, arr_1, ...); outputs are flattened.
The artifact is read and its library hash checked as `tvmopt.load` does; the machine checks
are skipped (this is the x86 host's /proc/cpuinfo under emulation).
"""

import sys

import numpy as np

from tvmopt.runtime.artifact import read_artifact
from tvmopt.runtime.predictor import Predictor


def main(artifact_dir: str, inputs: str, outputs: str) -> None:
    predictor = Predictor(read_artifact(artifact_dir))
    with np.load(inputs) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    np.savez(outputs, *predictor.run_arrays(arrays))


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""Runs inside an emulated (QEMU) aarch64 Python with TVM's runtime only; imports no tvmopt.

usage: python3 _emulated_runner.py LIBRARY INPUTS.npz OUTPUTS.npz
Inputs are passed to "main" in the npz's order (arr_0, arr_1, ...); outputs are flattened.
"""

import sys

import numpy as np
import tvm
from tvm.runtime.vm import VirtualMachine  # `from tvm import relax` needs the compiler library


def flatten(result):
    if hasattr(result, "numpy"):
        return [result.numpy()]
    return [array for item in result for array in flatten(item)]


def main(library: str, inputs: str, outputs: str) -> None:
    device = tvm.cpu()
    vm = VirtualMachine(tvm.runtime.load_module(library), device)
    with np.load(inputs) as data:
        args = [tvm.runtime.tensor(data[f"arr_{i}"], device) for i in range(len(data.files))]
    np.savez(outputs, *flatten(vm["main"](*args)))


if __name__ == "__main__":
    main(*sys.argv[1:4])

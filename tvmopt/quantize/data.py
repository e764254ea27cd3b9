"""Samples for calibration and evaluation: a user's .npz, or seeded random inputs of the right
dtypes and ranges (token ids within the embedding table, masks of 0/1, normal floats).

An .npz holds one array per model input, keyed by input name: either one sample of the input's
shape, or N samples stacked on a new first axis ([N, *shape]); for a batch-1 input a [N, ...]
array whose first axis replaces the batch dim also reads as N samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputSpecError
from ..specs import TensorSpec


@dataclass(frozen=True)
class Samples:
    """N input dicts for a model, and where they came from (for the report)."""

    feeds: list[dict[str, np.ndarray]]
    origin: str  # "seeded random inputs (seed 1)" or the .npz path

    def __len__(self) -> int:
        return len(self.feeds)


def load_samples(path: str | os.PathLike, specs: tuple[TensorSpec, ...], limit: int | None = None) -> Samples:
    """Samples from an .npz keyed by input name (see the module docstring for the layouts)."""
    path = Path(path)
    if not path.is_file():
        raise InputSpecError(f"{path}: no such file (expected an .npz with one array per model input)")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputSpecError(f"{path}: not a readable .npz file ({err})") from err
    with data:
        names = [s.name for s in specs]
        missing = [n for n in names if n not in data.files]
        if missing:
            raise InputSpecError(f"{path}: no array for input(s) {', '.join(missing)}; it holds "
                                 f"{', '.join(data.files) or 'nothing'} (the model's inputs are {', '.join(names)})")
        stacks = {s.name: _as_stack(path, s, data[s.name]) for s in specs}
    counts = {len(v) for v in stacks.values()}
    if len(counts) != 1:
        detail = ", ".join(f"{n}: {len(v)}" for n, v in stacks.items())
        raise InputSpecError(f"{path}: inputs hold different numbers of samples ({detail})")
    count = counts.pop()
    if limit is not None:
        count = min(count, limit)
    feeds = [{name: stack[i] for name, stack in stacks.items()} for i in range(count)]
    return Samples(feeds, str(path))


def _as_stack(path: Path, spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if array.dtype != want:
        if array.dtype.kind != want.kind and not (array.dtype.kind in "iu" and want.kind in "iu"):
            raise InputSpecError(f"{path}: input '{spec.name}' is {array.dtype}, the model expects {spec.dtype}")
        array = array.astype(want)
    shape = tuple(spec.shape)
    fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int)]

    def fits(candidate: tuple) -> bool:
        return len(candidate) == len(shape) and all(candidate[i] == d for i, d in fixed)

    if fits(array.shape):
        return array[None]
    if array.ndim == len(shape) + 1 and fits(array.shape[1:]):
        return array
    if shape and shape[0] == 1 and fits((1, *array.shape[1:])):  # [N, ...] for a batch-1 input
        return array[:, None]
    raise InputSpecError(f"{path}: input '{spec.name}' has shape {'x'.join(map(str, array.shape))}; expected "
                         f"{spec.shape_str()} (one sample) or Nx{spec.shape_str()} (N samples)")


def random_samples(onnx_path: str | os.PathLike, specs: tuple[TensorSpec, ...], count: int, seed: int) -> Samples:
    """`count` seeded random input dicts: floats ~ N(0, 1); integer inputs that index an embedding
    (Gather) within its table; masks (name contains 'mask', or bool) of 1s with a random padded tail;
    other integers in [0, 100)."""
    bounds = index_bounds(onnx_path)
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for spec in specs:
            if not spec.is_static:
                raise InputSpecError(f"input '{spec.name}' has dynamic shape {spec.shape_str()}; fix it "
                                     "(--input-shape) or give samples in an .npz")
            dtype = np.dtype(spec.dtype)
            if dtype.kind == "f":
                feed[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
            elif dtype.kind == "b" or "mask" in spec.name.lower():
                feed[spec.name] = _mask(rng, spec.shape).astype(dtype)
            else:
                feed[spec.name] = rng.integers(0, bounds.get(spec.name, 100), spec.shape).astype(dtype)
        feeds.append(feed)
    return Samples(feeds, f"seeded random inputs (seed {seed})")


def _mask(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """1s with a padded (0) tail of random length up to a quarter of the last axis."""
    mask = np.ones(shape, np.int64)
    if shape:
        pad = int(rng.integers(0, max(1, shape[-1] // 4) + 1))
        if pad:
            mask[..., shape[-1] - pad:] = 0
    return mask


def index_bounds(onnx_path: str | os.PathLike) -> dict[str, int]:
    """Graph inputs used as Gather indices into an initializer: input name -> table size."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    tables = {init.name: int(init.dims[0]) for init in model.graph.initializer if init.dims}
    inputs = {vi.name for vi in model.graph.input}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] in inputs and node.input[0] in tables:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if axis == 0:
                name = node.input[1]
                bounds[name] = min(bounds.get(name, tables[node.input[0]]), tables[node.input[0]])
    return bounds


def onnx_input_specs(path: str | os.PathLike, input_shapes: dict | None = None) -> tuple[TensorSpec, ...]:
    """The graph inputs of an ONNX file (initializers excluded), with `input_shapes` fixing dims."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or f"{vi.name}_dim{i}")
                     for i, d in enumerate(vi.type.tensor_type.shape.dim))
        dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)))
        specs.append(TensorSpec(vi.name, dims, dtype))
    for name, dims in (input_shapes or {}).items():
        index = next((i for i, s in enumerate(specs) if s.name == name), None)
        if index is None:
            raise InputSpecError(f"{path}: --input-shape names '{name}', but the model's inputs are: "
                                 f"{', '.join(s.name for s in specs)}")
        if len(tuple(dims)) != len(specs[index].shape):
            raise InputSpecError(f"{path}: input '{name}' has rank {len(specs[index].shape)}, "
                                 f"--input-shape gives {'x'.join(map(str, dims))}")
        specs[index] = TensorSpec(name, tuple(dims), specs[index].dtype)
    return tuple(specs)

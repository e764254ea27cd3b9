"""Model inputs: match what a caller passes to the model's TensorSpecs, or make random ones."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from ..errors import InputSpecError
from ..specs import TensorSpec, signature


def random_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the right shape and dtype: normal floats, small non-negative ints, masks of 1s."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        if not spec.is_static:
            raise InputSpecError(f"input '{spec.name}' has dynamic shape {spec.shape_str()}; pass inputs explicitly")
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            out[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
        elif dtype.kind == "b" or "mask" in spec.name.lower():
            out[spec.name] = np.ones(spec.shape, dtype)
        else:
            out[spec.name] = rng.integers(0, 100, spec.shape).astype(dtype)
    return out


def warm_up_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """random_inputs with every integer 0 (masks still 1s): inputs for unattended warm-up runs.
    An integer input may index a table of any size, and TVM's gathers do not check bounds (ONNX
    Gather imports as take(mode="fast")): a random index past a small table reads past its end."""
    out = random_inputs(specs, seed)
    for spec in specs:
        array = out[spec.name]
        if array.dtype.kind in "iu" and "mask" not in spec.name.lower():
            array[...] = 0
    return out


def bind_inputs(specs: Sequence[TensorSpec], args: Sequence[Any], kwargs: dict[str, Any] | None,
                cast: bool = False) -> list[np.ndarray]:
    """Match positional/keyword inputs to `specs`, check names, shapes and dtypes; one array per spec.

    An array of another dtype is refused unless `cast` (then converted within its kind, e.g.
    float64 -> float32); Python lists and scalars, which have no dtype of their own, take the spec's.
    """
    kwargs = dict(kwargs or {})
    names = [s.name for s in specs]
    if len(args) > len(names):
        raise InputSpecError(f"model takes {len(names)} input(s) ({', '.join(names)}), got {len(args)} positional")
    values = dict(zip(names, args))
    for key in kwargs:
        if key not in names:
            raise InputSpecError(f"unknown input '{key}'; the model's inputs are: {', '.join(names)}")
        if key in values:
            raise InputSpecError(f"input '{key}' given both positionally and by name")
    values.update(kwargs)
    missing = [n for n in names if n not in values]
    if missing:
        raise InputSpecError(f"missing input(s): {', '.join(missing)} (expected {signature(specs)})")
    return [check_input(spec, values[spec.name], cast) for spec in specs]


class StaticBinder:
    """bind_inputs' common case in a fraction of its time: every input given (all by name or all
    by position) as a C-contiguous numpy array of exactly the spec's dtype and static shape.
    Anything else returns None, and bind_inputs then checks, converts or explains.
    (bind_inputs took 2 us per call, 6% of the bundled CNN's.)"""

    def __init__(self, specs: Sequence[TensorSpec]):
        dtypes = [numpy_dtype(s.dtype) for s in specs]
        usable = all(s.is_static for s in specs) and all(d is not None for d in dtypes)
        self._checks = tuple((s.name, d, tuple(s.shape)) for s, d in zip(specs, dtypes)) if usable else None

    def __call__(self, args: Sequence[Any], kwargs: dict[str, Any]) -> list[np.ndarray] | None:
        checks = self._checks
        if checks is None:
            return None
        if args:
            if kwargs or len(args) != len(checks):
                return None
            values = list(args)
        else:
            if len(kwargs) != len(checks):
                return None
            try:
                values = [kwargs[name] for name, _, _ in checks]
            except KeyError:
                return None
        for value, (_, dtype, shape) in zip(values, checks):
            if (type(value) is not np.ndarray or value.dtype != dtype or value.shape != shape
                    or not value.flags.c_contiguous):
                return None
        return values


@functools.lru_cache(maxsize=None)
def numpy_dtype(name: str) -> np.dtype | None:
    """The numpy dtype named `name`, made once (np.dtype() and str(dtype) cost microseconds per
    call); None where numpy has none (bfloat16 without ml_dtypes)."""
    try:
        return np.dtype(name)
    except TypeError:
        return None


def check_input(spec: TensorSpec, value: Any, cast: bool = False) -> np.ndarray:
    """`value` as a C-contiguous array of the spec's dtype and shape, or an error naming the input.

    A silent float64 -> float32 (or float16 -> float32, int64 -> int32) conversion would hide a
    caller's mistake or change results, so a typed array of another dtype is converted only when
    the caller asked (`cast`), and then only within its kind of number.
    """
    want_dtype = numpy_dtype(spec.dtype)  # None compares equal to float64: checked first
    if (want_dtype is not None and type(value) is np.ndarray and value.dtype == want_dtype
            and value.ndim == len(spec.shape)
            and all(want == got or not isinstance(want, int) for want, got in zip(spec.shape, value.shape))):
        # the common case, in 1 us (str(dtype) alone takes 4.5); not np.ascontiguousarray, which
        # turns a 0-d array (a scalar input) into shape (1,)
        return value if value.flags.c_contiguous else np.asarray(value, order="C")
    typed = isinstance(value, np.ndarray) or hasattr(value, "dtype")
    array = value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)
    if str(array.dtype) != spec.dtype:
        want = np.dtype(spec.dtype)
        convertible = np.can_cast(array.dtype, want, casting="same_kind") and (
            array.dtype.kind == want.kind or not typed)
        if not convertible:
            raise InputSpecError(f"input '{spec.name}': dtype {array.dtype}, expected {spec.dtype}")
        if typed and not cast:
            raise InputSpecError(
                f"input '{spec.name}': dtype {array.dtype}, expected {spec.dtype}; convert it "
                f"(.astype('{spec.dtype}')) or ask for the conversion (tvmopt.load(..., cast_inputs=True), "
                "`tvmopt run --cast-inputs`)"
            )
        array = array.astype(want)
    if len(array.shape) != len(spec.shape) or any(
        isinstance(want, int) and want != got for want, got in zip(spec.shape, array.shape)
    ):
        raise InputSpecError(
            f"input '{spec.name}': shape {'x'.join(map(str, array.shape)) or 'scalar'}, expected {spec.shape_str()}"
        )
    return np.asarray(array, order="C")  # keeps 0-d arrays 0-d (np.ascontiguousarray does not)

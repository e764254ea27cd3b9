"""Silent wrong results (issue 11 item 6): NaN inputs propagate through max/min as in ONNX Runtime and
NumPy; an input of another dtype is refused with the expected dtype named unless a cast is asked for."""

from __future__ import annotations

import numpy as np
import pytest
import tvmopt
from conftest import ort_run, run_cli

NAN_ROW = [np.nan, -1.0, 2.0, -np.inf, np.inf, 0.5, -0.5, 3.0]


def one_op_model(path, op: str, **attrs):
    """x (1x8 float) -> op -> y, with constant operands where the op takes them."""
    import onnx
    from onnx import TensorProto, helper

    inputs, inits = ["x"], []
    if op == "Clip":
        inits = [helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("hi", TensorProto.FLOAT,
                                                                                               [], [6.0])]
        inputs += ["lo", "hi"]
    elif op in ("Max", "Min"):
        inits = [helper.make_tensor("c", TensorProto.FLOAT, [], [0.0])]
        inputs += ["c"]
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], **attrs)], op,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("op, attrs", [("Relu", {}), ("Clip", {}), ("Max", {}), ("Min", {}), ("HardSigmoid", {}),
                                       ("LeakyRelu", {"alpha": 0.1})])
def test_elementwise_nan_matches_onnxruntime(op, attrs, tmp_path):
    path = one_op_model(tmp_path / f"{op}.onnx", op, **attrs)
    x = np.array([NAN_ROW], dtype="float32")
    expected = ort_run(path, {"x": x})[0]
    predictor = tvmopt.load(tvmopt.compile(tvmopt.import_model(path), "host", tmp_path / "art", log_root=None).path)
    np.testing.assert_array_equal(predictor(x)[0], expected)  # NaN where ORT has NaN, same numbers elsewhere


def test_two_tensor_max_and_reductions_propagate_nan_like_numpy(tmp_path):
    """Max of two tensors and ReduceMax give NaN wherever a NaN enters, at any position (NumPy, PyTorch);
    ONNX Runtime's ReduceMax/MaxPool answer depends on where the NaN sits."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Max", ["a", "b"], ["m"]), helper.make_node("ReduceMax", ["a"], ["r"], keepdims=0)], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 8]) for n in ("a", "b")],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [4, 8]), helper.make_tensor_value_info("r", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "maxes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 8)).astype("float32"), rng.standard_normal((4, 8)).astype("float32")
    a[0, 0], a[2, 7], b[1, 3] = np.nan, np.nan, np.nan  # first, last, and in the second operand
    predictor = tvmopt.load(tvmopt.compile(tvmopt.import_model(path), "host", tmp_path / "art", log_root=None).path)
    m, r = predictor(a, b)
    np.testing.assert_array_equal(m, np.maximum(a, b))
    assert np.isnan(r)
    clean = np.nan_to_num(a, nan=0.0)
    np.testing.assert_array_equal(predictor(clean, b)[1], np.max(clean))




@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_max_and_min_in_a_vectorized_loop_keep_nan_and_stay_vectorized(op, dtype):
    """A schedule's vectorized max/min (a template's max reduction, a softmax's row max) gets the
    NaN test as bit operations: TVM's vectorizer has no vector isnan and fell back to scalar code,
    which LLVM vectorized with gathers (compiler/nan.py: _vectorizable_isnan)."""
    import tvm
    from tvm import te
    from tvm.s_tir import Schedule
    from tvmopt.compiler.nan import propagate_nan

    target = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
    a, b = te.placeholder((64, 16), name="a", dtype=dtype), te.placeholder((64, 16), name="b", dtype=dtype)
    out = te.compute((64, 16), lambda i, j: getattr(te, op)(a[i, j], b[i, j]), name="out")
    sch = Schedule(te.create_prim_func([a, b, out]))
    sch.vectorize(sch.get_loops(sch.get_sblock("out"))[1])
    lib = tvm.compile(propagate_nan(sch.mod, target), target=target).jit()
    assert "gather" not in lib.inspect_source("asm")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 16)).astype(dtype), rng.standard_normal((64, 16)).astype(dtype)
    x[0, 0], y[1, 1], x[2, 2], y[3, 3], x[4, 4] = np.nan, np.nan, np.inf, -np.inf, -np.nan
    result = tvm.runtime.tensor(np.zeros((64, 16), dtype))
    lib(tvm.runtime.tensor(x), tvm.runtime.tensor(y), result)
    expected = np.maximum(x, y) if op == "max" else np.minimum(x, y)
    np.testing.assert_array_equal(result.numpy(), expected)  # NaN where NumPy has NaN, from either side


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_other_dtype_is_refused_unless_cast_is_asked(dtype, mlp_artifact, mlp_onnx, tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(dtype)
    np.savez(tmp_path / "in.npz", x=x)
    refused = run_cli("run", str(mlp_artifact), "--inputs", str(tmp_path / "in.npz"), "--repeat", "1")
    assert refused.returncode == 2
    assert f"input 'x': dtype {dtype}, expected float32" in refused.stderr and "--cast-inputs" in refused.stderr
    cast = run_cli("run", str(mlp_artifact), "--inputs", str(tmp_path / "in.npz"), "--cast-inputs", "--repeat", "1",
                   "--save-outputs", str(tmp_path / "out.npz"))
    assert cast.returncode == 0, cast.stderr
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["y"], ort_run(mlp_onnx, {"x": x.astype("float32")})[0], atol=1e-4, rtol=1e-4)

    predictor = tvmopt.load(mlp_artifact)
    with pytest.raises(tvmopt.errors.InputSpecError, match=f"dtype {dtype}, expected float32"):
        predictor(x)
    np.testing.assert_allclose(tvmopt.load(mlp_artifact, cast_inputs=True)(x)[0], predictor(x.astype("float32"))[0])
    np.testing.assert_allclose(predictor(x.astype("float32").tolist())[0], predictor(x.astype("float32"))[0],
                               rtol=1e-6)  # a Python list has no dtype of its own: it takes the model's

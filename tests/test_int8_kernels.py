"""Int8 kernels on the dot-product instructions: VNNI (vpdpbusd), AVX2 (vpmaddubsw), Arm (sdot).

Each test checks the instruction in the compiled library's disassembly, and the outputs against
ONNX Runtime on the same quantized ONNX wherever the code can run here (Arm under QEMU). ONNX
Runtime is exact on any x86 host for 7-bit weights (reduce_range); for full-range weights on a
host without VNNI its own vpmaddubsw kernel saturates, so exactness is checked against ONNX's
numpy reference evaluator instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import models  # noqa: E402

import tvmopt  # noqa: E402
from tvmopt.machine import this_machine  # noqa: E402

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

HAS_VNNI = "avx512_vnni" in this_machine().cpu_flags
X86 = this_machine().arch == "x86_64"


@pytest.fixture(scope="module")
def mlp_fp32(tmp_path_factory) -> Path:
    module, example = models.mlp()
    return models.export_onnx(module, example, tmp_path_factory.mktemp("int8") / "mlp.onnx", ["x"], ["y"])


def _dynamic(src: Path, name: str, reduce_range: bool, weight_type=None) -> Path:
    out = src.with_name(name)
    quantization.quantize_dynamic(str(src), str(out), reduce_range=reduce_range,
                                  weight_type=weight_type or quantization.QuantType.QInt8)
    return out


@pytest.fixture(scope="module")
def mlp_int8_full(mlp_fp32) -> Path:
    return _dynamic(mlp_fp32, "mlp_int8_full.onnx", reduce_range=False)


@pytest.fixture(scope="module")
def mlp_int8_7bit(mlp_fp32) -> Path:
    return _dynamic(mlp_fp32, "mlp_int8_7bit.onnx", reduce_range=True)


def _inputs(n: int = 3, rows: int = 1, features: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.standard_normal((rows, features)).astype(np.float32) for _ in range(n)]


def _disassembly(library: Path, arm: bool = False) -> str:
    tool = "aarch64-linux-gnu-objdump" if arm else "objdump"
    return subprocess.run([tool, "-d", str(library)], capture_output=True, text=True, check=True).stdout


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    """ONNX's numpy reference evaluator: exact integer MatMulInteger, no saturation."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(str(path)).run(None, {"x": x})[0]


# --------------------------------------------------------------------------- x86


def test_vnni_target_tensorizes_int8_gemms_with_vpdpbusd(mlp_int8_full, tmp_path):
    model = tvmopt.import_model(mlp_int8_full)
    artifact = tvmopt.compile(model, "x86-avx512-vnni", tmp_path / "vnni", log_root=None)
    assert len(artifact.manifest.tuning.int8_sampled) == 2  # both Linear layers, no record: sampled schedule
    assert "vpdpbusd" in _disassembly(artifact.library_path)
    if not HAS_VNNI:
        pytest.skip("this CPU has no avx512_vnni: the VNNI library is checked by disassembly only")
    predictor = tvmopt.load(artifact.path)
    for x in _inputs():  # ONNX Runtime uses VNNI here too: exact
        np.testing.assert_allclose(predictor(x)[0], _ort(mlp_int8_full, x), atol=1e-5)


@pytest.mark.skipif(not X86, reason="x86 host only")
def test_host_int8_kernels_use_the_host_dot_product_and_match_ort(mlp_int8_7bit, tmp_path):
    model = tvmopt.import_model(mlp_int8_7bit)
    artifact = tvmopt.compile(model, "host", tmp_path / "host", log_root=None)
    instruction = "vpdpbusd" if HAS_VNNI else "vpmaddubsw"
    assert instruction in _disassembly(artifact.library_path)
    predictor = tvmopt.load(artifact.path)
    for x in _inputs():
        np.testing.assert_allclose(predictor(x)[0], _ort(mlp_int8_7bit, x), atol=1e-5)


@pytest.mark.skipif(not X86, reason="x86 host only")
def test_tuned_int8_kernels_are_tensorized(tmp_path):
    """A real (smoke) MetaSchedule session on a static-int8 linear layer (two tasks: quantize, GEMM):
    the record it keeps for the int8 GEMM tensorizes, and the tuned build matches ORT.

    The GEMM is 8x512x256: large enough that every tensorized candidate beats the scalar ones by
    far (12-45 us against hundreds). At 1x64x32 both kinds ran in 0.5-3 us and a loaded CI machine
    once kept a scalar record (1.97 us against 3.89 tensorized), a fair pick at that size."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 256).eval()
    fp32 = models.export_onnx(layer, (torch.randn(8, 512),), tmp_path / "linear.onnx", ["x"], ["y"])
    path = tvmopt.quantize(fp32, tmp_path / "linear_int8.onnx", mode="int8-static", samples=4,
                           calibration_samples=8).path
    model = tvmopt.import_model(path)
    log = tvmopt.tune(model, "host", budget="smoke", log_root=tmp_path / "logs", progress=False, seed=1)
    gemms = [t for t in log.tasks if "int8_gemm" in t.name]
    assert len(gemms) == 1 and gemms[0].best_us, log.tasks
    artifact = tvmopt.compile(model, "host", tmp_path / "tuned", log_root=tmp_path / "logs")
    assert gemms[0].name in {r.task for r in artifact.manifest.tuning.records_applied}
    assert not artifact.manifest.tuning.int8_sampled  # the tuned record, not a sampled schedule
    instruction = "vpdpbusd" if HAS_VNNI else "vpmaddubsw"
    # On failure the message says which records the session kept (kind and measured time).
    assert instruction in _disassembly(artifact.library_path), _records_summary(tmp_path / "logs")
    predictor = tvmopt.load(artifact.path)
    for x in _inputs(rows=8, features=512):
        np.testing.assert_allclose(predictor(x)[0], _ort(path, x), atol=1e-5)
    # A fresh process that registered no intrinsic (an fp32 compile sharing this log, `logs show`)
    # still reads every record, the tensorized ones included.
    (log_dir,) = [p.parent for p in (tmp_path / "logs").glob("*/database_tuning_record.json")]
    script = ("import sys; from tvmopt.logs.store import LogDatabase; db = LogDatabase(sys.argv[1], readonly=True); "
              "print(len(db), db.warnings)")
    shown = subprocess.run([sys.executable, "-c", script, str(log_dir)], capture_output=True, text=True, check=True)
    kept = len((log_dir / "database_tuning_record.json").read_text().splitlines())
    assert shown.stdout.split(maxsplit=1) == [str(kept), "[]\n"], shown.stdout + shown.stderr


def _records_summary(log_root: Path) -> str:
    """Per kept record: workload index, whether its trace tensorizes, measured seconds."""
    import json

    rows = []
    for records in log_root.glob("*/database_tuning_record.json"):
        for line in records.read_text().splitlines():
            record = json.loads(line)
            rows.append(f"workload {record[0]}: tensorize={'tensorize' in line} run_secs={record[1][1]}")
    return "records kept: " + "; ".join(rows)


@pytest.mark.skipif(not X86 or HAS_VNNI, reason="checks the AVX2 / AVX-512 (no VNNI) saturation guard")
def test_full_range_weights_stay_exact_where_the_dot_product_saturates(mlp_int8_full, tmp_path):
    """vpmaddubsw would saturate on 8-bit weights: those GEMMs keep TVM's exact int32 lowering."""
    model = tvmopt.import_model(mlp_int8_full)
    artifact = tvmopt.compile(model, "host", tmp_path / "full", log_root=None)
    assert not artifact.manifest.tuning.int8_sampled
    predictor = tvmopt.load(artifact.path)
    for x in _inputs():
        np.testing.assert_allclose(predictor(x)[0], _reference(mlp_int8_full, x), atol=1e-5)


def test_asymmetric_uint8_weights_use_column_offsets_exactly(tmp_path):
    """MatMulInteger with uint8 weights far from 0 (zero point 0): the rewrite shifts each column
    into int8 range and corrects with the activations' row sums; exact against the reference."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    k, n = 64, 24
    weights = rng.integers(100, 229, (k, n)).astype(np.uint8)  # centred: 7-bit, fits vpmaddubsw too
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
         helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"]),
         helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["accf", "xs"], ["y"])],
        "u8_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, n])],
        [helper.make_tensor("w", TensorProto.UINT8, [k, n], weights.tobytes(), raw=True),
         helper.make_tensor("wz", TensorProto.UINT8, [], [0])],
    )
    path = tmp_path / "u8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = tvmopt.import_model(path)
    artifact = tvmopt.compile(model, "host", tmp_path / "art", log_root=None)
    if X86:
        assert artifact.manifest.tuning.int8_sampled  # rewritten, not left int32
    predictor = tvmopt.load(artifact.path)
    x = rng.standard_normal((2, k)).astype(np.float32)
    np.testing.assert_allclose(predictor(x)[0], _reference(path, x), rtol=1e-6, atol=1e-4)


# --------------------------------------------------------------------------- Arm


@pytest.fixture(scope="module")
def aarch64_root():
    from tvmopt.runtime.emulation import aarch64_root as prepare

    return prepare()


def test_neoverse_n1_uses_sdot_and_matches_ort_under_emulation(aarch64_root, mlp_int8_7bit, tmp_path):
    from tvmopt.runtime.emulation import run_emulated

    model = tvmopt.import_model(mlp_int8_7bit)
    artifact = tvmopt.compile(model, "arm-neoverse-n1", tmp_path / "n1", log_root=None)
    assert artifact.manifest.tuning.int8_sampled
    assert "sdot" in _disassembly(artifact.library_path, arm=True)
    xs = _inputs(1)  # each emulated run starts an aarch64 Python under QEMU
    for x in xs:
        out = run_emulated(artifact, [x])[0]
        np.testing.assert_allclose(out, _ort(mlp_int8_7bit, x), atol=1e-5)


class _Repeated(torch.nn.Module):
    """Three identical layers (64 -> 64 linear, or 8 -> 8 3x3 conv), each with its own weights."""

    def __init__(self, conv: bool):
        super().__init__()
        make = (lambda: torch.nn.Conv2d(8, 8, 3, padding=1)) if conv else (lambda: torch.nn.Linear(64, 64))
        self.layers = torch.nn.ModuleList([make() for _ in range(3)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


@pytest.mark.parametrize("mode", ["int8-dynamic", "int8-static"])
def test_identical_quantized_layers_share_one_tuning_task(mode, tmp_path):
    """Each layer's scale and zero point are its own constants; inlined into the kernels they made
    every layer a separate tuning task (BERT-4 int8: 50 tasks, 30 once passed as data)."""
    from tvmopt.compiler.inspect import describe

    conv = mode == "int8-static"
    torch.manual_seed(0)
    module = _Repeated(conv).eval()
    example = torch.randn(1, 8, 16, 16) if conv else torch.randn(1, 64)
    fp32 = models.export_onnx(module, (example,), tmp_path / "repeated.onnx", ["x"], ["y"])
    int8 = tvmopt.quantize(fp32, tmp_path / "repeated_int8.onnx", mode=mode, samples=8, calibration_samples=8).path
    model = tvmopt.import_model(int8)
    tasks = describe(model, tvmopt.get_target("host").tvm_target()).tasks
    heavy = [t for t in tasks if "conv2d" in t.name or "gemm" in t.name]  # the three layers' products
    assert heavy and sum(t.weight for t in heavy) == 3, [(t.name, t.weight, t.flops) for t in tasks]
    assert len(heavy) == 1, [(t.name, t.weight) for t in heavy]

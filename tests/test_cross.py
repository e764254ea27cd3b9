"""Cross-hardware: ARM artifacts (cross-compiled, run under QEMU), CUDA artifacts without a
GPU, and tuning / running through TVM's RPC tracker with servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tvmopt
from conftest import run_cli
from tvmopt.errors import ArtifactError, TuningError
from tvmopt.logs.store import LogDatabase
from tvmopt.tuning import make_budget

X = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")


@pytest.fixture(scope="module")
def aarch64_root():
    """The emulated aarch64 environment (installs the cross toolchain and QEMU when missing)."""
    from tvmopt.runtime.emulation import aarch64_root as prepare

    start = time.monotonic()
    root = prepare()
    print(f"\naarch64 environment ready in {time.monotonic() - start:.1f} s")  # CI cost, see README
    return root


@pytest.fixture(scope="module")
def cnn_model(cnn_onnx):
    return tvmopt.import_model(cnn_onnx)


@pytest.fixture(scope="module")
def x86_reference(cnn_model, tmp_path_factory):
    artifact = tvmopt.compile(cnn_model, "host", tmp_path_factory.mktemp("x86") / "art", log_root=None)
    return tvmopt.load(artifact.path)(X)[0]


@pytest.mark.parametrize("target", ["arm-cortex-a72", "arm-neoverse-n1"])
def test_arm_artifact_is_aarch64_neon_and_matches_x86_under_emulation(
    target, aarch64_root, cnn_model, x86_reference, tmp_path
):
    artifact = tvmopt.compile(cnn_model, target, tmp_path / "arm", log_root=None)
    header = artifact.library_path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(artifact.library_path)],
                                 capture_output=True, text=True, check=True).stdout
    assert "fmla" in disassembly and ".4s" in disassembly  # NEON vector FMAs
    with pytest.raises(ArtifactError, match="built for aarch64.*--emulate"):
        tvmopt.load(artifact.path)
    from tvmopt.runtime.emulation import run_emulated

    out = run_emulated(artifact, [X])[0]
    np.testing.assert_allclose(out, x86_reference, atol=1e-4, rtol=1e-4)


def test_arm_blocked_layouts_match_onnxruntime_under_emulation(aarch64_root, tmp_path):
    """NEON's 4-float block through a stem, a depthwise conv with ReLU6 and batch norms, and a
    grouped conv that stays NCHW; the aarch64 build matches ONNX Runtime on x86."""
    import models
    from conftest import ort_run
    from tvmopt.runtime.emulation import run_emulated

    module, example = models.mobile_block()
    path = models.export_onnx(module, example, tmp_path / "mobile.onnx", ["x"], ["y"])
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype("float32")
    artifact = tvmopt.compile(tvmopt.import_model(path), "arm-neoverse-n1", tmp_path / "arm", log_root=None)
    np.testing.assert_allclose(run_emulated(artifact, [x])[0], ort_run(path, {"x": x})[0], atol=1e-4, rtol=1e-4)


def test_run_emulate_cli_reports_no_latency(aarch64_root, cnn_onnx, tmp_path):
    out = tmp_path / "arm"
    assert run_cli("compile", str(cnn_onnx), "-t", "arm-cortex-a72", "--no-tuning", "-o", str(out)).returncode == 0
    proc = run_cli("run", str(out), "--emulate", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["median_ms"] is None and "emulation" in report["where"]


# ------------------------------------------------------------------------------- CUDA

needs_nvcc = pytest.mark.skipif(
    not (shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")), reason="CUDA toolkit (nvcc) not installed"
)


@needs_nvcc
@pytest.mark.parametrize("target, arch", [("cuda-sm80", "sm_80"), ("cuda-sm90", "sm_90")])
def test_cuda_artifact_holds_compiled_device_code(target, arch, cnn_model, tmp_path):
    artifact = tvmopt.compile(cnn_model, target, tmp_path / "gpu", log_root=None)
    assert artifact.manifest.device_code.to_json() == {"format": "fatbin", "arch": arch}
    data = artifact.library_path.read_bytes()
    assert b"\x50\xed\x55\xba" in data and arch.encode() in data  # fatbin for this arch
    assert b"__global__" not in data  # no CUDA source left to JIT on the deployment machine
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == 62  # x86-64 host code


@needs_nvcc
def test_cuda_artifact_on_a_machine_without_gpu_fails_clearly(cnn_onnx, tmp_path):
    out = tmp_path / "gpu"
    assert run_cli("compile", str(cnn_onnx), "-t", "cuda-sm80", "--no-tuning", "-o", str(out)).returncode == 0
    proc = run_cli("run", str(out))
    assert proc.returncode == 2 and "needs an NVIDIA GPU (sm_80)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tuning_for_gpu_or_arm_without_device_says_so(cnn_model, tmp_path):
    with pytest.raises(TuningError, match="tuning measures on the GPU.*--rpc-tracker"):
        tvmopt.tune(cnn_model, "cuda-sm80", budget="smoke", log_root=tmp_path)
    with pytest.raises(TuningError, match="cannot be measured on this machine.*--rpc-tracker"):
        tvmopt.tune(cnn_model, "arm-cortex-a72", budget="smoke", log_root=tmp_path)


# ------------------------------------------------------------------------------- RPC


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_args() -> list[str]:
    port = _free_port()  # TVM's servers bind within [--port, --port-end), default end 9199
    return ["--port", str(port), "--port-end", str(port + 1)]


def _wait_for_keys(port: int, keys: dict[str, int], timeout: float = 90) -> None:
    from tvm import rpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            summary = rpc.connect_tracker("127.0.0.1", port).summary()
            free = {k: v["free"] for k, v in summary.get("queue_info", {}).items()}
            if all(free.get(k, 0) >= n for k, n in keys.items()):
                return
        except Exception:  # noqa: BLE001 - tracker still starting
            pass
        time.sleep(1)
    raise TimeoutError(f"RPC servers {keys} did not register with the tracker on port {port}")


def _enable_binfmt() -> bool:
    """The forking RPC server under emulation needs the kernel to run aarch64 binaries."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if entry.exists():
        return True
    if os.geteuid() != 0 or not Path("/usr/lib/binfmt.d/qemu-aarch64.conf").exists():
        return False
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], check=False)
    try:
        Path("/proc/sys/fs/binfmt_misc/register").write_text(Path("/usr/lib/binfmt.d/qemu-aarch64.conf").read_text())
    except OSError:
        return False
    return entry.exists()


@pytest.fixture(scope="module")
def rpc_tracker(aarch64_root):
    """A tracker, two native x86 servers (key x86) and one emulated aarch64 server (key aarch64)."""
    port = _free_port()
    python = sys.executable
    # Each server in its own process group: its forked workers (popen_worker, the emulated
    # aarch64 children) are killed with it at teardown.
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [subprocess.Popen([python, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                               "--port-end", str(port + 1)], **quiet)]
    time.sleep(2)
    for _ in range(2):
        procs.append(subprocess.Popen(
            [python, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", *_port_args(),
             "--tracker", f"127.0.0.1:{port}", "--key", "x86"], **quiet))
    keys = {"x86": 2}
    if _enable_binfmt():
        env = dict(os.environ, QEMU_LD_PREFIX=str(aarch64_root), PYTHONPATH=str(aarch64_root / "opt" / "tvmpy"))
        procs.append(subprocess.Popen(
            [str(aarch64_root / "usr" / "bin" / "python3"), "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
             *_port_args(), "--tracker", f"127.0.0.1:{port}", "--key", "aarch64"],
            env=env, **quiet))
        keys["aarch64"] = 1
    try:
        _wait_for_keys(port, keys)
        yield port, keys
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_tune_and_run_through_rpc_tracker(rpc_tracker, cnn_onnx, tmp_path):
    port, _ = rpc_tracker
    logs, out = tmp_path / "logs", tmp_path / "art"
    start = time.monotonic()
    proc = run_cli("tune", str(cnn_onnx), "--budget", "smoke", "--rpc-tracker", f"127.0.0.1:{port}",
                   "--rpc-key", "x86", "--log-dir", str(logs), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    print(f"\nRPC tune: {time.monotonic() - start:.1f} s")
    log_dir = logs / tvmopt.get_target("host").log_name
    database = LogDatabase(log_dir, readonly=True)
    assert len(database) >= 4 and all(float(r.run_secs[0]) < 1 for r in database.get_all_tuning_records()
                                      if float(r.run_secs[0]) < 1e9)
    session = json.loads(next((log_dir / "sessions").glob("*.json")).read_text())
    assert session["measured_on"] == f"x86@127.0.0.1:{port}" and session["status"] == "finished"

    assert run_cli("compile", str(cnn_onnx), "--log-dir", str(logs), "-o", str(out)).returncode == 0
    np.savez(tmp_path / "in.npz", input=X)
    ran = run_cli("run", str(out), "--inputs", str(tmp_path / "in.npz"), "--save-outputs", str(tmp_path / "o.npz"),
                  "--rpc-tracker", f"127.0.0.1:{port}", "--rpc-key", "x86", "--repeat", "5", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["median_ms"] > 0
    with np.load(tmp_path / "o.npz") as remote_out:
        np.testing.assert_allclose(remote_out["logits"], tvmopt.load(out)(X)[0], atol=1e-5)


def test_tune_arm_through_emulated_rpc_server(rpc_tracker, cnn_model, x86_reference, tmp_path):
    port, keys = rpc_tracker
    if "aarch64" not in keys:
        pytest.skip("binfmt_misc is not available, so no emulated aarch64 RPC server")
    from tvmopt.runtime.emulation import run_emulated
    from tvmopt.runtime.remote import RpcDevice

    log = tvmopt.tune(cnn_model, "arm-cortex-a72", budget=make_budget("smoke", trials_per_task=2),
                      log_root=tmp_path, rpc=RpcDevice("127.0.0.1", port, "aarch64"), progress=False)
    assert log.trials_run >= 4 and not log.untuned_tasks  # emulated timings: records only
    artifact = tvmopt.compile(cnn_model, "arm-cortex-a72", tmp_path / "arm", log_root=tmp_path)
    assert artifact.manifest.tuning.tasks_tuned == len(log.tasks)
    np.testing.assert_allclose(run_emulated(artifact, [X])[0], x86_reference, atol=1e-4, rtol=1e-4)


def test_arm_templates_tuned_through_emulated_rpc_server(rpc_tracker, tmp_path):
    """The templates on NEON's 4-float block, after real trials on the emulated aarch64 server: a
    3x3 conv as Winograd (input transform, GEMMs, output transform) and a depthwise conv fused
    into the 1x1 conv after it, compared with ONNX Runtime."""
    port, keys = rpc_tracker
    if "aarch64" not in keys:
        pytest.skip("binfmt_misc is not available, so no emulated aarch64 RPC server")
    import torch
    from conftest import ort_run
    from models import export_onnx
    from torch import nn
    from tvmopt.compiler.inspect import describe
    from tvmopt.runtime.emulation import run_emulated
    from tvmopt.runtime.remote import RpcDevice
    from tvmopt.targets import get_target

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 32, 1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6(), nn.Conv2d(32, 16, 1)).eval()
    x = torch.randn(1, 64, 16, 16)
    path = export_onnx(net, (x,), tmp_path / "block.onnx", ["x"], ["y"])
    model = tvmopt.import_model(path)
    report = describe(model, get_target("arm-neoverse-n1").tvm_target())
    assert report.winograd == 1 and any("depthwise_pointwise" in k.name for k in report.kernels)
    log = tvmopt.tune(model, "arm-neoverse-n1", budget=make_budget("smoke", trials_per_task=2),
                      log_root=tmp_path / "logs", rpc=RpcDevice("127.0.0.1", port, "aarch64"), progress=False)
    assert not log.untuned_tasks
    artifact = tvmopt.compile(model, "arm-neoverse-n1", tmp_path / "arm", log_root=tmp_path / "logs")
    applied = " ".join(r.task for r in artifact.manifest.tuning.records_applied)
    assert "winograd_gemm" in applied and "winograd_input" in applied and "depthwise_pointwise" in applied, applied
    np.testing.assert_allclose(run_emulated(artifact, [x.numpy()])[0], ort_run(path, {"x": x.numpy()})[0],
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("args, expected", [
    (["--rpc-tracker", "nohost"], "expected HOST:PORT"),
    (["--rpc-tracker", "127.0.0.1:9"], "needs --rpc-key"),
    (["--rpc-tracker", "127.0.0.1:9", "--rpc-key", "x86"], "is not reachable"),
])
def test_bad_rpc_arguments_fail_in_one_line(args, expected, cnn_onnx, tmp_path):
    proc = run_cli("tune", str(cnn_onnx), "--budget", "smoke", "--log-dir", str(tmp_path), *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tvmopt: error: ") and expected in last

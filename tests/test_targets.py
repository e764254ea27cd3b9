"""The target registry: every shipped target is valid TVM, host resolves to this machine."""

import json

import pytest
import tvmopt
from tvmopt.errors import TargetError
from tvmopt.targets import compatibility_problem, get_target, host_fingerprint, list_targets

SHIPPED = {"host", "x86-avx2", "x86-avx512", "arm-cortex-a72", "arm-neoverse-n1", "cuda-sm80", "cuda-sm90"}


def test_registry_lists_every_shipped_target_and_each_is_valid_tvm():
    specs = {s.name: s for s in list_targets()}
    assert SHIPPED <= set(specs)
    for spec in specs.values():
        target = spec.tvm_target()
        assert target.kind.name == ("cuda" if spec.device == "cuda" else "llvm")
        assert spec.description


def test_host_is_resolved_from_this_machine():
    fp = host_fingerprint()
    host = get_target("host")
    assert host.target["mcpu"] == fp["llvm_cpu"] != "generic"
    assert host.target["mtriple"] in ("x86_64-linux-gnu", "aarch64-linux-gnu")
    assert host.target["num-cores"] == fp["cores"]
    assert host.log_name == f"host-{fp['llvm_cpu']}-{fp['cores']}c"
    assert host.is_local_cpu


def test_cross_targets_are_not_runnable_here_and_say_why():
    fp = host_fingerprint()
    arm = get_target("arm-cortex-a72")
    assert arm.cross_compiler == "aarch64-linux-gnu-g++"
    assert arm.tvm_target().attrs["mtriple"] == "aarch64-linux-gnu"
    if fp["arch"] == "x86_64":
        assert "aarch64" in compatibility_problem(arm.requires, fp)
    cuda = get_target("cuda-sm90")
    assert str(cuda.tvm_target().attrs["arch"]) == "sm_90"
    assert cuda.tvm_target().host is not None


def test_missing_cpu_feature_is_reported():
    fp = dict(host_fingerprint(), cpu_flags=["avx2", "fma"])
    problem = compatibility_problem(get_target("x86-avx512").requires, fp)
    assert problem and "avx512f" in problem


def test_unknown_target_lists_known_ones():
    with pytest.raises(TargetError, match="known targets: .*x86-avx2"):
        tvmopt.get_target("pentium-mmx")


def test_user_target_file_is_validated(tmp_path):
    good = tmp_path / "my-box.json"
    good.write_text(json.dumps({"name": "my-box", "description": "d", "device": "cpu",
                                "target": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}}))
    assert get_target(str(good)).tvm_target().attrs["mcpu"] == "haswell"
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "description": "d", "device": "cpu", "target": {"kind": "nosuchkind"}}')
    with pytest.raises(TargetError, match="bad.json.*TVM rejects it"):
        get_target(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TargetError, match="broken.json: not valid JSON"):
        get_target(str(broken))
    partial = tmp_path / "partial.json"
    partial.write_text('{"name": "p"}')
    with pytest.raises(TargetError, match="missing key"):
        get_target(str(partial))

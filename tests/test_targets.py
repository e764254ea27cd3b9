"""The target registry: every shipped target is valid TVM, host resolves to this machine."""

import json

import pytest
import tvmopt
from tvmopt.errors import TargetError
from dataclasses import replace

from tvmopt.targets import get_target, host_machine, list_targets

SHIPPED = {"host", "x86-avx2", "x86-avx512", "arm-cortex-a72", "arm-neoverse-n1", "cuda-sm80", "cuda-sm90"}


def test_registry_lists_every_shipped_target_and_each_is_valid_tvm():
    specs = {s.name: s for s in list_targets()}
    assert SHIPPED <= set(specs)
    for spec in specs.values():
        target = spec.tvm_target()
        assert target.kind.name == ("cuda" if spec.device == "cuda" else "llvm")
        assert spec.description


def test_host_is_resolved_from_this_machine():
    machine = host_machine()
    host = get_target("host")
    assert host.target["mcpu"] == machine.llvm_cpu != "generic"
    assert host.target["mtriple"] in ("x86_64-linux-gnu", "aarch64-linux-gnu")
    assert host.target["num-cores"] == machine.cores
    assert host.log_name == f"host-{machine.llvm_cpu}-{machine.cores}c"
    assert host.is_local_cpu


def test_cross_targets_are_not_runnable_here_and_say_why():
    machine = host_machine()
    arm = get_target("arm-cortex-a72")
    assert arm.cross_compiler == "aarch64-linux-gnu-g++"
    assert arm.tvm_target().attrs["mtriple"] == "aarch64-linux-gnu"
    if machine.arch == "x86_64":
        assert "aarch64" in arm.requires.problem_on(machine)
    cuda = get_target("cuda-sm90")
    assert str(cuda.tvm_target().attrs["arch"]) == "sm_90"
    assert cuda.tvm_target().host is not None


def test_missing_cpu_feature_is_reported():
    machine = replace(host_machine(), cpu_flags=("avx2", "fma"))
    problem = get_target("x86-avx512").requires.problem_on(machine)
    assert problem and "avx512f" in problem
    # an AVX2 build runs where AVX-512 does, not the other way round
    assert get_target("x86-avx2").requires.runs_on(get_target("x86-avx512").requires)
    assert not get_target("x86-avx512").requires.runs_on(get_target("x86-avx2").requires)


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

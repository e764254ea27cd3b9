"""The target registry: every shipped target is valid TVM, host resolves to this machine."""

import json

import pytest
import tvmopt
from conftest import run_cli
from tvmopt.errors import TargetError
from dataclasses import replace

from tvmopt.targets import get_target, host_machine, list_targets

SHIPPED = {"host", "x86-avx2", "x86-avx512", "x86-avx512-vnni", "x86-avx512-spr", "arm-cortex-a72", "arm-neoverse-n1",
           "cuda-sm80", "cuda-sm90"}


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


def test_targets_say_what_they_support():
    from tvmopt.compiler.intrinsics import int8_dot_for

    expected = {"x86-avx2": ("pmaddubsw", False, False), "x86-avx512": ("pmaddubsw", False, False),
                "x86-avx512-vnni": ("vnni", False, False), "x86-avx512-spr": ("vnni", True, True),
                "arm-cortex-a72": (None, False, False),
                "arm-neoverse-n1": ("dotprod", False, True), "cuda-sm80": ("dp4a", True, True)}
    for name, (dot, bf16, fp16) in expected.items():
        spec = get_target(name)
        assert (spec.supports.int8_dot, spec.supports.bf16, spec.supports.fp16) == (dot, bf16, fp16), name
        assert spec.to_json()["supports"]["int8_dot"] == dot
        # what the target declares is what the compiler finds in LLVM's CPU features
        compiled = int8_dot_for(spec.tvm_target())
        assert (compiled.instruction if compiled else None) == {"pmaddubsw": "vpmaddubsw", "vnni": "vpdpbusd",
                                                                "dotprod": "sdot", "dp4a": None, None: None}[dot]
    host = get_target("host")  # derived from this machine's CPU flags
    flags = set(host_machine().cpu_flags)
    assert host.supports.int8_dot == ("vnni" if "avx512_vnni" in flags else
                                      "dotprod" if "asimddp" in flags else
                                      "pmaddubsw" if "avx2" in flags else None)
    assert host.supports.bf16 == ("avx512_bf16" in flags or "bf16" in flags)
    proc = run_cli("targets")
    assert proc.returncode == 0 and "int8:vnni" in proc.stdout


def test_target_files_without_supports_still_load_and_derive_it(tmp_path):
    old = tmp_path / "old-box.json"
    old.write_text(json.dumps({"name": "old-box", "description": "d", "device": "cpu",
                               "target": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "cascadelake"},
                               "requires": {"arch": "x86_64", "cpu_flags": ["avx2", "avx512_vnni"]}}))
    assert get_target(str(old)).supports.int8_dot == "vnni"
    bad = tmp_path / "bad-supports.json"
    bad.write_text(json.dumps({"name": "b", "description": "d", "device": "cpu",
                               "target": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
                               "supports": {"int8_dot": "amx", "bf16": False}}))
    with pytest.raises(TargetError, match=r"bad-supports.json: supports.int8_dot must be one of"):
        get_target(str(bad))
    bad.write_text(json.dumps({"name": "b", "description": "d", "device": "cpu",
                               "target": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
                               "supports": {"int4": True}}))
    with pytest.raises(TargetError, match="unknown key.*int4"):
        get_target(str(bad))

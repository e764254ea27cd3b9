"""Int8 dot-product tensor intrinsics tvmopt adds to (or repairs in) TVM's x86 set.

- `dot_16x4_vnni` (AVX-512 VNNI, `vpdpbusd`): the wheel's implementation calls
  `llvm.x86.avx512.vpdpbusd.512` with `<16 x i32>` operands, the signature of LLVM <= 20; LLVM 21+
  (the wheel links LLVM 22) declares `<64 x i8>` operands, and every VNNI-tensorized kernel failed
  LLVM's verifier ("Call parameter type does not match function signature"). We re-register it,
  under the same name (MetaSchedule's "vnni" rule set refers to it), with byte vectors.
- `dot_8x4_u8s8_avx2` (AVX2, `vpmaddubsw` + `vpmaddwd`): TVM has none for AVX2. `vpmaddubsw` adds
  pairs of u8 x s8 products in int16 *with saturation*, so it is exact only when every pair stays
  within int16: the graph rewrite (int8.py) uses it only for weights of at most 7 bits (ONNX
  Runtime's `reduce_range`), which it checks on the constant weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import tvm
from tvm.script import tirx as T
from tvm.target.codegen import llvm_cpu_has_features, llvm_version_major

VNNI_INTRIN = "dot_16x4_vnni"
AVX2_INTRIN = "dot_8x4_u8s8_avx2"
# MetaSchedule's AVX-512 (no VNNI) rule set tensorizes u8 x s8 with this saturating intrinsic.
AVX512_INTRIN = "dot_16x4_avx512"
SDOT_INTRIN = "dot_4x4_i8i8s32_sdot"
UDOT_INTRIN = "dot_4x4_u8u8u32_udot"

_DONE: set[str] = set()


@dataclass(frozen=True)
class Int8Dot:
    """The int8 dot-product instruction a target's int8 GEMM kernels are tensorized with."""

    intrinsic: str  # registered TensorIntrin name
    lanes: int  # int32 outputs per instruction: the weight tile is [lanes, 4]
    a_dtype: str  # activations' dtype in the kernel ("uint8" on x86, "int8" for sdot)
    saturating: bool  # pairs of products are summed in int16 with saturation (vpmaddubsw)
    instruction: str  # the mnemonic that shows in the library's disassembly


VNNI = Int8Dot(VNNI_INTRIN, 16, "uint8", False, "vpdpbusd")
AVX512 = Int8Dot(AVX512_INTRIN, 16, "uint8", True, "vpmaddubsw")
AVX2 = Int8Dot(AVX2_INTRIN, 8, "uint8", True, "vpmaddubsw")
SDOT = Int8Dot(SDOT_INTRIN, 4, "int8", False, "sdot")


def int8_dot_for(target: tvm.target.Target) -> Int8Dot | None:
    """The dot-product instruction for int8 GEMMs on `target` (LLVM's CPU features), or None."""
    if target.kind.name != "llvm":
        return None
    return _int8_dot(str(target.attrs.get("mtriple", "")), str(target.attrs.get("mcpu", "")),
                     tuple(str(a) for a in target.attrs.get("mattr", []) or []))


@lru_cache(maxsize=None)
def _int8_dot(mtriple: str, mcpu: str, mattr: tuple[str, ...]) -> Int8Dot | None:
    config = {"kind": "llvm", "mtriple": mtriple, "mcpu": mcpu, "mattr": list(mattr)}
    target = tvm.target.Target({k: v for k, v in config.items() if v})

    def has(feature: str) -> bool:
        return bool(llvm_cpu_has_features(feature, target))

    if mtriple.startswith(("aarch64", "arm64")):
        return SDOT if has("dotprod") else None
    if not mtriple.startswith(("x86_64", "i686")) and mtriple:
        return None
    if has("avx512vnni"):
        return VNNI
    if has("avx512bw") and has("avx512f"):
        return AVX512
    if has("avx2"):
        return AVX2
    return None


def _dot_desc(lanes: int):
    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


@T.prim_func(s_tir=True)
def _vnni_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a_u8x64 = T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"),
            a_u8x64,
            B.vload([0, 0], dtype="int8x64"),
            dtype="int32x16",
        )


@T.prim_func(s_tir=True)
def _avx2_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((8, 4), "int8", offset_factor=1),
    C: T.Buffer((8,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:4], B[0:8, 0:4])
        T.writes(C[0:8])
        a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a_u8x32 = T.reinterpret(T.broadcast(a_i32, 8), dtype="uint8x32")
        pairs = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
            a_u8x32,
            B.vload([0, 0], dtype="int8x32"),
            dtype="int16x16",
        )
        C[T.ramp(T.int32(0), 1, 8)] += T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
            pairs,
            T.broadcast(T.int16(1), 16),
            dtype="int32x8",
        )


def register(target: tvm.target.Target) -> None:
    """After TVM's own CPU intrinsics are imported: tvmopt's fixes and additions for `target`."""
    if target.kind.name == "llvm" and not str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm")):
        register_x86()


def register_x86() -> None:
    """Repair the VNNI intrinsic for this LLVM and add the AVX2 one (idempotent)."""
    if "x86" in _DONE:
        return
    from tvm.s_tir import TensorIntrin

    if llvm_version_major() >= 21:
        TensorIntrin.register(VNNI_INTRIN, _dot_desc(16), _vnni_impl, override=True)
    TensorIntrin.register(AVX2_INTRIN, _dot_desc(8), _avx2_impl, override=True)
    _DONE.add("x86")

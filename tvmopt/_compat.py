"""Version shims only: where this TVM release keeps things that moved between releases.

MetaSchedule moved from tvm.meta_schedule to tvm.s_tir.meta_schedule, tvm.tir became
tvm.tirx and tvm.contrib.cc became tvm.support.cc within two years; each stage imports
these names from here, so the next move is a one-file fix. Importing this module imports
TVM's compiler: the runtime never does.
"""

from __future__ import annotations

import tvm

try:  # apache-tvm >= 0.2x
    from tvm.s_tir import meta_schedule as ms
except ImportError:  # pragma: no cover - older layout
    from tvm import meta_schedule as ms  # type: ignore[no-redef]

from tvm import tirx  # 0.27: tvm.tir was renamed tvm.tirx
from tvm.ir.utils import derived_object  # subclassing MetaSchedule's Py* objects

try:
    from tvm.support import cc  # 0.27
except ImportError:  # pragma: no cover
    from tvm.contrib import cc  # type: ignore[no-redef]

TVM_VERSION: str = tvm.__version__
PrimFunc = tirx.PrimFunc
IntImm = tirx.IntImm


def region_buffers(regions) -> list:
    """The buffers of a block's read or write regions (0.27: a TensorRegion's `source`; earlier
    releases: a BufferRegion's `buffer`)."""
    return [getattr(r, "buffer", None) or r.source for r in regions]


__all__ = ["ms", "tirx", "derived_object", "cc", "TVM_VERSION", "PrimFunc", "IntImm", "region_buffers"]

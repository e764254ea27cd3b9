"""The builder role: compile scheduled candidates into shared libraries, in a persistent pool."""

from __future__ import annotations

import os
import tempfile

import tvm

from .._compat import derived_object, ms
from .._files import ScratchDir
from ..compiler.codegen import export_library
from ..compiler.nan import propagate_nan
from ..compiler.passes import register_tensor_intrinsics
from ..logs.workload import structural_hash
from .interrupt import ignore_sigint

# Builder "error" for a candidate the log already holds: not built, not measured, not logged.
ALREADY_MEASURED = "tvmopt: already measured in the log, not built again"
# Builder / runner "error" for a candidate left out: the session stops (Ctrl-C, an error) or its
# --trials cap is reached within a batch. Not a trial, not logged.
NOT_MEASURED = "tvmopt: not measured (the session is stopping or reached its --trials cap)"


def _build_candidate(mod: tvm.IRModule, target: tvm.target.Target, cross_compiler: str | None,
                     scratch: str | None = None) -> str:
    """Build one scheduled candidate in a worker process and export it as a shared library.

    Mirrors MetaSchedule's default_build/default_export, minus its full tensor_intrin import;
    exports a linked .so (cross-compiled for remote targets) rather than a tar of objects, so
    an RPC device needs no compiler of its own.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    if scratch is not None:
        tempfile.tempdir = scratch  # TVM's export links in a temp dir of its own: keep it in the sweepable one
    register_tensor_intrinsics(target)
    mod = propagate_nan(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target)  # as compile does
    rt_mod = tvm_build(mod, target=target)
    path = os.path.join(tempfile.mkdtemp(prefix="tvmopt-cand-", dir=scratch), "candidate.so")
    export_library(rt_mod, path, cross_compiler)
    return path


@derived_object
class PersistentBuilder(ms.builder.PyBuilder):
    """Builds candidates in a pool of worker processes that lives for the whole session.

    Workaround: LocalBuilder starts a fresh process pool for every batch, and each worker
    re-imports TVM plus all tensor intrinsics (~24 s) before a 30 ms build, which also makes
    MetaSchedule's 30 s build timeout fail good candidates. Here workers start once, are
    recycled after `max_uses` builds (LocalBuilder's reason for fresh pools: worker leaks),
    and a build that hangs or crashes is still killed and reported as an error.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        timeout_sec: float = 60.0,
        max_uses: int = 256,
        measured: set[int] | None = None,
        cross_compiler: str | None = None,
        progress=None,
    ):
        super().__init__()
        self.cross_compiler = cross_compiler
        # The session's SessionProgress: a build stops being waited for once it is stopping, and no
        # more candidates are built than its --trials cap leaves.
        self.progress = progress
        # Candidates are built under one scratch directory, swept by the next session if this one
        # is killed before it removes them.
        self.scratch = ScratchDir("tvmopt-build-")
        # Hashes of scheduled modules already in the log: MetaSchedule's evolutionary search
        # seeds from the log's best records but only avoids what it measured itself, so a
        # resumed session would measure them again; those are answered ALREADY_MEASURED.
        self.measured = measured if measured is not None else set()
        from tvm.support.popen_pool import PopenPoolExecutor

        self.max_workers = max_workers or max(1, len(os.sched_getaffinity(0)))
        self.timeout_sec = timeout_sec
        self._pool = PopenPoolExecutor(
            max_workers=self.max_workers, timeout=timeout_sec, maximum_process_uses=max_uses,
            initializer=ignore_sigint,
        )

    def build(self, build_inputs: list) -> list:
        from tvm.support.popen_pool import StatusKind

        skip, results = [], []  # per candidate: None (build it), ALREADY_MEASURED or NOT_MEASURED
        left = self.progress.trials_left() if self.progress is not None else None
        for inp in build_inputs:
            key = structural_hash(inp.mod)
            if key in self.measured:
                skip.append(ALREADY_MEASURED)
            elif left is not None and left <= 0:
                skip.append(NOT_MEASURED)  # over the session's --trials cap: a later session may measure it
            else:
                skip.append(None)
                self.measured.add(key)
                left = None if left is None else left - 1
        scratch = str(self.scratch.path)
        jobs = [(inp.mod, inp.target, self.cross_compiler, scratch) for inp, why in zip(build_inputs, skip) if not why]
        built = self._pool.map_with_error_catching(lambda args: _build_candidate(*args), jobs)
        for why in skip:
            if why:
                results.append(ms.builder.BuilderResult(None, why))
                continue
            if self.progress is not None and self.progress.stopping:
                built.close()  # cancels the builds not started yet
                results.append(ms.builder.BuilderResult(None, NOT_MEASURED))
                continue
            res = next(built)
            if res.status == StatusKind.COMPLETE:
                results.append(ms.builder.BuilderResult(res.value, None))
            elif res.status == StatusKind.TIMEOUT:
                message = f"tvmopt builder: timeout after {self.timeout_sec:.0f} s"
                results.append(ms.builder.BuilderResult(None, message))
            else:
                results.append(ms.builder.BuilderResult(None, f"tvmopt builder: {res.value}"))
        return results

    def shutdown(self) -> None:
        self._pool.shutdown()
        self.scratch.release()

"""The same batch-prediction job on Ray Data, where one machine is not enough.

The dataset is the job's pending chunks; `map_batches` runs them on a pool of actors, each of
which loads the artifact once and then predicts chunk after chunk with the very step the local
job uses (predict.run_chunk), writing the chunk files itself. Workers therefore need tvmopt, the
artifact and the input and output paths (a shared file system on a cluster). Needs
`pip install 'tvmopt[ray]'`.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, require


class ChunkWorker:
    """A Ray Data actor: one Predictor for its lifetime, one chunk per call."""

    def __init__(self, job_json: dict, out: str, batch_size: int | None, on_error: str):
        from ..runtime import load
        from .data import RecordSource
        from .batch_predict import PredictJob

        self.job = PredictJob.from_json(job_json)
        self.predictor = load(self.job.artifact)
        self.source = RecordSource(self.job.input, self.predictor.inputs)
        self.out = Path(out)
        self.batch_size = batch_size
        self.on_error = on_error

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .batch_predict import run_chunk

        results = [run_chunk(self.predictor, self.source, self.job, self.out, int(c), self.batch_size, self.on_error)
                   for c in batch["chunk"]]
        return {"chunk": np.array([r.chunk for r in results]), "records": np.array([r.records for r in results]),
                "ok": np.array([r.ok for r in results]), "pid": np.array([os.getpid()] * len(results))}


def run_on_ray(job, pending: Sequence[int], out: Path, batch_size: int | None, on_error: str, address: str,
               actors: int | None, bar: Any) -> set[int]:
    """Run `pending` chunks of `job` on Ray (`address` "local" starts a local instance for the job
    and stops it after). Returns the pids of the actors that ran them."""
    if address == "local" and "ray" not in sys.modules:
        # A local instance for one job listens on the loopback only: Ray otherwise binds the
        # machine's network address (it reads this switch once, at import).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require("ray", "ray")
    require("ray.data", "ray")
    import logging

    started_here = not ray.is_initialized()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # tvmopt's own bar counts records
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if address != "local":
            kwargs["address"] = address
        ray.init(**kwargs)
    pids: set[int] = set()
    try:
        if not pending:
            return pids
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        count = max(1, min(actors or len(nodes), len(pending)))
        dataset = ray.data.from_items([{"chunk": c} for c in pending])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray's deprecation notices about its own arguments
            results = dataset.map_batches(
                ChunkWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=count), num_cpus=1,
                max_restarts=0,  # a lost actor fails the job, which resumes from its finished chunks
                fn_constructor_kwargs={"job_json": job.to_json(), "out": str(out.resolve()),
                                       "batch_size": batch_size, "on_error": on_error},
            )
        for row in results.iter_rows():
            pids.add(int(row["pid"]))
            if bar is not None:
                bar.update(int(row["records"]))
    except Exception as err:  # noqa: BLE001 - Ray wraps the worker's exception
        cause = _root_cause(err)
        if isinstance(cause, DataError):
            raise DataError(str(cause)) from err
        raise DataError(f"the job failed on Ray: {type(cause).__name__}: {str(cause).strip().splitlines()[-1]}") \
            from err
    finally:
        if started_here:
            ray.shutdown()
    return pids


def _root_cause(err: BaseException) -> BaseException:
    """The exception a Ray worker raised, under Ray's wrappers."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "cause", None) or err.__cause__
        if inner is None:
            break
        err = inner
    return err

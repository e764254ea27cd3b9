"""Prometheus metrics of the server: requests by model and status, latency, queue time, batch sizes.

With several worker processes, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by the supervisor before the workers start) lets any worker answer /metrics for all of them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, disable_created_metrics,
                               generate_latest)

disable_created_metrics()  # the *_created series only double the exposition

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNKNOWN_MODEL = "_unknown"  # label of requests for a model the server does not have (bounded cardinality)


@dataclass(frozen=True)
class _ModelSeries:
    """One model's labelled histograms."""

    latency: object
    queue: object
    compute: object
    batch_rows: object
    batch_requests: object


@dataclass
class Duration:
    """A count and the summed nanoseconds of what it counts (Triton's duration_stat)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9) * count

    def to_json(self) -> dict:
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStats:
    """One model's figures for Triton's statistics extension (GET /v2/models/NAME/stats), counted
    in this worker process. A request in a batch is charged the whole batch's compute time, as
    Triton charges it."""

    last_inference_ms: int = 0
    inference_count: int = 0  # rows
    execution_count: int = 0  # model runs
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=dict)  # rows per run -> runs and their time

    def to_json(self, name: str, version: str) -> dict:
        empty = Duration().to_json()
        return {
            "name": name, "version": version, "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {"success": self.success.to_json(), "fail": self.fail.to_json(),
                                "queue": self.queue.to_json(), "compute_input": empty,
                                "compute_infer": self.compute_infer.to_json(), "compute_output": empty,
                                "cache_hit": empty, "cache_miss": empty},
            "batch_stats": [{"batch_size": rows, "compute_input": empty, "compute_infer": runs.to_json(),
                             "compute_output": empty} for rows, runs in sorted(self.batches.items())],
        }


class Metrics:
    """The server's metrics in their own registry (several apps may live in one process), and the
    models' statistics (Triton's extension)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tvmopt_requests", "Inference requests by model and HTTP status",
                                ["model", "status"], registry=self.registry)
        self.latency = Histogram("tvmopt_request_duration_seconds", "Inference request latency in the server, "
                                 "body read to response", ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue = Histogram("tvmopt_queue_duration_seconds", "Time a request waited for its batch to start",
                               ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.compute = Histogram("tvmopt_batch_duration_seconds", "Time one batch ran in the model",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("tvmopt_batch_size", "Rows (records) per model run", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("tvmopt_batch_requests", "Requests merged into one model run", ["model"],
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self._counters: dict[tuple[str, int], object] = {}
        self._models: dict[str, _ModelSeries] = {}
        self.stats: dict[str, ModelStats] = {}

    def request(self, model: str, status: int, seconds: float | None) -> None:
        counter = self._counters.get((model, status))
        if counter is None:  # labels() builds and locks per call: looked up once per model and status
            counter = self._counters[model, status] = self.requests.labels(model, str(status))
        counter.inc()
        if seconds is not None:
            self._of(model).latency.observe(seconds)
            stats = self.stats_of(model)
            (stats.success if status == 200 else stats.fail).add(seconds)
            if status == 200:
                stats.last_inference_ms = int(time.time() * 1e3)

    def batch(self, model: str, rows: int, requests: int, queue_seconds: list[float], seconds: float) -> None:
        series = self._of(model)
        series.batch_rows.observe(rows)
        series.batch_requests.observe(requests)
        series.compute.observe(seconds)
        for waited in queue_seconds:
            series.queue.observe(waited)
        stats = self.stats_of(model)
        stats.inference_count += rows
        stats.execution_count += 1
        stats.queue.count += len(queue_seconds)
        stats.queue.ns += int(sum(queue_seconds) * 1e9)
        stats.compute_infer.add(seconds, requests)
        stats.batches.setdefault(rows, Duration()).add(seconds)

    def stats_of(self, model: str) -> ModelStats:
        stats = self.stats.get(model)
        if stats is None:
            stats = self.stats[model] = ModelStats()
        return stats

    def _of(self, model: str) -> _ModelSeries:
        series = self._models.get(model)
        if series is None:
            series = self._models[model] = _ModelSeries(self.latency.labels(model), self.queue.labels(model),
                                                        self.compute.labels(model), self.batch_rows.labels(model),
                                                        self.batch_requests.labels(model))
        return series

    def exposition(self) -> bytes:
        """The text format; all workers' values in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

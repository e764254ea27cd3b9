"""Prometheus metrics of the server: requests by model and status, latency, queue time, batch sizes.

With several worker processes, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by the supervisor before the workers start) lets any worker answer /metrics for all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, disable_created_metrics,
                               generate_latest)

disable_created_metrics()  # the *_created series only double the exposition

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNKNOWN_MODEL = "_unknown"  # label of requests for a model the server does not have (bounded cardinality)


class Metrics:
    """The server's metrics in their own registry (several apps may live in one process)."""

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

    def request(self, model: str, status: int, seconds: float | None) -> None:
        self.requests.labels(model, str(status)).inc()
        if seconds is not None:
            self.latency.labels(model).observe(seconds)

    def batch(self, model: str, rows: int, requests: int, queue_seconds: list[float], seconds: float) -> None:
        self.batch_rows.labels(model).observe(rows)
        self.batch_requests.labels(model).observe(requests)
        self.compute.labels(model).observe(seconds)
        queue = self.queue.labels(model)
        for waited in queue_seconds:
            queue.observe(waited)

    def exposition(self) -> bytes:
        """The text format; all workers' values in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

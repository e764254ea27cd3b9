"""Run the server: uvicorn (uvloop + httptools) on one socket, in one process or N workers.

SIGTERM (or Ctrl-C) drains: readiness turns 503, new requests get 503, requests in flight and
queued finish, then uvicorn closes the connections and the process exits 0. A second signal
stops at once. With --workers N, a supervisor binds the socket, starts N worker processes that
each load the models and serve the socket, forwards SIGTERM to them and waits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Sequence

import uvicorn

from .. import threads
from ..errors import TvmoptError

log = logging.getLogger("tvmopt.serve")


@dataclass(frozen=True)
class ServeSettings:
    """What `tvmopt serve` was asked for."""

    models: tuple[str, ...]  # artifact dirs, NAME=DIR, or .onnx files (ONNX Runtime)
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (printed on start)
    workers: int = 1
    max_batch_size: int | None = None  # None: each model's largest batch bucket (1 without buckets)
    max_queue_delay_ms: float = 0.0
    max_request_bytes: int = 64 << 20
    grace_s: float = 30.0  # the longest a drain waits for requests in flight
    warm_up: bool = True  # run each model (each batch bucket) on random inputs before serving
    inline_max_ms: float = 2.0  # a model whose full batch is faster runs on the event loop's thread

    def check(self) -> None:
        if not self.models:
            raise TvmoptError("serve needs at least one artifact")
        if self.workers < 1:
            raise TvmoptError(f"--workers {self.workers}: needs at least 1")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise TvmoptError(f"--max-batch-size {self.max_batch_size}: needs at least 1")
        if self.inline_max_ms < 0:
            raise TvmoptError(f"--inline-under-ms {self.inline_max_ms}: cannot be negative")
        if self.max_queue_delay_ms < 0:
            raise TvmoptError(f"--max-queue-delay-ms {self.max_queue_delay_ms}: cannot be negative")


def serve(models: Sequence[str], *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          max_batch_size: int | None = None, max_queue_delay_ms: float = 0.0, max_request_mb: float = 64,
          grace_s: float = 30.0, warm_up: bool = True, inline_max_ms: float = 2.0) -> None:
    """Serve artifacts over the Open Inference Protocol until SIGTERM/SIGINT (blocks)."""
    settings = ServeSettings(tuple(str(m) for m in models), host, port, workers, max_batch_size,
                             max_queue_delay_ms, int(max_request_mb * (1 << 20)), grace_s, warm_up, inline_max_ms)
    run(settings)


def run(settings: ServeSettings) -> None:
    settings.check()
    sock = _bind(settings.host, settings.port)
    try:
        if settings.workers == 1:
            from .models import load_models

            models = load_models(settings.models)
            _announce(settings, sock, [m.name for m in models])
            _serve_socket(settings, sock, models)
        else:
            _supervise(settings, sock)
    finally:
        sock.close()


# --------------------------------------------------------------------------- one worker


def _serve_socket(settings: ServeSettings, sock: socket.socket, models) -> None:
    from .app import create_app

    app = create_app(models, max_batch_size=settings.max_batch_size,
                     max_queue_delay_ms=settings.max_queue_delay_ms, max_request_bytes=settings.max_request_bytes,
                     warm_up=settings.warm_up, inline_max_ms=settings.inline_max_ms)
    # No access log and nothing reads the client's address: uvicorn's X-Forwarded-* middleware
    # (proxy_headers) would only add a layer to every request.
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on", log_level="warning",
                            access_log=False, proxy_headers=False, timeout_graceful_shutdown=settings.grace_s)
    DrainingServer(config, app.state.server, settings.grace_s).run(sockets=[sock])


def _worker(settings: ServeSettings, sock: socket.socket) -> None:
    """A worker process of the supervisor: load the models, serve the shared socket."""
    from .models import load_models

    _serve_socket(settings, sock, load_models(settings.models))


class DrainingServer(uvicorn.Server):
    """uvicorn's Server, but the first SIGTERM/SIGINT drains before uvicorn shuts down."""

    def __init__(self, config: uvicorn.Config, state, grace_s: float):
        super().__init__(config)
        self.state = state  # app.ServerState: draining flag, requests in flight, queues
        self.grace_s = grace_s
        self._drain_started = self._drain_deadline = 0.0

    def handle_exit(self, sig, frame) -> None:
        # uvicorn records the signal and re-raises it after shutting down (exit status -15); a
        # drained server exits 0 instead, so the signal is not recorded.
        now = time.monotonic()
        if self.state.draining:
            # A second signal stops at once; but not the same Ctrl-C reaching a worker twice (from
            # the terminal's process group and from the supervisor), hence the second.
            if now - self._drain_started > 1.0:
                self.should_exit = True
                self.force_exit = True
            return
        self.state.draining = True
        self._drain_started = now
        self._drain_deadline = now + self.grace_s

    async def on_tick(self, counter: int) -> bool:
        # uvicorn's main loop calls this every 0.1 s; the listening socket stays open (and answers
        # 503) until every request in flight or queued has its answer.
        if self.state.draining and not self.should_exit:
            if self.state.idle or time.monotonic() > self._drain_deadline:
                self.should_exit = True
        return await super().on_tick(counter)


# --------------------------------------------------------------------------- N workers


def _supervise(settings: ServeSettings, sock: socket.socket) -> None:
    """Start `workers` processes on the shared socket; SIGTERM/SIGINT is forwarded and waited for.

    A worker that dies while serving is replaced; one that dies while starting stops the server.
    Each worker gets cores // workers TVM threads (unless TVM_NUM_THREADS is set): N processes
    with all cores each would only fight over them.
    """
    from .models import check_model_arg

    names = [check_model_arg(m) for m in settings.models]  # fail fast, before any worker starts
    metrics_dir = tempfile.mkdtemp(prefix="tvmopt-metrics-")
    saved = {k: os.environ.get(k) for k in ("PROMETHEUS_MULTIPROC_DIR", "TVM_NUM_THREADS")}
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if threads.user_threads() is None:
        threads.configure(max(1, threads.physical_cores() // settings.workers))
    context = multiprocessing.get_context("spawn")
    workers: list = []
    started: list[float] = []
    stopping: list[int] = []  # the signal that stops the server, once one came

    def start(index: int | None = None) -> None:
        process = context.Process(target=_worker, args=(settings, sock), name="tvmopt-serve-worker", daemon=False)
        process.start()
        if index is None:
            workers.append(process)
            started.append(time.monotonic())
        else:
            workers[index], started[index] = process, time.monotonic()

    def forward(sig, frame) -> None:
        stopping.append(sig)
        for process in workers:
            if process.is_alive():
                os.kill(process.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed = None
    try:
        for _ in range(settings.workers):
            start()
        _announce(settings, sock, names)
        while not stopping:
            for i, process in enumerate(workers):
                if process.is_alive() or stopping:
                    continue
                if time.monotonic() - started[i] < STARTUP_S:
                    failed = f"worker {process.pid} exited with status {process.exitcode} while starting"
                    forward(signal.SIGTERM, None)
                    break
                log.warning("worker %s exited with status %s; starting another", process.pid, process.exitcode)
                start(i)
            time.sleep(0.2)
        deadline = time.monotonic() + settings.grace_s + 10
        for process in workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed:
        raise TvmoptError(f"serve: {failed}; see its output above")


STARTUP_S = 10.0  # a worker dying sooner after its start is a startup failure, not a crash


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog until the models are loaded
    except OSError as err:
        raise TvmoptError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    sock.set_inheritable(True)
    return sock


def _announce(settings: ServeSettings, sock: socket.socket, names: Sequence[str]) -> None:
    """The line launchers wait for: where the server listens (the real port when --port 0)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    batching = f"max batch {settings.max_batch_size}" if settings.max_batch_size else "max batch per model"
    print(f"tvmopt serve: listening on http://{shown}:{port} (models: {', '.join(names)}; workers "
          f"{settings.workers}; {batching}; queue delay {settings.max_queue_delay_ms:g} ms)", flush=True)

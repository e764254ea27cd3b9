"""The HTTP application: the Open Inference Protocol's REST endpoints, over starlette except for
the inference route (plain ASGI: it takes the traffic, see InferenceApp).

Routes (KServe v2 / Triton): /v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{v}],
.../ready, .../config, .../stats, .../infer, /v2/models/stats and /metrics. A bad request gets 400 (404 for an unknown
model or route) with `{"error": ...}` naming what is wrong; a model failure 500; nothing a
request does reaches another request. While draining (SIGTERM) new requests get 503.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..errors import InputSpecError, last_line
from .batching import INLINE_MAX_S, DynamicBatcher
from .metrics import UNKNOWN_MODEL, Metrics
from .models import ServedModel
from .protocol import (HEADER_LENGTH, RequestError, decode_request, decompress, encode_response, error_body,
                       v2_datatype, v2_shape)

DEFAULT_MAX_REQUEST_BYTES = 64 << 20


@dataclass
class ServerState:
    """Everything the handlers share in one worker process."""

    models: dict[str, ServedModel]
    max_batch_size: int | None = None  # None: each model's own (its largest batch bucket, else 1)
    max_queue_delay_s: float = 0.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    inline_max_s: float = INLINE_MAX_S
    metrics: Metrics = field(default_factory=Metrics)
    batchers: dict[str, DynamicBatcher] = field(default_factory=dict)
    draining: bool = False
    in_flight: int = 0

    def batch_size_of(self, model: ServedModel) -> int:
        return self.max_batch_size if self.max_batch_size is not None else model.max_batch_size

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and not any(b.busy for b in self.batchers.values())


def create_app(models: Sequence[ServedModel], *, max_batch_size: int | None = None, max_queue_delay_ms: float = 0.0,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, warm_up: bool = True,
               inline_max_ms: float = INLINE_MAX_S * 1e3) -> "InferenceApp":
    """The ASGI app serving `models`; its ServerState is `app.state.server`. With `warm_up`, each
    model runs a few times at startup, before any request is taken, and a model whose full batch
    takes under `inline_max_ms` then runs its batches on the event loop's thread (batching.py)."""
    state = ServerState({m.name: m for m in models}, max_batch_size, max_queue_delay_ms / 1e3, max_request_bytes,
                        inline_max_ms / 1e3)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for model in state.models.values():
            batcher = DynamicBatcher(model, state.batch_size_of(model), state.max_queue_delay_s, state.metrics,
                                     state.inline_max_s)
            batcher.start()
            state.batchers[model.name] = batcher
        for batcher in state.batchers.values() if warm_up else ():  # one at a time: each uses every core
            print(f"tvmopt serve: {await batcher.warm_up()}", flush=True)
        yield
        for batcher in state.batchers.values():
            await batcher.stop()

    def model_routes(suffix: str, handler, methods=("GET",)) -> list[Route]:
        return [Route("/v2/models/{model}" + suffix, handler, methods=list(methods)),
                Route("/v2/models/{model}/versions/{version}" + suffix, handler, methods=list(methods))]

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "tvmopt", "version": __version__,
                      "extensions": ["binary_tensor_data", "classification", "model_configuration",
                                     "statistics"]})

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        return Response(status_code=503 if state.draining else 200)

    async def model_ready(request: Request) -> Response:
        _model(state, request)
        return Response(status_code=503 if state.draining else 200)

    async def model_metadata(request: Request) -> Response:
        model = _model(state, request)
        return _json({
            "name": model.name, "versions": [model.version], "platform": model.platform,
            "inputs": [{"name": s.name, "datatype": v2_datatype(s.dtype), "shape": v2_shape(s)} for s in model.inputs],
            "outputs": [{"name": s.name, "datatype": v2_datatype(s.dtype), "shape": v2_shape(s)}
                        for s in model.outputs],
        })

    async def model_config(request: Request) -> Response:
        """Triton's model configuration extension (tritonclient's get_model_config)."""
        model = _model(state, request)
        batching = model.batch_dim is not None
        config = {
            "name": model.name, "platform": model.platform,
            "max_batch_size": state.batchers[model.name].max_batch_size if batching else 0,
            "input": [{"name": s.name, "data_type": "TYPE_" + v2_datatype(s.dtype),
                       "dims": v2_shape(s)[1:] if batching else v2_shape(s)} for s in model.inputs],
            "output": [{"name": s.name, "data_type": "TYPE_" + v2_datatype(s.dtype),
                        "dims": v2_shape(s)[1:] if batching else v2_shape(s)} for s in model.outputs],
        }
        if batching:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": int(state.max_queue_delay_s * 1e6)}
        return _json(config)

    async def model_stats(request: Request) -> Response:
        """Triton's statistics extension (tritonclient's get_inference_statistics, perf_analyzer's
        server-side figures): every model, or the one named. Counted per worker process: with
        --workers N the worker that answers reports its own requests (/metrics adds them all up)."""
        if "model" in request.path_params:
            models = [_model(state, request)]
        else:
            models = list(state.models.values())
        return _json({"model_stats": [state.metrics.stats_of(m.name).to_json(m.name, m.version) for m in models]})

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.exposition(), media_type=state.metrics.content_type)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return _error(f"no such endpoint: {request.method} {request.url.path}", 404)
        if exc.status_code == 405:
            return _error(f"{request.method} is not allowed on {request.url.path}", 405)
        return _error(str(exc.detail), exc.status_code)

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return _error(str(exc), exc.status)

    routes = [
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/stats", model_stats),  # before /v2/models/{model}, which would take "stats"
        *model_routes("", model_metadata),
        *model_routes("/ready", model_ready),
        *model_routes("/config", model_config),
        *model_routes("/stats", model_stats),
        Route("/metrics", metrics),
    ]
    handlers = {HTTPException: http_error, RequestError: request_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.server = state
    return InferenceApp(app, state)


INFER_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")


class InferenceApp:
    """The ASGI app: POST .../infer handled here in plain ASGI, everything else by starlette.

    The inference route skips starlette's middleware, route regexes, Request and Response
    objects: about 25 us of each request here, where the MLP itself runs in 45 us. `state` is
    starlette's (`app.state.server` is the ServerState)."""

    def __init__(self, routes: Starlette, state: ServerState):
        self.routes = routes
        self.state = routes.state
        self._server = state

    async def __call__(self, scope, receive, send) -> None:
        match = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            return await self.routes(scope, receive, send)
        if scope["method"] != "POST":
            status, body, headers = 405, error_body(f"{scope['method']} is not allowed on {scope['path']}"), _JSON
        else:
            status, body, headers = await _infer_endpoint(self._server, match["model"], match["version"], scope,
                                                          receive)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_JSON = ((b"content-type", b"application/json"),)


async def _infer_endpoint(state: ServerState, name: str, version: str | None, scope,
                          receive) -> tuple[int, bytes, Sequence[tuple[bytes, bytes]]]:
    """One inference request, with the draining check and its metrics."""
    started = time.perf_counter()
    label = name if name in state.models else UNKNOWN_MODEL
    if state.draining:
        state.metrics.request(label, 503, None)
        return 503, error_body("the server is shutting down"), _JSON
    state.in_flight += 1
    try:
        status, body, headers = await _infer(state, name, version, scope, receive)
    finally:
        state.in_flight -= 1
    state.metrics.request(label, status, time.perf_counter() - started if label != UNKNOWN_MODEL else None)
    return status, body, headers


async def _infer(state: ServerState, name: str, version: str | None, scope,
                 receive) -> tuple[int, bytes, Sequence[tuple[bytes, bytes]]]:
    """Status, body and headers of one inference request; never raises."""
    try:
        model = _find_model(state, name, version)
        headers = _headers(scope, (b"content-length", b"content-encoding", HEADER_LENGTH.encode()))
        body = await _read_body(receive, headers[0], state.max_request_bytes)
        body = decompress(body, headers[1], state.max_request_bytes)
        decoded = decode_request(body, headers[2], model)
        if decoded.rows > 1 and model.batch_dim is None:
            raise RequestError(f"model '{model.name}' has no batch dim; send one record per request")
        try:
            outputs = await state.batchers[model.name].infer(decoded.arrays, decoded.rows)
        except InputSpecError as err:  # the runtime's own check of the request's arrays
            raise RequestError(str(err)) from None
        except Exception as err:  # noqa: BLE001 - the model failed on this request
            return 500, error_body(f"model '{model.name}' failed: {last_line(err)}"), _JSON
        content, response_headers = encode_response(model.name, model.version, decoded, model.outputs, outputs,
                                                    batched=model.batch_dim is not None)
        return 200, content, [(k.encode(), v.encode()) for k, v in response_headers.items()]
    except RequestError as err:
        return err.status, error_body(str(err)), _JSON
    except ClientDisconnect:
        return 499, b"", ()
    except Exception as err:  # noqa: BLE001 - a bug of ours still answers, and the server goes on
        return 500, error_body(f"internal error: {type(err).__name__}: {last_line(err)}"), _JSON


def _headers(scope, names: Sequence[bytes]) -> list[str | None]:
    """The values of the request headers `names` (lower case), None where absent."""
    values: list[str | None] = [None] * len(names)
    for key, value in scope["headers"]:
        if key in names:
            values[names.index(key)] = value.decode("latin-1")
    return values


def _model(state: ServerState, request: Request) -> ServedModel:
    return _find_model(state, request.path_params["model"], request.path_params.get("version"))


def _find_model(state: ServerState, name: str, version: str | None) -> ServedModel:
    model = state.models.get(name)
    if model is None:
        known = ", ".join(sorted(state.models)) or "none"
        raise RequestError(f"unknown model '{name}'; this server has: {known}", 404)
    if version is not None and version != model.version:
        raise RequestError(f"model '{name}' has no version '{version}' (versions: {model.version})", 404)
    return model


async def _read_body(receive, declared: str | None, limit: int) -> bytes:
    """The body, refusing one over `limit` bytes before reading it where Content-Length says so."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body is {declared} bytes, over the server's limit of {limit} bytes "
                           "(tvmopt serve --max-request-mb)")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is over the server's limit of {limit} bytes "
                               "(tvmopt serve --max-request-mb)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _json(obj: dict, status: int = 200) -> Response:
    import json

    return Response(json.dumps(obj), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return Response(error_body(message), status_code=status, media_type="application/json")

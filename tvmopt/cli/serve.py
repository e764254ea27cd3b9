"""`tvmopt serve ARTIFACT...`: the Open Inference Protocol (KServe v2 / Triton) over HTTP."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve artifacts over HTTP (Open Inference Protocol v2: KServe, Triton clients)",
        description="Serve artifacts over the Open Inference Protocol v2 (REST, with the binary tensor "
                    "extension): /v2/health/{live,ready}, /v2/models/NAME[/ready|/infer], /metrics (Prometheus). "
                    "Concurrent requests for a model are merged along the batch dim (dynamic batching). "
                    "SIGTERM drains: requests in flight finish, new ones get 503.",
    )
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help="artifact directory (model name from its manifest), NAME=DIR to rename it, or an .onnx "
                        "file (served with ONNX Runtime, for comparisons)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the port, each with the models loaded (default 1)")
    p.add_argument("--max-batch-size", type=int,
                   help="rows merged into one model run (default: the artifact's largest batch bucket; 1 = no "
                        "dynamic batching; models without a batch dim always run one request at a time)")
    p.add_argument("--max-queue-delay-ms", type=float, default=0.0,
                   help="how long a request may wait for others to fill its batch (default 0: batch what is "
                        "queued while the model is busy)")
    p.add_argument("--max-request-mb", type=float, default=64, help="largest request body (default 64 MB)")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="on SIGTERM, the longest to wait for requests in flight (default 30 s)")
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                   help="start serving without first running each model (and each batch size) a few times on "
                        "random inputs; by default the first requests do not pay the one-time costs")
    p.add_argument("--inline-under-ms", dest="inline_max_ms", type=float, default=2.0, metavar="MS",
                   help="a model whose full batch runs faster than this (timed at warm-up) runs its batches on "
                        "the event loop's thread, saving the hand-off to a runner thread and back (about 0.1 ms "
                        "here), while other requests wait at most that long; 0 = always a thread of its own "
                        "(default 2)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import require

    require("uvicorn", "serve")
    require("starlette", "serve")
    from ..serving.server import serve

    serve(args.artifacts, host=args.host, port=args.port, workers=args.workers, max_batch_size=args.max_batch_size,
          max_queue_delay_ms=args.max_queue_delay_ms, max_request_mb=args.max_request_mb, grace_s=args.grace_s,
          warm_up=args.warm_up, inline_max_ms=args.inline_max_ms)
    return 0

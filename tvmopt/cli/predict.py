"""`tvmopt predict ARTIFACT --input DATA --output OUT`: batch prediction, chunked and resumable."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="batch prediction: records from .npz/.npy/Parquet files -> chunked outputs (resumable)",
        description="Run every record of DATA through an artifact. DATA is an .npz (one array per input, records on "
                    "axis 0), an .npy (single-input models), a Parquet file (one column per input) or a directory "
                    "of them. Outputs go to OUT/part-NNNNNN.npz, one per chunk (outputs by name, _index = record "
                    "numbers, _errors); a killed job run again skips finished chunks.",
    )
    p.add_argument("artifact", help="artifact directory written by `tvmopt compile`")
    p.add_argument("--input", required=True, metavar="DATA", help=".npz/.npy/.parquet file or a directory of them")
    p.add_argument("--output", required=True, metavar="OUT", help="output directory (chunk files + job.json)")
    p.add_argument("--batch-size", type=int,
                   help="records per model run (default: the largest batch bucket; 32 for a dynamic batch dim; "
                        "1 for a fixed one)")
    p.add_argument("--chunk-size", type=int, default=4096, help="records per output file (default 4096)")
    p.add_argument("--on-error", choices=["skip", "fail"], default="fail",
                   help="a record that cannot be predicted: report it and go on (skip), or stop (fail, default)")
    p.add_argument("--overwrite", action="store_true", help="discard the outputs of another job in OUT")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray Data: a local Ray instance started for the job, or the cluster at ADDRESS "
                        "(needs tvmopt[ray])")
    p.add_argument("--ray-actors", type=int,
                   help="actors on Ray, each loading the artifact once (default: one per node)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..serving.batch_predict import predict

    result = predict(args.artifact, args.input, args.output, batch_size=args.batch_size, chunk_size=args.chunk_size,
                     on_error=args.on_error, progress=not args.no_progress, overwrite=args.overwrite, ray=args.ray,
                     ray_actors=args.ray_actors)
    rate = (result.records / result.seconds) if result.seconds else 0.0
    resumed = f"; {result.resumed_chunks} chunk(s) were already done" if result.resumed_chunks else ""
    print(f"predicted {result.ok}/{result.records} records into {result.output} ({result.chunks} chunk(s)) on "
          f"{result.where} in {result.seconds:.1f} s ({rate:.0f} records/s){resumed}")
    for error in result.errors[:20]:
        print(f"record {error.index}: {error.message}", file=sys.stderr)
    if len(result.errors) > 20:
        print(f"... and {len(result.errors) - 20} more failed records (each chunk's _errors lists them)",
              file=sys.stderr)
    return 1 if result.errors else 0

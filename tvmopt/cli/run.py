"""`tvmopt run ARTIFACT`: run an artifact here, under emulation or on an RPC device; report latency."""

from __future__ import annotations

import json

from .common import rpc_args, rpc_device, table


def register(sub) -> None:
    p = sub.add_parser("run", help="load an artifact, run it, report latency",
                       description="Run an artifact on this machine: random inputs of the right shape/dtype "
                                   "unless --inputs is given; prints latency median/p90 and output shapes.")
    p.add_argument("artifact", help="artifact directory written by `tvmopt compile`")
    p.add_argument("--inputs", help=".npz file with one array per input name")
    p.add_argument("--save-outputs", metavar="FILE.npz", help="write the outputs to an .npz file")
    p.add_argument("--repeat", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--cast-inputs", action="store_true",
                   help="convert --inputs arrays of another dtype (e.g. float64) to the model's; by default "
                        "they are refused")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    rpc_args(p, "run on a device registered with this TVM RPC tracker and report its latency")
    p.add_argument("--emulate", action="store_true",
                   help="run an aarch64 artifact here under QEMU (correctness only: no latency is reported)")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..errors import InputSpecError
    from ..runtime import run as run_artifact

    feeds = None
    if args.inputs:
        try:
            with np.load(args.inputs) as data:
                feeds = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise InputSpecError(f"{args.inputs}: not a readable .npz file ({err})") from err
    result = run_artifact(args.artifact, feeds, repeat=args.repeat, emulate=args.emulate, rpc=rpc_device(args),
                          cast_inputs=args.cast_inputs)
    artifact, latency = result.artifact, result.latency
    if args.save_outputs:
        np.savez(args.save_outputs, **{s.name: o for s, o in zip(artifact.outputs, result.outputs)})
    if args.json:
        print(json.dumps({
            "artifact": str(artifact.path), "where": result.where,
            "median_ms": latency.median_ms if latency else None, "p90_ms": latency.p90_ms if latency else None,
            "repeat": args.repeat if latency else 0,
            "outputs": [{"name": s.name, "shape": list(o.shape), "dtype": str(o.dtype)}
                        for s, o in zip(artifact.outputs, result.outputs)],
        }, indent=2))
        return 0
    source = args.inputs or "random inputs"
    timing = f": median {latency.median_ms:.4f} ms, p90 {latency.p90_ms:.4f} ms ({args.repeat} runs)" if latency else ""
    print(f"{artifact.path} ({artifact.target_name}) on {result.where}, {source}{timing}")
    table(("output", "shape", "dtype"),
          [(s.name, "x".join(map(str, o.shape)), o.dtype) for s, o in zip(artifact.outputs, result.outputs)])
    return 0

"""What the verb adapters share: argument groups, model import from arguments, table printing."""

from __future__ import annotations

import argparse
from typing import Sequence


def model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX file (.onnx) or torch.export program (.pt2)")
    parser.add_argument(
        "--input-shape", action="append", default=[], metavar="NAME:DIMS",
        help="fix an input's shape, e.g. input_ids:1x128 or input_ids:1,128 (once per input); needed to tune "
             "dynamic dims. Dims are separated by ',' or by an 'x' next to a number; a name keeps a dynamic dim "
             "symbolic (input_ids:1,max_len); two names need a comma (batch,seq)",
    )


def batch_sizes_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-sizes", metavar="N,N,...",
        help="one static copy of the model per batch size (e.g. 1,4,16), tuned/compiled into one artifact; "
             "the runtime splits a batch over the sizes that run it cheapest. Needs a dynamic batch dim at axis 0",
    )


def target_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t", "--target", default="host",
        help="registry name (see `tvmopt targets`) or path to a target .json (default: host)",
    )


def log_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-dir", default="tuning_logs", type=_log_root,
                        help="root of the tuning logs (default: tuning_logs); the logs shipped with "
                             "tvmopt for compatible targets are read too ($TVMOPT_SHIPPED_LOGS=DIR replaces "
                             "them, an empty DIR turns them off)")


def _log_root(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give the root of the tuning logs, e.g. tuning_logs")
    return text


def rpc_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", help=what)
    parser.add_argument("--rpc-key", metavar="KEY", help="device key the RPC servers registered with")


def rpc_device(args):
    """The RpcDevice named by --rpc-tracker/--rpc-key, or None."""
    from ..errors import RemoteError

    if not args.rpc_tracker:
        if args.rpc_key:
            raise RemoteError("--rpc-key needs --rpc-tracker HOST:PORT")
        return None
    from ..runtime.remote import RpcDevice

    return RpcDevice.parse(args.rpc_tracker, args.rpc_key)


def import_from_args(args):
    """The Model named by `model` and `--input-shape` arguments."""
    from ..frontends import import_model
    from ..specs import parse_shapes

    shapes = parse_shapes(args.input_shape)
    model = import_model(args.model, input_shapes=shapes or None)
    if getattr(args, "batch_sizes", None):
        from ..compiler.buckets import parse_batch_sizes, with_batch_buckets

        model = with_batch_buckets(model, parse_batch_sizes(args.batch_sizes))
    return model


def table_text(header: Sequence, rows: Sequence[Sequence]) -> str:
    """Left-aligned columns with a dashed rule under the header."""
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(header: Sequence, rows: Sequence[Sequence]) -> None:
    print(table_text(header, rows))

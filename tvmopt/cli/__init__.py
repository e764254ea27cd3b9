"""Command line: thin argparse adapters over the library API (same verbs, same objects).

Each verb group lives in its own module with a `register(subparsers)` that adds its parser
and sets `func`; this module only assembles them. Every TvmoptError becomes one line on stderr
and exit code 2; --verbose shows the traceback and TVM's own output.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from . import bench, compile, inspect, logs, quantize, run, targets, tune

VERBS = (targets, inspect, quantize, tune, compile, run, bench, logs)

EPILOG = """\
pipeline:  [tvmopt quantize MODEL -o SMALL.onnx]  ->  tvmopt inspect MODEL  ->  tvmopt tune MODEL -t host  ->  tvmopt compile MODEL -t host -o out/
           ->  tvmopt run out/
Tuning records go to tuning_logs/<target>/ and are reused by every later tune/compile for that target.
Try `tvmopt demo` for the whole path on a bundled example model."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvmopt",
        description="Tune, compile and deploy ONNX / PyTorch models with Apache TVM (Relax + MetaSchedule).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and TVM's own output")
    parser.add_argument("--version", action="store_true", help="print tvmopt and TVM versions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        verb.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__
        from ..machine import this_machine

        print(f"tvmopt {__version__} (apache-tvm {this_machine().tvm_version})")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        from ..native_output import show

        show(True)
    else:
        import warnings

        warnings.filterwarnings("ignore")
    from ..errors import TvmoptError

    func: Callable = args.func
    try:
        return int(func(args) or 0)
    except TvmoptError as err:
        if args.verbose:
            raise
        print(f"tvmopt: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tvmopt: interrupted (finished measurements are in the log)", file=sys.stderr)
        return 130

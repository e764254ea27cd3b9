"""Command line: thin argparse adapters over the library API (same verbs, same objects).

Each verb group lives in its own module with a `register(subparsers)` that adds its parser
and sets `func`; this module only assembles them. Every TvmoptError (and any file-system error
a stage did not name) becomes one line on stderr and exit code 2; --verbose shows the traceback
and TVM's own output. Ctrl-C exits 130; a closed stdout pipe (`| head`) exits quietly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from .. import ctrl_c
from . import bench, compile, inspect, logs, predict, quantize, run, serve, targets, tune

VERBS = (targets, inspect, quantize, tune, compile, run, serve, predict, bench, logs)

EPILOG = """\
pipeline:  [tvmopt quantize MODEL -o SMALL.onnx]  ->  tvmopt inspect MODEL  ->  tvmopt tune MODEL -t host
           ->  tvmopt compile MODEL -t host -o out/  ->  tvmopt run out/
           ->  tvmopt serve out/  |  tvmopt predict out/ --input data.npz --output preds/
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
    from ..errors import TvmoptError, path_error

    func: Callable = args.func
    ctrl_c.install()
    try:
        if getattr(args, "input_shape", None):
            from ..specs import parse_shapes

            parse_shapes(args.input_shape)  # a typo fails now, not after the verb has imported TVM
        code = int(func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here at the latest
        if code == 130:
            _exit_now(code)
        return code
    except TvmoptError as err:
        if ctrl_c.requested():  # a stage wrapped the RuntimeError a Ctrl-C became inside TVM (below)
            print("tvmopt: interrupted", file=sys.stderr)
            _exit_now(130)
        if args.verbose:
            raise
        print(f"tvmopt: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tvmopt: interrupted", file=sys.stderr)
        _exit_now(130)
    except BrokenPipeError:
        # `tvmopt logs show LOG | head`: the reader left; stop quietly, as `git log | head` does.
        _silence_stdout()
        return 141
    except OSError as err:  # an environment problem no stage turned into a TvmoptError
        if args.verbose:
            raise
        print(f"tvmopt: error: {path_error(err, 'access it')}", file=sys.stderr)
        return 2
    except Exception:
        if ctrl_c.requested():
            # A Ctrl-C inside a Python callback of TVM's C++ (a Python pass, MetaSchedule) comes out
            # of TVM as a bare RuntimeError; it still is the user's Ctrl-C.
            print("tvmopt: interrupted", file=sys.stderr)
            _exit_now(130)
        raise


def _exit_now(code: int) -> None:
    """After Ctrl-C: flush and leave without the interpreter's teardown, where TVM's and XGBoost's
    native destructors take seconds (every file tvmopt writes is already closed or fsync'd)."""
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

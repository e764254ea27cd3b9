"""Does timing two engines in one process change their times? Each alone vs interleaved.

`tvmopt bench` and `tvmopt demo` interleave tvmopt and ONNX Runtime in one process so that
machine noise hits both alike. For a model of tens of microseconds on few cores, the two thread
pools (each spin-waits between calls) can instead slow each other: this script times an artifact
and the ONNX file it was compiled from, each in a fresh process alone, then both interleaved
(optionally with an idle gap before each batch of calls), and prints the medians.

    .venv/bin/python benchmarks/interference.py ARTIFACT MODEL.onnx [--repeats 2] [--gap-ms 50] [--ort-no-spin] [--isolated]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROUNDS, CALLS = 15, 100
NO_SPIN_ENV = "TVMOPT_BENCH_ORT_NO_SPIN"


def child(artifact: str, onnx_path: str, engines: list[str], gap_s: float) -> None:
    import onnxruntime as ort

    import tvmopt
    from tvmopt.threads import default_threads

    predictor = tvmopt.load(artifact)
    feeds = predictor.random_inputs()
    calls = {}
    if "tvmopt" in engines:
        calls["tvmopt"] = lambda: predictor(**feeds)  # numpy in and out, as session.run
    if "onnxruntime" in engines:
        options = ort.SessionOptions()
        options.intra_op_num_threads = default_threads()
        if os.environ.get(NO_SPIN_ENV):  # --ort-no-spin: ORT's workers block between calls
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        calls["onnxruntime"] = lambda: session.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            time.sleep(gap_s)
            call()
            started = time.perf_counter()
            for _ in range(CALLS):
                call()
            times[name].append((time.perf_counter() - started) / CALLS * 1e6)
    print(" ".join(f"{name}={statistics.median(v):.1f}" for name, v in times.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact")
    parser.add_argument("onnx")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per configuration")
    parser.add_argument("--gap-ms", type=float, default=50, help="idle time before each batch, interleaved-with-gap rows")
    parser.add_argument("--ort-no-spin", action="store_true",
                        help="ONNX Runtime's intra-op workers block instead of spin-waiting between calls")
    parser.add_argument("--isolated", action="store_true",
                        help="also time both the way `tvmopt demo` does (measure/isolated.py), --repeats times")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ort_no_spin:
        os.environ[NO_SPIN_ENV] = "1"
    if args.child:
        gap, *engines = args.child
        child(args.artifact, args.onnx, engines, float(gap))
        return 0
    configs = [("tvmopt alone", 0, ["tvmopt"]), ("onnxruntime alone", 0, ["onnxruntime"]),
               ("interleaved", 0, ["tvmopt", "onnxruntime"]),
               (f"interleaved, {args.gap_ms:g} ms gap", args.gap_ms / 1e3, ["tvmopt", "onnxruntime"])]
    print(f"median us per call over {ROUNDS} rounds x {CALLS} calls, each line a fresh process")
    if args.isolated:  # what `tvmopt demo` does: one process per engine, rounds alternated
        from tvmopt.measure.isolated import ProcessContender, isolated_medians
        from tvmopt.runtime import load

        feeds = load(args.artifact).random_inputs()
        for _ in range(args.repeats):
            medians = isolated_medians({"tvmopt": ProcessContender("artifact", args.artifact),
                                        "onnxruntime": ProcessContender("onnxruntime", args.onnx)},
                                       feeds, ROUNDS, CALLS)
            print(f"{'isolated, alternated':28} " + " ".join(f"{n}={m * 1e3:.1f}" for n, m in medians.items()))
    for label, gap, engines in configs:
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, __file__, args.artifact, args.onnx, "--child", str(gap), *engines],
                                 capture_output=True, text=True, check=True)
            print(f"{label:28} {out.stdout.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

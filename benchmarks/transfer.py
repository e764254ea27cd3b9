"""Cost-model transfer: trials a held-out model needs with and without a warm-started cost model.

    .venv/bin/python benchmarks/transfer.py bert4 --target x86-avx2 --minutes 6 \
        --from LOG [--from LOG ...]

Two sessions of the same model, target, seed and wall-time budget, each into a fresh log: one
with MetaSchedule's fresh XGBoost model, one warm-started from the --from logs (which must not
hold the model itself). The reference is the best estimate either session reached; reported are
the trials each needed to come within 10% of it, the zero-trial latency from reused logs, and
both sessions' final measured latencies. Prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import tvmopt
from tvmopt.frontends import zoo
from tvmopt.measure.check import check_estimate
from tvmopt.tuning import make_budget


def trials_to_within(history: list, reference_ms: float, slack: float = 1.10) -> int | None:
    for wall_s, trials, estimated in history:
        if estimated is not None and estimated <= slack * reference_ms:
            return trials
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="zoo name (held out from the --from logs)")
    parser.add_argument("--target", default="x86-avx2")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--from", dest="sources", action="append", required=True, metavar="LOG")
    parser.add_argument("--keep", help="merge the no-transfer session's log into this log directory")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tvmopt-transfer-"))
    model = tvmopt.import_model(zoo.ZOO[args.model].export_onnx(tmp / f"{args.model}.onnx"))
    budget = make_budget("full", timeout_s=args.minutes * 60)

    runs = {}
    for label, transfer in (("fresh cost model", []), ("warm-started", args.sources)):
        root = tmp / label.split()[0]
        log = tvmopt.tune(model, args.target, budget=budget, log_root=root, seed=0, transfer=transfer)
        session = json.loads(log.session_path.read_text())
        check = check_estimate(model, args.target, root, log.estimated_ms)
        runs[label] = {"log": log, "session": session, "check": check}

    estimates = [r["log"].estimated_ms for r in runs.values() if r["log"].estimated_ms]
    reference = min(estimates) if estimates else None
    print(f"### {args.model} on {args.target}, {args.minutes} min per session, seed 0\n")
    print(f"Transfer logs: {', '.join(args.sources)}; reference (best estimate reached): {reference} ms\n")
    print("| session | trials | trials to within 10% | final estimate ms | final measured ms | records used |")
    print("|---|---|---|---|---|---|")
    for label, run in runs.items():
        log, session, check = run["log"], run["session"], run["check"]
        need = trials_to_within(session["history"], reference) if reference else None
        used = (session.get("transfer") or {}).get("records", 0)
        measured = f"{check.measured_ms:.3f}" if check else "-"
        print(f"| {label} | {log.trials_run} | {need if need is not None else 'not reached'} "
              f"| {log.estimated_ms} | {measured} | {used} |")
    if args.keep:
        from tvmopt.logs.maintain import merge

        for run in runs.values():
            merge([run["log"].log_dir], args.keep)


if __name__ == "__main__":
    main()

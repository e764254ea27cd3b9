"""Compare tuning logs of several targets or machines (`logs compare`): per-workload best latency,
GFLOP/s and ratio to the first log, per-model estimates, and optionally how one log's schedules
do on another's target (cross-apply), measured on this machine.

The report is the `--json` schema; `format_text` and `render_html` are its two renderings.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..threads import default_threads
from ..errors import TargetError, TvmoptError, last_line
from ..machine import Requirements
from ..targets import TargetSpec, get_target, host_machine
from .sessions import SessionRecord, latest, machines, read_sessions, task_names
from .store import LogDatabase, open_log
from .workload import estimate_flops, gflops, replay

__all__ = ["compare", "cross_apply", "log_target", "render_html", "format_text", "workload_table",
           "cross_apply_table", "cell_text"]


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 3)


def _gflops(flops: float, best_us: float | None) -> float | None:
    value = gflops(flops, best_us * 1e-6 if best_us else None)
    return round(value, 3) if value else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 4) if value and base else None


def _label(runs: list[SessionRecord], log_dir: Path) -> str:
    session = latest(runs)
    return session.target if session else log_dir.name


def compare(log_dirs: list, cross_apply: bool = False) -> dict:
    """Match workloads (by structural hash) across two or more logs and compare their best records.

    `cross_apply` also measures, here, the first log's best schedules on every other log's target.
    """
    if len(log_dirs) < 2:
        raise TvmoptError("logs compare needs two or more logs")
    paths = [Path(p) for p in log_dirs]
    databases = [open_log(p, best_only=True) for p in paths]  # bests and trial counts
    runs = [read_sessions(p)[0] for p in paths]
    mods = [db.workloads_by_hash() for db in databases]
    names = task_names([s for rs in runs for s in rs])
    labels = [_label(rs, p) for rs, p in zip(runs, paths)]
    labels = [f"{lab}#{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]

    logs = []
    for path, label, rs in zip(paths, labels, runs):
        session = latest(rs)
        logs.append({"log": str(path), "label": label, "target": session.target if session else path.name,
                     "target_dict": session.target_dict if session else None,
                     "machines": [m.to_json() for m in machines(rs)]})

    common = [h for h in mods[0] if all(h in m for m in mods[1:])]
    workloads = []
    for digest in common:
        flops = estimate_flops(mods[0][digest])
        per_log = []
        for db, m, entry in zip(databases, mods, logs):
            best = _us(db.best_seconds(m[digest]))
            per_log.append({"label": entry["label"], "best_us": best, "gflops": _gflops(flops, best),
                            "trials": db.trials_for(m[digest]), "valid_trials": db.valid_trials_for(m[digest])})
        base = per_log[0]["best_us"]
        for row in per_log:
            row["ratio"] = _ratio(row["best_us"], base)
        workloads.append({"name": names.get(digest, "?"), "workload_hash": digest, "flops": flops, "per_log": per_log})

    only_in = {}
    for path, m in zip(paths, mods):
        missing = [{"name": names.get(h, "?"), "workload_hash": h} for h in m if h not in common]
        if missing:
            only_in[str(path)] = missing

    report = {"logs": logs, "workloads": workloads, "only_in": only_in,
              "models": _models(runs, databases, mods, labels), "notes": _notes(runs)}
    if cross_apply:
        report["cross_apply"] = _apply_first_to_others(paths)
    return report


def _models(runs: list[list[SessionRecord]], databases: list[LogDatabase], mods: list, labels: list) -> list[dict]:
    """End-to-end estimate (sum of weight * best) of each model tuned in every log."""
    per_log = [{s.model: s for s in rs if s.tasks} for rs in runs]  # sessions are oldest first: latest wins
    out = []
    for model in [m for m in per_log[0] if all(m in p for p in per_log[1:])]:
        rows = []
        for label, by_model, db, m in zip(labels, per_log, databases, mods):
            total, missing = 0.0, []
            for task in by_model[model].tasks:
                mod = m.get(task.workload_hash)
                best = db.best_seconds(mod) if mod is not None else None
                if best is None:
                    missing.append(task.name)
                else:
                    total += best * 1e6 * task.weight
            rows.append({"label": label, "estimated_ms": None if missing else round(total / 1e3, 6),
                         "missing_tasks": missing})
        base = rows[0]["estimated_ms"]
        for row in rows:
            row["ratio"] = _ratio(row["estimated_ms"], base)
        out.append({"model": model, "per_log": rows})
    return out


def _notes(runs: list[list[SessionRecord]]) -> list[str]:
    keys = {tuple(sorted((m.cpu_model, m.cores) for m in machines(rs))) for rs in runs}
    if len(keys) > 1:
        return ["the logs were measured on different machines: latency ratios mix target and machine effects"]
    return []


# --------------------------------------------------------------------------- cross-apply


def _apply_first_to_others(paths: list[Path]) -> list[dict]:
    return [{"from": str(paths[0]), "to": str(p), "results": cross_apply(paths[0], p)} for p in paths[1:]]


def log_target(log_dir: str | os.PathLike) -> TargetSpec:
    """The target a log was tuned for: its registry entry if the name is known, else the session's
    target dict, required to run on a machine like the one that tuned it."""
    session = latest(read_sessions(log_dir)[0])
    if session is None:
        raise TargetError(f"{log_dir}: no session record names the log's target; pass the target explicitly")
    try:
        spec = get_target(session.target)
        if spec.target.get("mcpu") == session.target_dict.get("mcpu"):
            return spec
    except TvmoptError:
        pass
    machine = session.machine
    requires = Requirements(machine.arch, machine.cpu_flags) if machine.arch != "unknown" else Requirements()
    kind = session.target_dict.get("kind")
    return TargetSpec(name=session.target, description="from the log's session record",
                      device="cuda" if kind == "cuda" else "cpu", target=dict(session.target_dict),
                      requires=requires, source=str(log_dir), log_name=session.target)


def cross_apply(log_a: str | os.PathLike, log_b: str | os.PathLike,
                target_b: str | TargetSpec | None = None) -> list[dict]:
    """Apply log A's best schedule of each workload also in B to B's target, build and time it here,
    next to B's own best (re-timed here too, so both numbers share this machine's conditions)."""
    from ..tuning.measure import measure_scheduled

    spec = get_target(target_b) if target_b else log_target(log_b)
    problem = spec.requires.problem_on(host_machine())
    if problem:
        raise TargetError(f"cannot cross-apply onto {spec.name} ({log_b}): its code cannot run on this machine "
                          f"({problem}); run `logs compare --cross-apply` on a machine of that target")
    db_a, db_b = open_log(log_a, best_only=True), open_log(log_b, best_only=True)
    mods_a, mods_b = db_a.workloads_by_hash(), db_b.workloads_by_hash()
    names = task_names(read_sessions(log_a)[0] + read_sessions(log_b)[0])
    tvm_target = spec.tuning_target(default_threads())
    rows, scheduled = [], []
    for digest, mod_b in mods_b.items():
        if digest not in mods_a:
            continue
        best_a, best_b = db_a.best_record(mods_a[digest]), db_b.best_record(mod_b)
        row = {"name": names.get(digest, "?"), "workload_hash": digest,
               "a_logged_us": _us(db_a.best_seconds(mods_a[digest])), "b_logged_us": _us(db_b.best_seconds(mod_b)),
               "a_on_b_us": None, "b_here_us": None, "ratio": None, "error": None}
        if best_a is None or best_b is None:
            row["error"] = "no valid record in " + ("A" if best_a is None else "B")
        else:
            try:
                scheduled.append((row, "a_on_b_us", replay(best_a, mod_b)))
                scheduled.append((row, "b_here_us", replay(best_b, mod_b)))
            except Exception as err:  # noqa: BLE001 - a trace of another target may not replay
                row["error"] = f"A's trace does not apply: {last_line(err)}"
        rows.append(row)
    if scheduled:
        device = "cuda" if spec.device == "cuda" else "cpu"
        timed = measure_scheduled([mod for _, _, mod in scheduled], tvm_target, device)
        for (row, key, _), (seconds, error) in zip(scheduled, timed):
            row[key] = _us(seconds)
            if error and not row["error"]:
                row["error"] = f"{'A on B' if key == 'a_on_b_us' else 'B'}: {error}"
    for row in rows:
        row["ratio"] = _ratio(row["a_on_b_us"], row["b_here_us"])
        row["ratio_vs_logged"] = _ratio(row["a_on_b_us"], row["b_logged_us"])
    return rows


# --------------------------------------------------------------------------- text and HTML


def format_text(report: dict) -> str:
    """The report as the CLI prints it."""
    from ..cli.common import table_text

    lines = []
    for entry in report["logs"]:
        where = "; ".join(f"{m.get('cpu_model')} ({m.get('cores')} cores)" for m in entry["machines"]) or "unknown"
        lines.append(f"{entry['label']}: {entry['log']} (target {entry['target']}; measured on {where})")
    lines += [f"note: {note}" for note in report["notes"]]
    lines.append(f"\nworkloads in every log ({len(report['workloads'])}):")
    header, rows = workload_table(report)
    lines.append(table_text(header, [[cell_text(c) for c in row] for row in rows]))
    if report["models"]:
        labels = [e["label"] for e in report["logs"]]
        lines.append("\nmodels (estimated latency: sum of weight x best):")
        lines.append(table_text(
            ["model", *[f"{lab} ms" for lab in labels], *[f"{lab}/{labels[0]}" for lab in labels[1:]]],
            [[m["model"], *[cell_text(p["estimated_ms"]) for p in m["per_log"]],
              *[cell_text(p["ratio"]) for p in m["per_log"][1:]]] for m in report["models"]]))
    for log, missing in report["only_in"].items():
        lines.append(f"only in {log}: " + ", ".join(f"{w['name']} ({w['workload_hash']})" for w in missing))
    for block in report.get("cross_apply", []):
        lines.append(f"\ncross-apply: best schedules of A={block['from']} built for B={block['to']}'s target, "
                     "timed here:")
        header, rows = cross_apply_table(block["results"])
        lines.append(table_text(header, [[cell_text(c) for c in row] for row in rows]))
    return "\n".join(lines)


def _plot_png(report: dict, what: str) -> str:
    """One bar chart as a base64 PNG: per-workload ratio to the first log, or GFLOP/s per log."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = report["workloads"]
    labels = [entry["label"] for entry in report["logs"]]
    shown = labels[1:] if what == "ratio" else labels
    offset = 1 if what == "ratio" else 0
    width = 0.8 / max(1, len(shown))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4))
    for k, label in enumerate(shown):
        values = [(w["per_log"][k + offset]["ratio" if what == "ratio" else "gflops"] or 0.0) for w in rows]
        ax.bar([i + k * width for i in range(len(rows))], values, width, label=label)
    if what == "ratio":
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"best latency / {labels[0]}'s (lower is faster)")
    else:
        ax.set_ylabel("GFLOP/s of the best record")
    ax.set_xticks([i + width * (len(shown) - 1) / 2 for i in range(len(rows))])
    ax.set_xticklabels([w["name"] for w in rows], rotation=30, ha="right", fontsize=8)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _html_table(header: list, rows: list) -> str:
    from html import escape

    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell_text(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def cell_text(value) -> str:
    """A report value as a short table cell: 3 significant digits, '-' for missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def workload_table(report: dict) -> tuple[list, list]:
    """Header and rows of the per-workload table (shared by the CLI's text and the HTML report)."""
    labels = [entry["label"] for entry in report["logs"]]
    header = ["task", "workload", "MFLOP"] + [f"{lab} us" for lab in labels] + [f"{lab} GFLOP/s" for lab in labels] \
        + [f"{lab} trials" for lab in labels] + [f"{lab}/{labels[0]}" for lab in labels[1:]]
    rows = [[w["name"], w["workload_hash"], round(w["flops"] / 1e6, 3)] + [p["best_us"] for p in w["per_log"]]
            + [p["gflops"] for p in w["per_log"]] + [p["trials"] for p in w["per_log"]]
            + [p["ratio"] for p in w["per_log"][1:]] for w in report["workloads"]]
    return header, rows


def render_html(report: dict, path: str | os.PathLike) -> Path:
    """Write `report` as one self-contained HTML file (tables + plots embedded as base64 PNG)."""
    from html import escape

    labels = [entry["label"] for entry in report["logs"]]
    machines = ["; ".join(f"{m.get('cpu_model')} ({m.get('cores')} cores)" for m in e["machines"])
                for e in report["logs"]]
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>tvmopt logs compare</title><style>"
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}</style></head><body>",
             "<h1>Tuning logs compared</h1>",
             _html_table(["label", "log", "target", "machines"],
                         [[e["label"], e["log"], e["target"], where] for e, where in zip(report["logs"], machines)])]
    parts += [f"<p><b>note:</b> {escape(n)}</p>" for n in report.get("notes", [])]
    parts.append(f"<h2>Workloads in every log ({len(report['workloads'])})</h2>")
    parts.append(_html_table(*workload_table(report)))
    if report["workloads"]:
        parts.append(f"<h2>Best latency relative to {escape(labels[0])}</h2>")
        parts.append(f"<img alt='latency ratio' src='data:image/png;base64,{_plot_png(report, 'ratio')}'>")
        parts.append("<h2>GFLOP/s</h2>")
        parts.append(f"<img alt='GFLOP/s' src='data:image/png;base64,{_plot_png(report, 'gflops')}'>")
    if report["models"]:
        parts.append("<h2>Models (estimated end-to-end, sum of weight x best)</h2>")
        header = ["model"] + [f"{lab} ms" for lab in labels] + [f"{lab}/{labels[0]}" for lab in labels[1:]]
        parts.append(_html_table(header, [[m["model"]] + [p["estimated_ms"] for p in m["per_log"]]
                                  + [p["ratio"] for p in m["per_log"][1:]] for m in report["models"]]))
    for log, missing in report["only_in"].items():
        names = ", ".join(f"{w['name']} ({w['workload_hash']})" for w in missing)
        parts.append(f"<p>only in {escape(log)}: {escape(names)}</p>")
    for block in report.get("cross_apply", []):
        parts.append(f"<h2>Cross-apply: best schedules of {escape(block['from'])} "
                     f"on the target of {escape(block['to'])}</h2>")
        parts.append(_html_table(*cross_apply_table(block["results"])))
    parts.append("</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts))
    return out


def cross_apply_table(results: list[dict]) -> tuple[list, list]:
    """Header and rows of a cross-apply result (CLI and HTML)."""
    header = ["task", "workload", "A logged us", "B logged us", "A on B here us", "B here us", "A/B", "error"]
    rows = [[r["name"], r["workload_hash"], r["a_logged_us"], r["b_logged_us"], r["a_on_b_us"], r["b_here_us"],
             r["ratio"], r["error"] or ""] for r in results]
    return header, rows

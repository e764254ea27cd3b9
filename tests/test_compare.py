"""`tvmopt logs compare` (JSON, HTML, cross-apply) on two real logs of different targets."""

from __future__ import annotations

import json
import math

import pytest
import tvmopt
from conftest import run_cli
from tvmopt.logs.compare import cross_apply, log_target
from tvmopt.errors import TargetError


@pytest.fixture(scope="module")
def two_logs(cnn_onnx, tmp_path_factory):
    """The same model tuned (smoke) for the portable x86-avx2 target and for this host's CPU: two
    targets that both run on any x86 machine with AVX2 (an AVX-512 target would not, everywhere)."""
    model = tvmopt.import_model(cnn_onnx)
    root = tmp_path_factory.mktemp("compare")
    return [tvmopt.tune(model, target, budget="smoke", log_root=root / target, progress=False)
            for target in ("x86-avx2", "host")]


@pytest.fixture(scope="module")
def cli_report(two_logs, tmp_path_factory):
    """One CLI run does it all: --json, --html and --cross-apply (each TVM start costs seconds)."""
    html = tmp_path_factory.mktemp("report") / "report.html"
    proc = run_cli("logs", "compare", *(str(log.log_dir) for log in two_logs), "--json", "--html", str(html),
                   "--cross-apply")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), html


def test_compare_matches_every_workload_with_consistent_ratios(two_logs, cli_report):
    report, _ = cli_report
    log_a, log_b = two_logs
    assert [entry["target"] for entry in report["logs"]] == ["x86-avx2", tvmopt.get_target("host").log_name]
    assert report["logs"][0]["target_dict"]["mcpu"] == "haswell" and report["logs"][1]["machines"][0]["cores"] >= 1
    best = [{t.workload_hash: t.best_us for t in log.tasks} for log in two_logs]
    rows = {w["workload_hash"]: w for w in report["workloads"]}
    assert set(rows) == set(best[0]) == set(best[1]) and report["only_in"] == {}
    for digest, row in rows.items():
        a, b = row["per_log"]
        assert a["best_us"] == pytest.approx(best[0][digest], rel=1e-3)
        assert b["best_us"] == pytest.approx(best[1][digest], rel=1e-3)
        # best_us is rounded to 1 ns and the ratio to 4 decimals: a kernel of a few ns (a reshape)
        # has a ratio off by that much
        rounding = 5e-4 / a["best_us"] + 5e-4 / b["best_us"]
        assert a["ratio"] == 1.0
        assert b["ratio"] == pytest.approx(b["best_us"] / a["best_us"], rel=1e-3 + rounding, abs=5e-5)
        assert a["trials"] >= 1 and b["trials"] >= 1
        if row["flops"]:
            assert b["gflops"] == pytest.approx(row["flops"] / b["best_us"] / 1e3, rel=1e-2)
    (model,) = report["models"]
    assert model["model"] == "small_cnn"
    estimates = [p["estimated_ms"] for p in model["per_log"]]
    assert estimates == pytest.approx([log_a.estimated_ms, log_b.estimated_ms], rel=1e-3)
    assert model["per_log"][1]["ratio"] == pytest.approx(estimates[1] / estimates[0], rel=1e-3)


def test_compare_html_report_embeds_plots_and_table(two_logs, cli_report):
    _, html = cli_report
    text = html.read_text()
    assert text.count("<img") == 2 and "data:image/png;base64," in text and "<table>" in text
    assert all(task.name in text for task in two_logs[0].tasks) and "Cross-apply" in text


def test_cross_apply_measures_each_workload_here(two_logs, cli_report):
    report, _ = cli_report
    (block,) = report["cross_apply"]
    assert block["to"] == str(two_logs[1].log_dir)
    results = {r["workload_hash"]: r for r in block["results"]}
    assert set(results) == {t.workload_hash for t in two_logs[1].tasks}
    for row in results.values():
        assert row["error"] is None, row
        assert math.isfinite(row["a_on_b_us"]) and row["a_on_b_us"] > 0 and row["b_here_us"] > 0
        assert row["ratio"] == pytest.approx(row["a_on_b_us"] / row["b_here_us"], rel=1e-2) and row["ratio"] > 0


def test_cross_apply_reads_the_target_from_the_log_and_refuses_foreign_ones(two_logs):
    log_a, log_b = (log.log_dir for log in two_logs)
    host = tvmopt.get_target("host")
    assert log_target(log_b).name == host.log_name and log_target(log_b).target["mcpu"] == host.target["mcpu"]
    with pytest.raises(TargetError, match="cannot run on this machine"):
        cross_apply(log_a, log_b, target_b="arm-cortex-a72")
    proc = run_cli("logs", "compare", str(log_a))
    assert proc.returncode == 2 and "two or more" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

"""Longer real runs, skipped by default (`make test-slow` / `pytest -m slow`)."""

import numpy as np
import pytest


@pytest.mark.slow
def test_demo_quick_budget_tunes_every_kernel(tmp_path, monkeypatch):
    from tvmopt.measure.demo import run_demo

    monkeypatch.chdir(tmp_path)
    result = run_demo(budget="quick", timeout_min=10, log_root=str(tmp_path / "logs"), output=str(tmp_path / "art"), rounds=5)
    assert not result.tuning.untuned_tasks
    assert max(result["max_abs_diff"].values()) < 1e-4
    assert np.isfinite(list(result["medians_ms"].values())).all()

"""The tutorials run as written (smoke budget, temp dirs), from the repository root."""

import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.parametrize("script", ["01_quickstart.py", "02_pytorch.py", "03_serving.py"])
def test_tutorial_runs(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tutorials" / script), "--budget", "smoke",
         "--log-root", str(tmp_path / "logs"), "--output", str(tmp_path / "art")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max |tvmopt" in proc.stdout

"""Build hook: ship the target registry and the reference tuning logs inside the wheel.

The repository keeps one copy of each at its top level (targets/, tuning_logs/<target>/),
where users see them; a wheel carries them as tvmopt/_data/ (see tvmopt/resources.py).
Machine-specific logs (tuning_logs/host-*) are never shipped: only logs named after a
registered target.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithData(build_py):
    def run(self):
        super().run()
        data = Path(self.build_lib) / "tvmopt" / "_data"
        shutil.rmtree(data, ignore_errors=True)
        targets = sorted((ROOT / "targets").glob("*.json"))
        (data / "targets").mkdir(parents=True)
        for path in targets:
            shutil.copy2(path, data / "targets" / path.name)
        for name in (p.stem for p in targets):
            log = ROOT / "tuning_logs" / name
            if (log / "database_workload.json").is_file():
                shutil.copytree(log, data / "tuning_logs" / name, ignore=shutil.ignore_patterns(".lock", ".*.tmp"))


setup(cmdclass={"build_py": BuildWithData})

"""Where the data tvmopt ships lives: the target registry and the reference tuning logs.

A wheel carries them inside the package (`tvmopt/_data/`, copied there at build time by
setup.py); a source checkout keeps the one copy at the repository's top level, where users
see them (`targets/`, `tuning_logs/`).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED = PACKAGE_DIR / "_data"
_CHECKOUT = PACKAGE_DIR.parent


def _data_dir(name: str) -> Path:
    bundled = _BUNDLED / name
    return bundled if bundled.is_dir() else _CHECKOUT / name


def bundled_targets_dir() -> Path:
    """The shipped target registry (targets/*.json)."""
    return _data_dir("targets")


def shipped_logs_root() -> Path:
    """The root of the shipped reference tuning logs (one directory per target).

    $TVMOPT_SHIPPED_LOGS replaces it: another root, or an empty directory to tune and build as a
    user without tvmopt's logs would (a from-scratch benchmark; also read by child processes).
    """
    override = os.environ.get("TVMOPT_SHIPPED_LOGS")
    return Path(override) if override else _data_dir("tuning_logs")


def package_file(*parts: str) -> Path:
    """A file shipped inside the package (e.g. the aarch64 environment script)."""
    return PACKAGE_DIR.joinpath(*parts)

"""The code's own checks, as CI runs them: ruff (lint and format) on everything, mypy on
the public API (the files listed under [tool.mypy] in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(tool: str, *args: str) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]' brings it)")
    proc = subprocess.run(
        [sys.executable, "-m", tool, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{tool} {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def test_ruff_lint():
    _run("ruff", "check", ".")


def test_ruff_format():
    _run("ruff", "format", "--check", ".")


def test_mypy_on_the_public_api():
    _run("mypy")

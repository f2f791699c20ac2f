"""The package as a user installs and imports it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import fastvid
from fastvid.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_ships_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "fastvid").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    assert config["package-dir"]["fastvid._cuda_kernels"] == "cuda_kernels"
    assert list((ROOT / "cuda_kernels").glob("*.cu"))


def test_import_is_light():
    code = (
        "import sys, fastvid; fastvid.VideoReader; fastvid.read_clips; fastvid.prepare;"
        "import fastvid.bench.cli;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'cupy', 'torch', 'jax')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in (
        "VideoReader",
        "VideoMetadata",
        "read_clips",
        "VideoError",
        "prepare",
        "motion",
        "AugmentParams",
        "METHOD_OPTICAL_FLOW",
        "METHOD_FLOW_MASK",
        "METHOD_DIFF_MASK",
        "METHOD_ABS_DIFF",
        "to_backend",
    ):
        assert getattr(fastvid, name) is not None, name
    assert (
        fastvid.METHOD_OPTICAL_FLOW,
        fastvid.METHOD_FLOW_MASK,
        fastvid.METHOD_DIFF_MASK,
        fastvid.METHOD_ABS_DIFF,
    ) == (1, 2, 3, 4)
    assert issubclass(fastvid.VideoError, OSError)


def test_cli_lists_and_rejects_commands():
    out = subprocess.run(
        [sys.executable, "-m", "fastvid", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in SUBCOMMANDS:
        assert name in out
    bad = subprocess.run([sys.executable, "-m", "fastvid", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_every_subcommand_has_help():
    for name in SUBCOMMANDS:
        res = subprocess.run(
            [sys.executable, "-m", "fastvid", name, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, (name, res.stderr[-500:])
        assert "usage" in res.stdout.lower(), name

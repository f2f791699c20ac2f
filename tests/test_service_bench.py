"""``fastvid bench --suite service`` runs end to end and reports every row (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastvid.bench import cli
from fastvid.bench import service as bench_service


def test_sources_are_pluggable(monkeypatch, tmp_path: Path):
    monkeypatch.setitem(bench_service.SOURCES, "mine", lambda args: [tmp_path / "a.avi"])

    class Args:
        files: list = []
        service_source = "mine"
        quick = True

    clips, what = bench_service.clips_for(Args())
    assert clips == [tmp_path / "a.avi"] and "mine" in what
    Args.service_source = "nosuch"
    with pytest.raises(ValueError, match="nosuch"):
        bench_service.clips_for(Args())


@pytest.mark.slow
def test_suite_runs_on_given_files(dataset_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "report.json"
    argv = [
        str(dataset_dir),
        "--suite",
        "service",
        "--quick",
        "--service-copies",
        "2",
        "--service-workers",
        "1",
        "--service-size",
        "32",
        "--service-frames",
        "4",
        "--data-dir",
        str(tmp_path / "data"),
        "--json",
        str(out),
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "== service: 1 worker (separate process, loopback) vs local" in text
    report = json.loads(out.read_text())
    rows = [r for r in report["rows"] if r["kind"] == "result"]
    methods = {r["method"] for r in rows}
    assert {
        bench_service.LOCAL,
        "service, compression none (default)",
        "service, compression snappy",
        "service, 1 worker",
    } <= methods
    assert all(r["extra"]["examples_per_epoch"] == 36 for r in rows)  # 18 clips, 2 copies
    none = next(r for r in rows if r["method"] == "service, compression none (default)")
    assert none["extra"]["bytes_per_example"] == pytest.approx(4 * 32 * 32 * 3 + 8, rel=0.01)
    assert none["extra"]["worker_cpu_ms_per_example"] > 0
    assert not [r for r in report["rows"] if r["kind"] == "target"]  # --quick: no verdicts
    notes = " ".join(r["text"] for r in report["rows"] if r["kind"] == "note")
    assert "cannot add throughput here" in notes and "CPU-ms per example" in notes

"""``fastvid demo --quick`` runs end to end (dataset, training, loader comparison)."""

from __future__ import annotations

import pytest

pytest.importorskip("keras")


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    from fastvid import demo

    data = tmp_path / "demo data"
    assert demo.main(["--quick", "--data-dir", str(data), "--no-progress"]) == 0
    out = capsys.readouterr().out
    videos = sorted(data.glob("*/*.avi"))
    assert len(videos) == 3 * demo.QUICK.videos_per_class
    assert {v.parent.name for v in videos} == set(demo.DEMO_CLASSES)
    assert "epoch  1/1" in out and "val_acc" in out
    assert "fastvid VideoFrameGenerator" in out and "keras-video-generators" in out
    assert "batches/s" in out


def test_demo_bad_arguments(capsys):
    from fastvid import demo

    assert demo.main(["--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert demo.main(["--help"]) == 0


def test_demo_reuses_dataset(tmp_path):
    from fastvid import demo

    cfg = demo.QUICK
    first = demo.make_demo_dataset(tmp_path, cfg, progress=False)
    stamps = [p.stat().st_mtime_ns for p in first]
    again = demo.make_demo_dataset(tmp_path, cfg, progress=False)
    assert again == first and [p.stat().st_mtime_ns for p in again] == stamps

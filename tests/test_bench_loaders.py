"""The keras loader suite (``fastvid bench --suite keras``) runs and reports both loaders.

Structure and counts only: no timing is asserted.
"""

from __future__ import annotations

import argparse
import os

import pytest

from fastvid.bench import loaders

pytest.importorskip("keras")


def test_class_layout_links_files(dataset_dir, tmp_path):
    files = sorted(dataset_dir.glob("*/*.avi"))[:5]
    pattern = loaders.class_layout(files, tmp_path)
    assert pattern.endswith(os.path.join("{classname}", "*.avi"))
    linked = sorted(tmp_path.glob("keras_*/*/*.avi"))
    assert len(linked) == 5
    assert {p.parent.name for p in linked} == set(loaders._CLASSES)
    # the same bytes, and a real path inside the layout (what class discovery needs)
    for p in linked:
        src = files[int(p.name[:4])]
        assert p.read_bytes() == src.read_bytes()
        assert os.path.realpath(p) == str(p)
    # a second call reuses the folder
    assert loaders.class_layout(files, tmp_path) == pattern
    assert len(sorted(tmp_path.glob("keras_*/*/*.avi"))) == 5


@pytest.mark.slow
def test_run_reports_both_loaders(dataset_dir, tmp_path):
    parser = argparse.ArgumentParser()
    loaders.add_arguments(parser)
    args = parser.parse_args(
        ["--keras-frames", "4", "--keras-size", "32", "--keras-batch-size", "2", "--keras-no-fit"]
    )
    args.files = sorted(dataset_dir.glob("*/*.avi"))[:6]
    args.long, args.no_long = None, True
    args.data_dir, args.quick, args.repeats, args.warmup, args.progress = (
        tmp_path,
        True,
        1,
        0,
        False,
    )
    rows = loaders.run(args)
    results = [r for r in rows if r["kind"] == "result"]
    targets = [r for r in rows if r["kind"] == "target"]
    methods = {r["method"] for r in results}
    assert loaders.FASTVID in methods and loaders.KVG in methods
    assert f"{loaders.KVG}, no cache" in methods
    for r in results:
        assert r["skipped"] is None, r
        assert r["unit"] == "batch" and r["median_s"] > 0
        assert r["extra"]["batches"] == 3 and r["extra"]["clips_per_epoch"] == 6
    kvg_row = next(r for r in results if r["method"] == loaders.KVG)
    # keras-video-generators reads every frame up to its last pick: more than it returns
    assert kvg_row["frames_decoded"] > kvg_row["frames_returned"] == 2 * 4
    fastvid_row = next(r for r in results if r["method"] == loaders.FASTVID)
    assert fastvid_row["frames_decoded"] >= fastvid_row["frames_returned"] == 2 * 4
    cached = next(r for r in results if r["method"].startswith(f"{loaders.FASTVID}, frame cache"))
    assert cached["frames_decoded"] == 0  # the second epoch comes from the cache
    assert len(targets) == 2 and all(t["measured"] > 0 for t in targets)

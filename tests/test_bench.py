"""The benchmark harness: runs end to end, reports every method, counts sanely.

No timing is asserted anywhere: only structure, frame identity and counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fastvid.bench import cli, common, decode
from fastvid.synth import frame_indices, make_video

TINY_SHORT = common.ClipSpec(96, 64, (30, 41), codec="mpeg4", gop=12, ext=".avi")
TINY_LONG = common.ClipSpec(
    128, 96, 240, codec="libx264", gop=100, bframes=3, ext=".mp4", options=common.x264_options(100)
)


def _has_reader() -> bool:
    return decode.fastvid_available() is None


needs_reader = pytest.mark.skipif(not _has_reader(), reason="fastvid.reader not available yet")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-data")


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench-clip") / "bf.mp4"
    return common._encode(path, TINY_LONG.num_frames, TINY_LONG, (2, 1))


# --------------------------------------------------------------------------- common


def test_measure_repeats_and_value() -> None:
    calls = []
    t = common.measure(lambda: calls.append(1) or len(calls), repeats=3, warmup=2)
    assert len(t.times) == 3 and len(calls) == 5 and t.value == 5
    assert t.best <= t.median
    with pytest.raises(ValueError):
        common.measure(lambda: None, repeats=0)


def test_ratio_and_decoded_columns() -> None:
    rows = [
        common.Result(
            "s", "g", "opencv", 0.3, 0.3, 1, frames_returned=10, frames_decoded=40
        ).to_dict(),
        common.Result(
            "s",
            "g",
            "fastvid exact",
            0.1,
            0.1,
            1,
            frames_returned=10,
            frames_decoded=20,
            reference=True,
        ).to_dict(),
        common.Result(
            "s", "g", "seek", 0.2, 0.2, 1, frames_returned=10, frames_decoded=None
        ).to_dict(),
        common.Result("s", "g", "decord", skipped="not installed").to_dict(),
    ]
    derived = {r["method"]: r for r in common.add_derived([dict(r) for r in rows])}
    assert derived["opencv"]["ratio_to_fastvid"] == pytest.approx(3.0)
    assert derived["fastvid exact"]["ratio_to_fastvid"] == pytest.approx(1.0)
    assert derived["opencv"]["decoded_per_returned"] == pytest.approx(4.0)
    assert derived["seek"]["decoded_per_returned"] is None
    text = common.render_results(rows)
    assert "ratio to fastvid" in text and "decoded/returned" in text
    assert "3.00x" in text and "4.00" in text and "skipped: not installed" in text
    assert common.speedup(rows, "g", "opencv", "fastvid exact") == pytest.approx(3.0)
    assert common.speedup(rows, "g", "decord", "fastvid exact") is None


def test_targets() -> None:
    assert common.Target("s", "a", 2.0, 1.5).met is True
    assert common.Target("s", "a", 1.2, 1.5).met is False
    assert common.Target("s", "a", 1.1, 1.15, comparison="<=").met is True
    assert common.Target("s", "a", None, 1.5).met is None
    text = common.render_targets(
        [
            common.Target("s", "fast", 1.2, 1.5).to_dict(),
            common.Target("s", "slow", None, 1.5).to_dict(),
        ]
    )
    assert "NOT MET" in text and "not measured" in text


def test_machine_info_has_versions() -> None:
    m = common.machine_info()
    assert m["cores_logical"] and m["cpu"] and m["date"]
    assert m["versions"]["av"] and m["versions"]["numpy"] and m["versions"]["python"]
    assert "versions:" in common.render_machine(m)


def test_expand_inputs(tmp_path: Path) -> None:
    for name in ("a/x.avi", "a/y.mp4", "a/notes.txt", "b/z.mkv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = cli.expand_inputs([str(tmp_path / "a"), str(tmp_path / "*" / "*.mkv")])
    assert [p.name for p in found] == ["x.avi", "y.mp4", "z.mkv"]
    with pytest.raises(FileNotFoundError):
        cli.expand_inputs([str(tmp_path / "nothing*.avi")])


# --------------------------------------------------------------------------- decode methods


@pytest.mark.parametrize("workload", list(decode.WORKLOADS))
def test_baselines_return_the_requested_frames(bframe_clip: Path, workload: str) -> None:
    index = decode.demux_index(bframe_clip)
    assert index.num_frames == TINY_LONG.num_frames
    assert index.keyframes[:3] == (0, 100, 200)
    want = decode.workload_indices(workload, index.num_frames, np.random.default_rng(3))
    for fn in (decode.opencv_sequential, decode.pyav_decode_all, decode.opencv_seek):
        frames, _ = fn(bframe_clip, want)
        assert frames.shape == (len(want), 112, 112, 3)
        assert frame_indices(frames) == want, fn.__name__
    frames, _ = decode.decode_floor(bframe_clip, want, index, convert=True)
    assert frame_indices(frames) == want
    reached, threaded = decode.decode_floor(bframe_clip, want, index, threads=0)
    assert reached == want
    reached, single = decode.decode_floor(bframe_clip, want, index, threads=1)
    assert reached == want and single == threaded


def test_floor_decodes_no_more_than_decode_all(bframe_clip: Path) -> None:
    index = decode.demux_index(bframe_clip)
    for workload in decode.WORKLOADS:
        want = decode.workload_indices(workload, index.num_frames, np.random.default_rng(5))
        _, floor = decode.decode_floor(bframe_clip, want, index)
        _, everything = decode.pyav_decode_all(bframe_clip, want)
        assert len(set(want)) <= floor <= everything
    # B-frames that are not targets are skipped: fewer frames than keyframe-to-target walks
    want = [50, 150]
    _, floor = decode.decode_floor(bframe_clip, want, index)
    assert floor < (50 - 0 + 1) + (150 - 100 + 1)


@needs_reader
def test_floor_le_exact_le_everything(bframe_clip: Path, tmp_path: Path) -> None:
    index = decode.demux_index(bframe_clip)
    fv = decode.FastvidMethods(tmp_path)
    for workload in decode.WORKLOADS:
        want = decode.workload_indices(workload, index.num_frames, np.random.default_rng(7))
        _, floor = decode.decode_floor(bframe_clip, want, index)
        frames, exact = fv.exact(bframe_clip, want)
        _, everything = decode.pyav_decode_all(bframe_clip, want)
        assert frame_indices(frames) == want
        assert floor <= exact <= everything, workload


# --------------------------------------------------------------------------- CLI


def _tiny_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QUICK_SHORT_SPEC", "SHORT_SPEC"):
        monkeypatch.setattr(common, name, TINY_SHORT)
    for name in ("QUICK_LONG_SPEC", "LONG_SPEC"):
        monkeypatch.setattr(common, name, TINY_LONG)


def _expected_methods(long: bool) -> set[str]:
    """The method names of one table section, as installed peers make them."""
    expected = set(decode.METHODS) - set(decode.TORCHCODEC)
    if decode.torchcodec_available() is None:
        expected |= {f"torchcodec {label}" for label, _ in decode.TORCHCODEC_SETTINGS}
        expected |= {"torchcodec approximate", "torchcodec keyframes", "torchcodec thread pool"}
    else:
        expected.add("torchcodec")  # one skipped row for the family
    if long:
        expected -= set(decode.SET_METHODS)  # one file: nothing to pool
    return expected


@pytest.mark.slow
def test_cli_end_to_end_quick(
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _tiny_specs(monkeypatch)
    out = tmp_path / "r.json"
    txt = tmp_path / "r.txt"
    argv = [
        "--suite",
        "decode",
        "--quick",
        "--clips",
        "3",
        "--data-dir",
        str(tiny_data),
        "--json",
        str(out),
        "--text",
        str(txt),
        "--no-progress",
        "--synthetic",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert txt.read_text().strip() == printed.strip()
    assert report["machine"]["versions"]["av"]
    results = [r for r in report["rows"] if r["kind"] == "result"]
    groups = {r["group"] for r in results}
    assert len(groups) == 2 * len(decode.WORKLOADS)  # short clips and long clip
    assert report["footage"] == "synthetic (--synthetic)"
    for g in groups:
        methods = {r["method"] for r in results if r["group"] == g}
        assert methods == _expected_methods(g.startswith("long clip")), g
        for r in results:
            if r["group"] == g and not r["skipped"]:
                assert r["median_s"] > 0 and r["frames_returned"] > 0
                assert "WRONG" not in r["note"], (g, r["method"], r["note"])
    timed = {r["method"] for r in results if not r["skipped"]}
    assert {"opencv sequential", "opencv seek", "pyav decode-all", "decode floor"} <= timed
    if _has_reader():
        assert {"fastvid exact", "fastvid keyframe", "fastvid read_clips"} <= timed
        assert all(r["ratio_to_fastvid"] is not None for r in results if not r["skipped"])
    # a smoke run: no verdicts, in the text or the JSON
    assert not [r for r in report["rows"] if r["kind"] == "target"]
    assert "== targets ==" not in printed and common.SMOKE_LINE in printed
    assert "ratio to fastvid" in printed and "decoded/returned" in printed
    assert "load average (1, 5, 15 min): start" in printed
    assert "footage: synthetic (--synthetic)" in printed
    # counts: floor <= fastvid exact <= decode-everything on every group
    for g in groups:
        by = {r["method"]: r for r in results if r["group"] == g and not r["skipped"]}
        floor, everything = by["decode floor"], by["pyav decode-all"]
        assert floor["frames_decoded"] <= everything["frames_decoded"]
        if "fastvid exact" in by:
            assert floor["frames_decoded"] <= by["fastvid exact"]["frames_decoded"]
            assert by["fastvid exact"]["frames_decoded"] <= everything["frames_decoded"]

    # the generated dataset is cached: a second run encodes nothing
    files = sorted(p for p in tiny_data.rglob("*") if p.is_file())
    mtimes = [p.stat().st_mtime_ns for p in files]
    argv2 = [
        "--suite",
        "decode",
        "--quick",
        "--clips",
        "3",
        "--data-dir",
        str(tiny_data),
        "--decode-methods",
        "floor",
        "--decode-workloads",
        "uniform16",
        "--no-progress",
        "--synthetic",
    ]
    assert cli.main(argv2) == 0
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    assert sorted(p for p in tiny_data.rglob("*") if p.is_file()) == files


@pytest.mark.slow
def test_full_run_reports_the_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _tiny_specs(monkeypatch)
    out = tmp_path / "r.json"
    argv = [
        "--suite",
        "decode",
        "--clips",
        "3",
        "--data-dir",
        str(tmp_path),
        "--synthetic",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--decode-workloads",
        "uniform16",
        "--decode-methods",
        "exact,keyframe,read_clips,opencv-seq,opencv-seek,decord,torchcodec,torchcodec-pool,floor",
        "--json",
        str(out),
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "== targets ==" in printed and common.SMOKE_LINE not in printed
    targets = {t["name"]: t for t in json.loads(out.read_text())["rows"] if t["kind"] == "target"}
    assert len(targets) == 8
    cores = common.usable_cores()
    floor_target = targets[f"short clips: read_clips / (decode floor / {cores} cores)"]
    assert floor_target["comparison"] == "<=" and floor_target["required"] == 1.15
    assert targets["long clip: keyframe vs exact (x faster)"]["required"] == 15.0
    peers = {
        "long clip: exact vs decord (x faster)": decode.decord_available(),
        "long clip: exact vs torchcodec's best setting (x faster)": decode.torchcodec_available(),
        "short clips: read_clips vs torchcodec thread pool (x faster)": (
            decode.torchcodec_available()
        ),
    }
    for name, missing in peers.items():
        t = targets[name]
        if missing:
            assert t["met"] is None and t["unavailable"] == "peer not installed", t
        else:
            assert t["measured"] > 0, t
    if decode.fastvid_available() is None:
        assert targets["long clip: exact vs OpenCV seek (x faster)"]["measured"] > 0


def test_cli_given_files_and_missing_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_video(tmp_path / "v" / "a.avi", 40, width=96, height=64, codec="mpeg4")
    monkeypatch.setitem(cli.SUITES, "nosuch", "fastvid.bench.nosuch_suite")
    out = tmp_path / "r.json"
    argv = [
        str(clip.parent),
        "--suite",
        "decode,nosuch",
        "--quick",
        "--json",
        str(out),
        "--decode-methods",
        "opencv-seq,pyav,floor",
        "--decode-workloads",
        "uniform16",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "skipping suite nosuch" in captured.err
    report = json.loads(out.read_text())
    results = [r for r in report["rows"] if r["kind"] == "result" and r["suite"] == "decode"]
    assert {r["method"] for r in results} == {
        "opencv sequential",
        "pyav decode-all",
        "decode floor",
    }
    assert all(r["group"].startswith("given files") for r in results)
    assert not any(r["group"].startswith("long") for r in results)


def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([str(tmp_path / "missing*.avi"), "--suite", "decode"]) == 2
    assert "no video files match" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--suite", "nonsense"])


def test_bench_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fastvid.bench.cli, fastvid.bench.common, fastvid.bench.decode;"
        "bad = [m for m in ('tensorflow', 'cupy') if m in sys.modules];"
        "sys.exit(1 if bad else 0)"
    )
    env = dict(os.environ)
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0

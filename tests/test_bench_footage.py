"""The benchmark's dataset from real footage: cut, cached, or synthetic when absent.

A scratch folder of generated files stands in for ``../shared/videos`` (fast);
one slow test cuts from the real folder when it is there. No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from fastvid import VideoReader
from fastvid.bench import cli, common, decode, footage
from fastvid.synth import frame_indices, make_video

TINY_SHORT = common.ClipSpec(96, 64, (30, 41), codec="mpeg4", gop=12, ext=".avi")
TINY_LONG = common.ClipSpec(
    128, 72, 250, codec="libx264", gop=50, bframes=3, ext=".mp4", options=common.x264_options(50)
)


@pytest.fixture(scope="module")
def scratch_footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 'camera' files of different sizes and codecs, and a damaged-list name."""
    folder = tmp_path_factory.mktemp("footage")
    make_video(folder / "a.avi", 90, width=160, height=120, codec="mpeg4", gop=30)
    make_video(folder / "b.mp4", 70, width=200, height=100, codec="libx264", gop=25, bframes=2)
    make_video(folder / "c.mkv", 45, width=96, height=96, codec="libx264", gop=45)
    make_video(folder / "tree.avi", 60, width=64, height=48, codec="mpeg4")  # excluded
    (folder / "notes.txt").write_text("not a video")
    return folder


def _args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    base = {
        "files": [],
        "long": None,
        "no_long": False,
        "data_dir": tmp_path,
        "quick": True,
        "clips": None,
        "footage": None,
        "synthetic": False,
    }
    base.update(kw)
    return argparse.Namespace(**base)


def _props(path: Path) -> tuple[int, int, str, int, float, tuple[int, ...]]:
    with VideoReader(path) as r:
        m = r.metadata
        return m.width, m.height, m.codec, m.num_frames, m.duration, m.keyframe_indices


# --------------------------------------------------------------------------- choice


def test_sources_prefer_the_named_files_and_skip_damaged_ones(
    scratch_footage: Path, tmp_path: Path
) -> None:
    assert [p.name for p in footage.sources(scratch_footage, ("b.mp4", "zz.avi"))] == ["b.mp4"]
    # none of the preferred names: every video file, never the damaged ones
    assert [p.name for p in footage.sources(scratch_footage, ("zz.avi",))] == [
        "a.avi",
        "b.mp4",
        "c.mkv",
    ]
    assert footage.sources(tmp_path, footage.SHORT_SOURCES) == []


def test_choice_explicit_env_default_and_synthetic(
    scratch_footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(footage.ENV, raising=False)
    monkeypatch.setattr(footage, "default_dir", lambda: tmp_path / "nowhere")
    c = footage.choose()
    assert c.folder is None and c.text == "synthetic (../shared/videos not found)"
    c = footage.choose(scratch_footage)
    assert c.folder == scratch_footage and c.text.startswith(f"real, cut from {scratch_footage}")
    assert "a.avi" in c.text and "tree.avi" not in c.text
    monkeypatch.setenv(footage.ENV, str(scratch_footage))
    assert footage.choose().folder == scratch_footage
    monkeypatch.setenv(footage.ENV, str(tmp_path / "missing"))
    c = footage.choose()
    assert c.folder is None and "missing not found" in c.text
    assert footage.choose(scratch_footage, synthetic=True).folder is None


def test_plan_spreads_clips_over_sources() -> None:
    srcs = [Path("long.avi"), Path("mid.avi"), Path("short.avi"), Path("tiny.avi")]
    cuts = footage.plan_short(srcs, [800, 400, 200, 20], 18, common.SHORT_SPEC)
    assert len(cuts) == 18
    by = {s: [c for c in cuts if c.source == s] for s in srcs}
    assert len(by[srcs[0]]) > len(by[srcs[1]]) > len(by[srcs[2]]) >= 1
    assert not by[srcs[3]]  # shorter than any clip
    for c in cuts:
        assert 100 <= c.frames <= 150 and 0 <= c.start
        assert c.start + c.frames <= {srcs[0]: 800, srcs[1]: 400, srcs[2]: 200}[c.source]
    starts = [c.start for c in by[srcs[0]]]
    assert starts == sorted(set(starts)) and starts[0] == 0  # distinct offsets
    assert [c.source for c in cuts[:3]] == srcs[:3]  # interleaved
    with pytest.raises(footage.FootageError):
        footage.plan_short(srcs[3:], [20], 3, common.SHORT_SPEC)


# --------------------------------------------------------------------------- cutting


def test_short_clips_cut_and_cached(
    scratch_footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = footage.cut_short_clips(scratch_footage, tmp_path, 5, TINY_SHORT)
    assert len(clips) == 5 and len(set(clips)) == 5
    assert {p.name.split("_")[2] for p in clips} == {"a", "b", "c"}
    for p in clips:
        w, h, codec, n, duration, keys = _props(p)
        assert (w, h, codec, p.suffix) == (96, 64, "mpeg4", ".avi")
        assert 30 <= n <= 40 and duration == pytest.approx(n / 25, abs=0.01)
        assert keys == tuple(range(0, n, 12))  # GOP 12
    manifest = json.loads((clips[0].parent / "manifest.json").read_text())
    assert [c["file"] for c in manifest["cuts"]] == [p.name for p in clips]
    # clips of one source start at different offsets: they differ
    a = [c for c in manifest["cuts"] if c["source"] == "a.avi"]
    assert len({c["start"] for c in a}) == len(a) >= 2

    mtimes = [p.stat().st_mtime_ns for p in clips]

    def no_decoding(*_: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(footage, "_frames", no_decoding)
    assert footage.cut_short_clips(scratch_footage, tmp_path, 5, TINY_SHORT) == clips
    assert [p.stat().st_mtime_ns for p in clips] == mtimes


def test_long_clip_concatenates_and_loops(tmp_path: Path) -> None:
    # 16:9 sources, so that the pictures (and the index each carries) are only scaled
    src = tmp_path / "src"
    make_video(src / "a.avi", 90, width=160, height=90, codec="mpeg4", gop=30)
    make_video(src / "b.mp4", 70, width=224, height=126, codec="libx264", gop=25, bframes=2)
    path = footage.cut_long_clip(src, tmp_path, TINY_LONG)  # 160 source frames: loops
    w, h, codec, n, duration, keys = _props(path)
    assert (w, h, codec, path.suffix) == (128, 72, "h264", ".mp4")
    assert n == 250 and duration == pytest.approx(10.0, abs=0.01)
    assert keys == (0, 50, 100, 150, 200)
    with VideoReader(path) as r:  # each synthetic source restarts its frame count
        got = frame_indices(r.get_frames([0, 89, 90, 159, 160, 249]))
    assert got == [0, 89, 0, 69, 0, 89]
    mtime = path.stat().st_mtime_ns
    assert footage.cut_long_clip(src, tmp_path, TINY_LONG) == path
    assert path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".partial-*"))


def test_cache_key_follows_the_sources(scratch_footage: Path, tmp_path: Path) -> None:
    srcs = footage.sources(scratch_footage, ())
    key = footage.cache_key(srcs, TINY_SHORT)
    assert footage.cache_key(srcs, TINY_SHORT) == key
    assert footage.cache_key(srcs, TINY_LONG) != key
    copy = tmp_path / "a.avi"
    copy.write_bytes(srcs[0].read_bytes())
    assert footage.cache_key([copy, *srcs[1:]], TINY_SHORT) != key  # another mtime


# --------------------------------------------------------------------------- through common


def test_common_uses_footage_or_falls_back(
    scratch_footage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "QUICK_SHORT_SPEC", TINY_SHORT)
    monkeypatch.setattr(common, "QUICK_LONG_SPEC", TINY_LONG)
    monkeypatch.delenv(footage.ENV, raising=False)
    args = _args(tmp_path, footage=scratch_footage, clips=3)
    short = footage.short_clips(args)
    assert len(short) == 3 and all(p.name.startswith("clip_") for p in short)
    assert short[0].parent.name.startswith("real_short_")
    assert footage.long_clip(args).name.startswith("real_long_")
    assert footage.footage_status(args).startswith("real, cut from")

    # no footage folder: the synthetic clips, and the header says why
    monkeypatch.setattr(footage, "default_dir", lambda: tmp_path / "no-such-dir")
    args = _args(tmp_path / "synth", clips=2)
    short = footage.short_clips(args)
    assert len(short) == 2 and short[0].parent.name.startswith("short_")
    with VideoReader(short[0]) as r:
        assert frame_indices(r.get_frames([3])) == [3]  # synthetic pictures
    assert footage.footage_status(args) == "synthetic (../shared/videos not found)"

    # a folder without usable sources: synthetic, saying so
    empty = tmp_path / "empty"
    empty.mkdir()
    args = _args(tmp_path / "synth", clips=2, footage=empty)
    assert footage.short_clips(args)[0].parent.name.startswith("short_")
    assert footage.footage_status(args).startswith("synthetic (cutting real footage failed")


# --------------------------------------------------------------------------- the report


def test_busy_warning_and_load_lines() -> None:
    machine = {
        "cores_usable": 2,
        "load_start": [1.5, 1.0, 1.0],
        "loadavg": "1.50, 1.00, 1.00",
        "load_end": [0.2, 0.5, 0.9],
    }
    warning = common.busy_warning(machine)
    assert warning and warning.startswith("WARNING") and "1.50" in warning
    text = common.render_machine(machine)
    assert "start 1.50, 1.00, 1.00; end 0.20, 0.50, 0.90" in text and "WARNING" in text
    machine["load_start"] = [0.9, 0.0, 0.0]
    assert common.busy_warning(machine) is None
    assert "WARNING" not in common.render_machine(machine)


def test_target_without_peer_says_so() -> None:
    t = decode._target(
        "long: exact vs decord", None, 2.0, "", peer_missing="peer not installed (decord / decord2)"
    )
    assert t["met"] is None
    assert common.render_targets([t]).splitlines()[3].startswith("peer not installed")


def test_quick_run_has_no_verdicts_and_states_load_and_footage(
    scratch_footage: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(common, "QUICK_SHORT_SPEC", TINY_SHORT)
    monkeypatch.setattr(common, "QUICK_LONG_SPEC", TINY_LONG)
    out = tmp_path / "r.json"
    argv = [
        "--suite",
        "decode",
        "--quick",
        "--clips",
        "3",
        "--data-dir",
        str(tmp_path / "d"),
        "--footage",
        str(scratch_footage),
        "--decode-methods",
        "exact,keyframe,pyav,floor",
        "--decode-workloads",
        "uniform16",
        "--json",
        str(out),
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert common.SMOKE_LINE in printed
    assert "== targets ==" not in printed and "NOT MET" not in printed
    assert "load average (1, 5, 15 min): start " in printed and "; end " in printed
    assert f"footage: real, cut from {scratch_footage}" in printed
    assert "cut from real footage" in printed  # the decode suite's dataset note
    report = json.loads(out.read_text())
    assert not [r for r in report["rows"] if r["kind"] == "target"]
    assert report["footage"].startswith("real") and report["machine"]["load_end"]
    results = [r for r in report["rows"] if r["kind"] == "result"]
    assert results and all(not r["skipped"] for r in results)
    assert not any("WRONG" in r["note"] for r in results)
    assert cli.main(argv[:-1] + ["--footage", str(tmp_path / "nope")]) == 2


def test_real_footage_check_catches_wrong_frames(scratch_footage: Path) -> None:
    path = scratch_footage / "a.avi"
    want = [5, 30, 61]
    refs = [decode.reference_frames(path, {k for t in want for k in (t - 1, t, t + 1)})]
    good, _ = decode.pyav_decode_all(path, want)
    assert decode._check_real([(good, None)], [want], refs) == ""
    shifted, _ = decode.pyav_decode_all(path, [t + 1 for t in want])
    assert decode._check_real([(shifted, None)], [want], refs).startswith("WRONG FRAMES 3/3")


# --------------------------------------------------------------------------- torchcodec

needs_torchcodec = pytest.mark.skipif(
    decode.torchcodec_available() is not None, reason="torchcodec not importable"
)


@needs_torchcodec
def test_torchcodec_methods_return_the_requested_frames(tmp_path: Path) -> None:
    clip = make_video(
        tmp_path / "t.mp4", 120, width=128, height=96, codec="libx264", gop=40, bframes=2
    )
    ix = decode.demux_index(clip)
    want = [3, 50, 119, 7]
    for threads in (1, 0):
        frames, _ = decode.torchcodec_read(clip, want, threads=threads)
        assert frames.shape == (4, 112, 112, 3) and frames.dtype == np.uint8
        assert frame_indices(frames) == want
    frames, _ = decode.torchcodec_read(clip, want, seek_mode="approximate")
    assert frame_indices(frames) == want
    pool = decode.TorchcodecPool(2)
    try:
        out = pool([(clip, want), (clip, [0, 1])])
    finally:
        pool.close()
    assert [frame_indices(f) for f, _ in out] == [want, [0, 1]]
    s = decode._Set("x", [clip], [ix], "call", synthetic=True)
    keys = decode._expected("torchcodec keyframes", [(clip, want)], s)
    assert keys == [[0, 40, 80, 0]]
    with decode.torch_threads(1):
        import torch

        assert torch.get_num_threads() == 1


# --------------------------------------------------------------------------- the real folder


@pytest.mark.slow
def test_cut_from_the_real_videos(shared_videos: Path, tmp_path: Path) -> None:
    clips = footage.cut_short_clips(shared_videos, tmp_path, 6, common.QUICK_SHORT_SPEC)
    assert len(clips) == 6
    assert not {"Megamind_bugy", "tree"} & {p.name.split("_")[2] for p in clips}
    for p in clips:
        w, h, codec, n, duration, keys = _props(p)
        assert (w, h, codec) == (320, 240, "mpeg4") and 60 <= n <= 80
        assert keys == tuple(range(0, n, 12)) and duration == pytest.approx(n / 25, abs=0.01)
    spec = common.ClipSpec(
        320,
        180,
        300,
        codec="libx264",
        gop=250,
        bframes=3,
        ext=".mp4",
        options=common.x264_options(250),
    )
    long = footage.cut_long_clip(shared_videos, tmp_path, spec)
    w, h, codec, n, duration, keys = _props(long)
    assert (w, h, codec, n, keys) == (320, 180, "h264", 300, (0, 250))
    # real pictures, not synthetic ones: neighbouring frames differ, yet only a little
    with VideoReader(long) as r:
        a, b = r.get_frames([100, 101]).astype(np.int16)
    assert 0 < np.abs(a - b).mean() < 40

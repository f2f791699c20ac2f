"""``fastvid info``: streams, exact frame count, keyframes, and the stream the decoder picks."""

from __future__ import annotations

import json

import pytest

from fastvid.info import main
from fastvid.synth import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("info")
    return make_video(root / "clip.mkv", 50, gop=10, bframes=2, audio_first=True)


def test_text_output(clip, capsys):
    assert main([str(clip)]) == 0
    out = capsys.readouterr().out
    assert "0: audio" in out
    assert "* 1: video" in out  # the stream the decoder uses is marked
    assert "decoder uses stream 1" in out
    assert "frames     50 " in out
    assert "keyframes  5, mean GOP 10.0: [0, 10, 20, 30, 40]" in out
    assert "64x48 yuv420p (h264)" in out


def test_json_output_and_keyframe_limit(clip, capsys):
    assert main(["--json", str(clip)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["decoder"]["stream"] == 1
    assert info["decoder"]["num_frames"] == 50
    assert info["decoder"]["keyframe_indices"] == [0, 10, 20, 30, 40]
    assert info["decoder"]["fps"] == pytest.approx(25.0)
    assert [s["type"] for s in info["streams"]] == ["audio", "video"]
    assert main(["--keyframes", "2", str(clip)]) == 0
    assert "[0, 10, ... (3 more)]" in capsys.readouterr().out


def test_bad_file_sets_exit_code_and_names_it(clip, tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    assert main([str(missing), str(clip)]) == 1
    captured = capsys.readouterr()
    assert str(missing) in captured.err and "not found" in captured.err
    assert "decoder uses stream 1" in captured.out  # the good file is still described


def test_real_file_streams(shared_videos, capsys):
    path = shared_videos / "nasa_13013.mp4"
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "* 3: video" in out and "480x270" in out
    assert "decoder uses stream 3 (FFmpeg's best video stream)" in out
    assert main(["--json", "--stream", "0", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["decoder"]["stream"] == 0
    assert (info["decoder"]["width"], info["decoder"]["height"]) == (320, 180)


def test_through_the_fastvid_command(clip, capsys):
    from fastvid.cli import main as fastvid_main

    assert fastvid_main(["info", str(clip)]) == 0
    assert "decoder uses stream 1" in capsys.readouterr().out

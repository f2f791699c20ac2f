"""Errors people and programs can act on: one class per reason, and bugs never disguised.

Also the command line's small promises: no traceback for a closed pipe, messages
that say what is wrong, and no TensorFlow start-up noise for commands that do
not need it.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastvid
from fastvid import (
    CorruptVideoError,
    DeviceUnavailableError,
    FastvidError,
    NotAMediaFileError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoError,
    VideoNotFoundError,
    VideoReader,
    VideoTooShortError,
)
from fastvid._convert import Converter
from fastvid.reader import read_clips
from fastvid.synth import make_video

REPO = Path(__file__).resolve().parents[1]


def unknown_codec_copy(src: Path, dst: Path) -> Path:
    """An AVI whose fourcc no FFmpeg build knows (as a file from an exotic camera)."""
    data = bytearray(src.read_bytes())
    for tag in (b"FMP4", b"XVID", b"DIVX", b"mp4v"):
        at = data.find(tag)
        while 0 <= at < 4096:
            data[at : at + 4] = b"ZQZQ"
            at = data.find(tag, at + 4)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("errors") / "clip.avi", 12, codec="mpeg4")


def test_hierarchy_and_builtins():
    assert issubclass(VideoError, FastvidError) and issubclass(VideoError, OSError)
    assert issubclass(VideoNotFoundError, FileNotFoundError)
    assert issubclass(DeviceUnavailableError, FastvidError)
    assert issubclass(DeviceUnavailableError, RuntimeError)
    for cls in (
        NotAMediaFileError,
        NoVideoStreamError,
        UnsupportedCodecError,
        CorruptVideoError,
        VideoTooShortError,
    ):
        assert issubclass(cls, VideoError)


def test_each_reason_its_class(clip, tmp_path):
    with pytest.raises(VideoNotFoundError) as err:
        VideoReader(tmp_path / "missing.mp4")
    assert err.value.path.endswith("missing.mp4") and err.value.reason == "file not found"
    assert isinstance(err.value, FileNotFoundError) and err.value.errno == 2
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(NotAMediaFileError, match="not a media file"):
        VideoReader(text)
    with pytest.raises(NotAMediaFileError, match="directory"):
        VideoReader(tmp_path)
    with pytest.raises(NoVideoStreamError, match="stream 7 does not exist"):
        VideoReader(clip, stream=7)


def test_no_decoder_for_the_codec_is_a_typed_error(clip, tmp_path):
    odd = unknown_codec_copy(clip, tmp_path / "odd.avi")
    with pytest.raises(UnsupportedCodecError, match="no decoder") as err:
        VideoReader(odd)
    assert err.value.path == str(odd)
    proc = subprocess.run(
        [sys.executable, "-m", "fastvid", "info", str(odd)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "no decoder" in proc.stderr


def test_errors_survive_pickling():
    for err in (
        VideoNotFoundError("a.mp4"),
        CorruptVideoError("b.avi", "broken"),
        UnsupportedCodecError("c.avi", "no decoder", codec="zqzq"),
        VideoTooShortError("d.mp4", "3 frames", num_frames=3, needed=5),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.__dict__ == err.__dict__


def test_read_clips_lets_bugs_through_unchanged(clip, monkeypatch):
    """A bug or a MemoryError is not a bad file: it must not come back as VideoError."""

    def broken(self, frame, spec):
        raise MemoryError("out of memory while converting")

    monkeypatch.setattr(Converter, "convert", broken)
    for workers in (1, 2):
        with pytest.raises(MemoryError):
            read_clips([(clip, [0, 1]), (clip, [2])], workers=workers)


def test_generator_keeps_a_file_that_hit_a_bug(clip, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(2):
            (tmp_path / cls / f"{k}.avi").write_bytes(clip.read_bytes())
    gen = fastvid.VideoFrameGenerator(
        glob_pattern=str(tmp_path / "{classname}" / "*.avi"),
        nb_frames=2,
        target_shape=(16, 16),
        batch_size=2,
        shuffle=False,
        device="cpu",
        prefetch=False,
    )
    real = Converter.convert
    calls = {"n": 0}

    def fail_once(self, frame, spec):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in fastvid")
        return real(self, frame, spec)

    monkeypatch.setattr(Converter, "convert", fail_once)
    with pytest.raises(RuntimeError, match="a bug in fastvid"):
        gen[0]
    x, _ = gen[0]  # the file was not dropped from the dataset
    assert x.shape == (2, 2, 16, 16, 3) and not gen.skipped and gen.files_count == 4


def test_double_ogg_counts_every_decodable_frame(shared_videos, tmp_path):
    """Ordinal mode (no usable timestamps): counting goes on past a decode error."""
    data = (shared_videos / "vidtest.ogv").read_bytes()
    path = tmp_path / "twice.ogv"
    path.write_bytes(data + data)
    with VideoReader(path) as reader:
        single = len(VideoReader(shared_videos / "vidtest.ogv"))
        assert len(reader) == 2 * single
        last = reader.get_frames([2 * single - 1])
        first_again = reader.get_frames([single])
    with VideoReader(shared_videos / "vidtest.ogv") as once:
        np.testing.assert_array_equal(last, once.get_frames([single - 1]))
        np.testing.assert_array_equal(first_again, once.get_frames([0]))


def test_target_shape_errors_name_the_parameter():
    pytest.importorskip("keras")
    with pytest.raises(ValueError, match=r"target_shape must be \(height, width\).*Received: 112"):
        fastvid.VideoFrameGenerator(target_shape=112)
    with pytest.raises(ValueError, match="nb_frames must be a positive integer"):
        fastvid.VideoFrameGenerator(nb_frames=0)


# ------------------------------------------------------------------ the command line


def fastvid_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "fastvid", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kwargs,
    )


def test_info_into_a_closed_pipe_ends_quietly(clip):
    cmd = f"{sys.executable} -m fastvid info {clip} {clip} {clip} | head -n 2"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
    assert len(proc.stdout.splitlines()) == 2
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr


def test_info_messages(clip):
    proc = fastvid_cli("info", str(clip), "--stream", "9")
    assert proc.returncode == 1
    assert "stream 9 does not exist: the file has 1 streams" in proc.stderr
    proc = fastvid_cli("info", str(clip), "--keyframes", "0")
    line = next(ln for ln in proc.stdout.splitlines() if "keyframes" in ln)
    assert line.endswith(": [...]"), line
    proc = fastvid_cli("info", str(clip), "--keyframes", "-1")
    assert proc.returncode == 2 and "must be >= 0" in proc.stderr


def test_info_does_not_import_tensorflow(clip):
    code = (
        "import sys; from fastvid.cli import main; main(['info', sys.argv[1]]); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(clip)], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.slow
def test_commands_that_need_tensorflow_keep_its_start_up_noise_out(clip, tmp_path):
    pytest.importorskip("tensorflow")
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    (src / "v.avi").write_bytes(clip.read_bytes())
    proc = fastvid_cli(
        "convert", str(src.parent), str(tmp_path / "rec"), "--frames", "2", "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    for noise in ("cuInit", "cuda_platform", "cudart_stub", "absl::InitializeLog"):
        assert noise not in proc.stderr

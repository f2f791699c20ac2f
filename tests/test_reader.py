"""VideoReader on synthetic videos whose pixels say which frame they are.

Every test proves WHICH frame came back (``fastvid.synth.frame_index``) and,
where it matters, that the pixels equal those of a plain sequential PyAV decode.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import faststart_copy, run_in_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastvid import VideoError, _runtime
from fastvid import index as vindex
from fastvid import reader as reader_module
from fastvid._walk import split_groups
from fastvid.errors import CorruptVideoError, NotAMediaFileError
from fastvid.reader import DecodeStats, VideoMetadata, VideoReader, read_clips
from fastvid.sampling import uniform_indices
from fastvid.synth import frame_index, frame_indices, make_video

_VFR_PTS = [int(p) for p in np.cumsum(np.random.default_rng(7).integers(1, 6, size=50))]

# name -> (file name, make_video arguments, index drawn in frame 0)
SPECS: dict[str, tuple[str, dict, int]] = {
    "h264_bframes_mp4": ("h264_bf3.mp4", dict(num_frames=72, gop=12, bframes=3), 0),
    "mpeg4_avi": ("mpeg4.avi", dict(num_frames=60, codec="mpeg4", gop=12), 0),
    "mpeg4_bframes_avi": (
        "mpeg4_bf2.avi",
        dict(num_frames=50, codec="mpeg4", gop=12, bframes=2),
        0,
    ),
    "mjpeg_avi": ("mjpeg.avi", dict(num_frames=30, codec="mjpeg"), 0),
    "mpeg2_ts": ("mpeg2.ts", dict(num_frames=48, codec="mpeg2video", gop=12, bframes=2), 0),
    "hevc_bframes_mp4": ("hevc.mp4", dict(num_frames=48, codec="libx265", gop=24, bframes=3), 0),
    "vp9_webm": ("vp9.webm", dict(num_frames=48, codec="libvpx-vp9", gop=12), 0),
    "vfr_mkv": (
        "vfr.mkv",
        dict(num_frames=50, gop=12, bframes=2, pts=_VFR_PTS, time_base=Fraction(1, 100)),
        0,
    ),
    "audio_first_mkv": ("audio_first.mkv", dict(num_frames=40, bframes=2, audio_first=True), 0),
    "audio_first_mp4": ("audio_first.mp4", dict(num_frames=40, bframes=2, audio_first=True), 0),
    "start_pts_mp4": (
        "start100.mp4",
        dict(num_frames=40, bframes=2, pts=list(range(100, 140)), time_base=Fraction(1, 25)),
        0,
    ),
    # negative pts in MP4 become an edit list: the first 10 pictures are decoded (they
    # are references) but never shown, so frame 0 is the picture drawn as 10
    "negative_pts_mp4": (
        "negative.mp4",
        dict(num_frames=40, bframes=2, pts=list(range(-10, 30)), time_base=Fraction(1, 25)),
        10,
    ),
    # MPEG-TS starts at a non-zero pts and seeks by decode time
    "start_pts_ts": ("start.ts", dict(num_frames=40, gop=12, bframes=2), 0),
    "gop1_mp4": ("gop1.mp4", dict(num_frames=30, gop=1), 0),
    "gop250_mp4": ("gop250.mp4", dict(num_frames=300, gop=250, bframes=3), 0),
    # an elementary stream: no timestamps at all (frames counted by decoding)
    "raw_h264": ("raw.h264", dict(num_frames=40, gop=12, bframes=2), 0),
}
NAMES = list(SPECS)


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    root = tmp_path_factory.mktemp("reader_videos")
    out = {}
    for name, (fname, kwargs, offset) in SPECS.items():
        kw = dict(kwargs)
        out[name] = (make_video(root / fname, kw.pop("num_frames"), **kw), offset)
    return out


_REFERENCE: dict[Path, list[np.ndarray]] = {}


def sequential(path: Path) -> list[np.ndarray]:
    """Every frame of the best video stream, by a plain PyAV decode (the reference)."""
    if path not in _REFERENCE:
        with av.open(str(path)) as container:
            stream = container.streams.best("video")
            _REFERENCE[path] = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return _REFERENCE[path]


_READERS: dict[tuple[Path, int], VideoReader] = {}


def shared_reader(path: Path, threads: int) -> VideoReader:
    """One reader per (file, threads), reused across examples: calls see earlier state."""
    key = (path, threads)
    if key not in _READERS:
        _READERS[key] = VideoReader(path, threads=threads)
    return _READERS[key]


@pytest.fixture(scope="module", autouse=True)
def _close_readers():
    yield
    for reader in _READERS.values():
        reader.close()
    _READERS.clear()


def groups(reader: VideoReader, frames: set[int]) -> int:
    """How many keyframe groups the targets fall in (the seek budget)."""
    idx = reader._index
    return len({idx.anchor(int(idx.frame_pkt[i])) for i in frames})


def check_call_stats(reader: VideoReader, name: str, normalized: list[int]) -> None:
    unique = set(normalized)
    assert reader.stats.frames_converted == len(unique)
    assert reader._fallbacks == 0
    if reader._index.mode == vindex.MODE_PTS:
        decoded = reader._decoded_pts
        assert len(decoded) == len(set(decoded)), "a frame was decoded twice in one call"
        # MPEG-TS: the first pts seek lands after the keyframe once, then seeks by dts
        slack = 1 if name.endswith("_ts") else 0
        assert reader.stats.seeks <= groups(reader, unique) + slack


# ---------------------------------------------------------------- counts and metadata


@pytest.mark.parametrize("name", NAMES)
def test_num_frames_equals_sequential_decode(videos, name):
    path, offset = videos[name]
    ref = sequential(path)
    with VideoReader(path) as reader:
        assert len(reader) == reader.metadata.num_frames == len(ref)
        assert frame_indices(ref) == list(range(offset, offset + len(ref)))
        meta = reader.metadata
        assert (meta.width, meta.height) == (64, 48)
        assert meta.keyframe_indices[0] >= 0 and list(meta.keyframe_indices) == sorted(
            set(meta.keyframe_indices)
        )
        assert meta.fps > 0 and meta.duration > 0


def test_metadata_fields(videos):
    with VideoReader(videos["h264_bframes_mp4"][0]) as reader:
        meta = reader.metadata
    assert isinstance(meta, VideoMetadata)
    assert meta == VideoMetadata(
        num_frames=72,
        fps=25.0,
        duration=72 / 25,
        width=64,
        height=48,
        codec="h264",
        pix_fmt="yuv420p",
        keyframe_indices=(0, 12, 24, 36, 48, 60),
        rotation=0,
        stream_index=0,
        coded_width=64,
        coded_height=48,
        mirrored=False,
    )
    with pytest.raises(AttributeError):
        meta.num_frames = 3  # frozen


def test_audio_first_picks_the_video_stream(videos):
    with VideoReader(videos["audio_first_mkv"][0]) as reader:
        assert reader.metadata.stream_index == 1
    with pytest.raises(VideoError, match="not a video stream"):
        VideoReader(videos["audio_first_mkv"][0], stream=0)


def test_vfr_duration_from_timestamps(videos):
    with VideoReader(videos["vfr_mkv"][0]) as reader:
        span = (_VFR_PTS[-1] - _VFR_PTS[0]) / 100
        assert reader.metadata.duration == pytest.approx(span + 1 / reader.metadata.fps, abs=0.02)


# ---------------------------------------------------------------- which frames come back


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_indices_return_exactly_those_frames(videos, name, threads, data):
    path, offset = videos[name]
    reader = shared_reader(path, threads)
    n = len(reader)
    indices = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=12), "indices")
    size = data.draw(st.sampled_from([None, (24, 32), (60, 80)]), "size")
    color = data.draw(st.sampled_from(["rgb", "bgr", "gray"]), "color")
    reader.stats.reset()
    out = reader.get_frames(indices, size=size, color=color)
    normalized = [i % n for i in indices]
    h, w = size or (48, 64)
    assert out.shape == (len(indices), h, w, 1 if color == "gray" else 3) and out.dtype == np.uint8
    assert frame_indices(out) == [offset + i for i in normalized]
    assert reader.last_indices == normalized
    check_call_stats(reader, name, normalized)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_frames_pixel_identical_to_sequential_decode(videos, name, threads):
    path, _ = videos[name]
    ref = sequential(path)
    order = np.random.default_rng(0).permutation(len(ref))
    with VideoReader(path, threads=threads) as reader:
        # all frames shuffled, then a sparse set: two very different walks
        for indices in (order, order[: max(3, len(ref) // 7)]):
            reader.stats.reset()
            out = reader.get_frames(indices)
            for k, i in enumerate(indices):
                assert np.array_equal(out[k], ref[i]), f"frame {i} differs"
            check_call_stats(reader, name, indices.tolist())


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize(
    "name",
    [
        "h264_bframes_mp4",
        "gop250_mp4",
        "vfr_mkv",
        "negative_pts_mp4",
        "mpeg4_bframes_avi",
        "mpeg2_ts",
        "hevc_bframes_mp4",
    ],
)
def test_nonref_skipping_decodes_less_and_stays_exact(videos, name, threads):
    """B-frames that are neither targets nor references are skipped, pixels unchanged."""
    path, _ = videos[name]
    ref = sequential(path)
    with VideoReader(path, threads=threads) as reader:
        targets = uniform_indices(len(reader), 8)
        idx = reader._index
        # decoding every packet from each group's keyframe to its last target
        naive = 0
        for start in {idx.anchor(int(idx.frame_pkt[t])) for t in targets}:
            last = max(
                int(idx.frame_pkt[t]) for t in targets if idx.anchor(int(idx.frame_pkt[t])) == start
            )
            naive += last - start + 1
        out = reader.get_frames(targets)
        assert reader.stats.frames_decoded < naive
        for k, t in enumerate(targets):
            assert np.array_equal(out[k], ref[t])


def test_duplicates_unsorted_negative(videos):
    path, _ = videos["h264_bframes_mp4"]
    with VideoReader(path) as reader:
        out = reader.get_frames([50, 3, -1, 3, 50, -72, 71])
        assert frame_indices(out) == [50, 3, 71, 3, 50, 0, 71]
        assert reader.last_indices == [50, 3, 71, 3, 50, 0, 71]
        assert reader.stats.frames_converted == 4
        assert np.array_equal(out[1], out[3])
        out = reader.get_frames(np.array([5, 4], dtype=np.int32))
        assert frame_indices(out) == [5, 4]
        assert reader.get_frames([]).shape == (0, 48, 64, 3)
        assert reader.get_frames(range(3)).shape == (3, 48, 64, 3)


def test_out_of_range_and_bad_arguments(videos):
    path, _ = videos["mpeg4_avi"]
    with VideoReader(path) as reader:
        for bad in ([60], [-61], [0, 1000]):
            with pytest.raises(IndexError, match=r"valid indices are -60\.\.59") as err:
                reader.get_frames(bad)
            assert str(path) in str(err.value)
        with pytest.raises(TypeError):
            reader.get_frames([1.5])
        with pytest.raises(TypeError):
            reader.get_frames(3)
        with pytest.raises(ValueError, match="color"):
            reader.get_frames([0], color="hsv")
        with pytest.raises(ValueError, match="seek_mode"):
            reader.get_frames([0], seek_mode="fast")
        with pytest.raises(ValueError, match="size"):
            reader.get_frames([0], size=(0, 10))
        with pytest.raises(ValueError, match="even"):
            reader.get_frames([0], size=(24, 33), color="yuv420p")
    with pytest.raises(ValueError, match="closed"):
        reader.get_frames([0])
    reader.close()  # idempotent


# ---------------------------------------------------------------- colours and sizes


def test_colors_and_size_order(videos):
    import cv2

    path, _ = videos["h264_bframes_mp4"]
    with VideoReader(path) as reader:
        rgb = reader.get_frames([7, 30])
        bgr = reader.get_frames([7, 30], color="bgr")
        assert np.array_equal(rgb[..., ::-1], bgr)
        gray = reader.get_frames([7, 30], color="gray")
        assert gray.shape == (2, 48, 64, 1)
        expected = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb])[..., None]
        assert np.abs(gray.astype(int) - expected).max() <= 3  # luma straight from Y
        yuv = reader.get_frames([7, 30], color="yuv420p")
        assert yuv.shape == (2, 72, 64)
        back = np.stack([cv2.cvtColor(f, cv2.COLOR_YUV2RGB_I420) for f in yuv])
        assert np.abs(back.astype(int) - rgb).mean() < 4
        small = reader.get_frames([7, 30], size=(20, 40))  # (height, width)
        assert small.shape == (2, 20, 40, 3)
        assert frame_indices(small) == [7, 30]
        yuv_small = reader.get_frames([30], size=(24, 32), color="yuv420p")
        assert yuv_small.shape == (1, 36, 32)
        assert frame_index(cv2.cvtColor(yuv_small[0], cv2.COLOR_YUV2RGB_I420)) == 30
        big = reader.get_frames([30], size=(96, 128), color="gray")
        assert big.shape == (1, 96, 128, 1) and frame_index(big[0]) == 30


# ---------------------------------------------------------------- keyframe mode


@pytest.mark.parametrize(
    "name",
    [
        "h264_bframes_mp4",
        "mpeg4_avi",
        "vp9_webm",
        "negative_pts_mp4",
        "gop250_mp4",
        "start_pts_ts",
        "raw_h264",
    ],
)
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_keyframe_mode_returns_nearest_keyframes(videos, name, data):
    path, offset = videos[name]
    reader = shared_reader(path, 1)
    n = len(reader)
    keys = np.asarray(reader.metadata.keyframe_indices)
    indices = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=10), "indices")
    reader.stats.reset()
    out = reader.get_frames(indices, seek_mode="keyframe")
    got = reader.last_indices
    for i, k in zip(indices, got, strict=True):
        assert k in keys
        assert abs(k - i % n) == np.abs(keys - i % n).min()
    assert frame_indices(out) == [offset + k for k in got]
    if reader._index.mode == vindex.MODE_PTS:
        assert reader.stats.frames_decoded <= len(set(got))  # keyframes only
        assert reader._fallbacks == 0


def test_keyframe_mode_pixels(videos):
    path, _ = videos["gop250_mp4"]
    ref = sequential(path)
    with VideoReader(path, threads=3) as reader:
        out = reader.get_frames([10, 200, 299], seek_mode="keyframe")
        assert reader.last_indices == [0, 250, 250]
        for k, i in enumerate(reader.last_indices):
            assert np.array_equal(out[k], ref[i])


# ---------------------------------------------------------------- robustness


def test_state_carries_over_between_calls(videos):
    """Forward, backward, repeated: the demuxer position from the last call never leaks."""
    path, _ = videos["gop250_mp4"]
    ref = sequential(path)
    with VideoReader(path, threads=2) as reader:
        for indices in ([5, 6], [7], [299], [0], [251, 249], [100, 100], [298, 1]):
            out = reader.get_frames(indices)
            for k, i in enumerate(indices):
                assert np.array_equal(out[k], ref[i])
        assert reader._fallbacks == 0


class _SeekDoesNothing:
    """A container whose seek silently does nothing (as a broken demuxer might)."""

    def __init__(self, container):
        self._container = container

    def seek(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return getattr(self._container, name)


def test_misbehaving_seek_falls_back_not_to_wrong_frames(videos):
    path, _ = videos["h264_bframes_mp4"]
    with VideoReader(path) as reader:
        reader.get_frames([70])  # demuxer near the end
        demux = reader._demux
        demux._container = _SeekDoesNothing(demux._container)
        out = reader.get_frames([3, 40])
        assert frame_indices(out) == [3, 40]
        assert not isinstance(demux._container, _SeekDoesNothing)  # it reopened the file


def test_timestamp_mismatch_raises_instead_of_returning_another_frame(videos):
    path, _ = videos["h264_bframes_mp4"]
    with VideoReader(path) as reader:
        idx = reader._index
        pos = int(idx.frame_pkt[30])
        pts = idx.pts.copy()
        pts[pos] += 1  # the index now expects a timestamp no packet has
        reader._index = reader._demux.index = dataclasses.replace(idx, pts=pts)
        with pytest.raises(CorruptVideoError, match="not the one the index holds") as err:
            reader.get_frames([30])
        assert str(path) in str(err.value)
        # frames before the damage still come back, and they are the right ones
        assert frame_indices(reader.get_frames([2, 5])) == [2, 5]


def test_interrupted_call_leaves_the_reader_usable(videos, monkeypatch):
    path, _ = videos["gop250_mp4"]
    with VideoReader(path) as reader:
        reader.get_frames([3])
        converter = reader._converter
        real_convert = converter.convert

        def fail_once(frame, spec):
            monkeypatch.setattr(converter, "convert", real_convert)
            raise KeyboardInterrupt

        monkeypatch.setattr(converter, "convert", fail_once)
        with pytest.raises(KeyboardInterrupt):
            reader.get_frames([120, 121, 122])
        assert frame_indices(reader.get_frames([121, 4, 260])) == [121, 4, 260]


def oriented_video(path: Path, degrees: int, hflip: bool, vflip: bool, n: int = 6) -> Path:
    """64x48 frames drawn upright, stored with a display matrix that turns/mirrors them."""
    from fastvid.synth import draw_frame

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(draw_frame(i, 64, 48), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def shown(coded: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> np.ndarray:
    """What a player shows (PyAV's convention: turn counter-clockwise, then mirror)."""
    out = np.rot90(coded, degrees // 90)
    if hflip:
        out = out[:, ::-1]
    return out[::-1] if vflip else out


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize(("hflip", "vflip"), [(False, False), (True, False), (False, True)])
def test_frames_come_back_upright(tmp_path, degrees, hflip, vflip):
    path = oriented_video(tmp_path / "o.mp4", degrees, hflip, vflip)
    with VideoReader(path, apply_rotation=False) as coded_reader:
        coded = coded_reader.get_frames([5, 1])
        assert coded.shape == (2, 48, 64, 3) and frame_indices(coded) == [5, 1]
        assert coded_reader.metadata.width == 64
    with VideoReader(path) as reader:
        meta = reader.metadata
        assert (meta.coded_width, meta.coded_height) == (64, 48)
        turned = degrees in (90, 270)
        assert (meta.width, meta.height) == ((48, 64) if turned else (64, 48))
        out = reader.get_frames([5, 1])
        for k in range(2):
            np.testing.assert_array_equal(out[k], shown(coded[k], degrees, hflip, vflip))
        gray = reader.get_frames([5], color="gray")
        assert gray.shape[1:3] == out.shape[1:3]
        small = reader.get_frames([5], size=(20, 10))  # (height, width) as shown
        assert small.shape == (1, 20, 10, 3)
        yuv = reader.get_frames([5], color="yuv420p")
        assert yuv.shape == (1, meta.height * 3 // 2, meta.width)


def test_source_from_bytes_and_file_objects(videos):
    import io

    path, _ = videos["h264_bframes_mp4"]
    with VideoReader(path) as reader:
        want = reader.get_frames([40, 3, 71])
    data = Path(path).read_bytes()
    for source in (data, io.BytesIO(data), open(path, "rb")):  # noqa: SIM115
        with VideoReader(source) as reader:
            np.testing.assert_array_equal(reader.get_frames([40, 3, 71]), want)
            assert len(reader) == 72
        if hasattr(source, "close"):
            source.close()
    with VideoReader(data) as reader:
        assert reader.path == f"<{len(data)} bytes>"
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        VideoReader(12)
    with pytest.raises(NotAMediaFileError, match="<4 bytes>"):
        VideoReader(b"oops")


def test_frames_at_times_and_timestamps(videos):
    path, _ = videos["vfr_mkv"]  # variable frame rate: pts 1..~150 of 1/100 s, irregular
    with VideoReader(path) as reader:
        times = reader._index.frame_seconds(reader.metadata.fps)
        reader.get_frames([0, 10, 49])
        assert reader.last_timestamps == [times[0], times[10], times[49]]
        mid = (times[10] + times[11]) / 2  # shown since frame 10
        out = reader.get_frames_at_times([times[0], mid, times[11], times[49]])
        assert reader.last_indices == [0, 10, 11, 49]
        assert frame_indices(out) == [0, 10, 11, 49]
        assert reader.last_timestamps == [times[0], times[10], times[11], times[49]]
        with pytest.raises(IndexError, match="outside the video"):
            reader.get_frames_at_times([times[0] - 0.5])
        with pytest.raises(IndexError, match="outside the video"):
            reader.get_frames_at_times([times[49] + 10])


def test_one_reader_per_thread_in_parallel(videos):
    path, _ = videos["gop250_mp4"]
    rng = np.random.default_rng(3)
    plans = [rng.integers(0, 300, size=6).tolist() for _ in range(4)]

    def work(plan):
        with VideoReader(path) as reader:
            for _ in range(3):
                assert frame_indices(reader.get_frames(plan)) == plan

    assert not run_in_threads(work, plans)


def test_shared_reader_calls_are_serialised(videos):
    path, _ = videos["gop250_mp4"]
    with VideoReader(path) as reader:

        def work(seed):
            plan = np.random.default_rng(seed).integers(0, 300, size=5).tolist()
            assert frame_indices(reader.get_frames(plan)) == plan

        assert not run_in_threads(work, range(4))


# ---------------------------------------------------------------- keyframe groups in parallel


@pytest.fixture
def parallel_always(monkeypatch):
    """Parallel decoders even for these tiny videos (the work threshold is for speed only)."""
    monkeypatch.setattr(reader_module, "PARALLEL_MIN_WORK", 0)


@pytest.mark.parametrize("name", NAMES)
def test_groups_decoded_in_parallel_are_the_same_frames(videos, name, parallel_always):
    path, offset = videos[name]
    ref = sequential(path)
    n = len(ref)
    order = np.random.default_rng(1).permutation(n)
    with VideoReader(path, decoders=3) as reader:
        for indices in (order, order[: max(3, n // 7)], np.array(uniform_indices(n, 8))):
            reader.stats.reset()
            out = reader.get_frames(indices)
            for k, i in enumerate(indices):
                assert np.array_equal(out[k], ref[i]), f"frame {i} differs"
            unique = set(indices.tolist())
            assert reader.stats.frames_converted == len(unique) and reader._fallbacks == 0
            if reader._index.mode == vindex.MODE_PTS:
                decoded = reader._decoded_pts
                assert len(decoded) == len(set(decoded)), "a frame was decoded twice"
                slack = len(reader._parts) if name.endswith("_ts") else 0
                assert reader.stats.seeks <= groups(reader, unique) + slack
                parts, _ = split_groups(reader._index, sorted(unique), False, 3)
                if len(parts) >= 2:  # groups that do not overlap (open GOPs overlap)
                    assert reader._parts, "the groups were not decoded in parallel"
        keys = reader.get_frames(uniform_indices(n, 6), seek_mode="keyframe")
        assert frame_indices(keys) == [offset + i for i in reader.last_indices]


def test_parallel_part_that_desyncs_falls_back_to_one_decoder(videos, parallel_always, monkeypatch):
    from fastvid import _walk
    from fastvid._demux import Desync

    path, _ = videos["gop250_mp4"]
    real = _walk.Walk.seeking
    calls = {"parts": 0}

    def second_part_desyncs(self, keyframes_only):
        if self._cancel is not None:  # a parallel part
            calls["parts"] += 1
            if min(self.targets) > 150:
                raise Desync("simulated: the demuxer gave another packet")
        return real(self, keyframes_only)

    monkeypatch.setattr(_walk.Walk, "seeking", second_part_desyncs)
    targets = [5, 100, 260, 290]
    with VideoReader(path, decoders=2) as reader:
        assert frame_indices(reader.get_frames(targets)) == targets
        assert calls["parts"] == 2 and reader._fallbacks == 0


def test_no_parallel_decoders_inside_read_clips_pool(videos, parallel_always):
    path, _ = videos["gop250_mp4"]
    seen = []
    real = reader_module.VideoReader._decode_in_parts

    def spy(self, targets, sink, keyframes_only):
        seen.append(self._decoder_count())
        return real(self, targets, sink, keyframes_only)

    import unittest.mock

    with unittest.mock.patch.object(reader_module.VideoReader, "_decode_in_parts", spy):
        clips = read_clips([(path, [1, 260]), (path, [2, 270])], workers=2)
        assert [frame_indices(c) for c in clips] == [[1, 260], [2, 270]]
        assert seen == [1, 1]  # the pool already decodes several files at once
        seen.clear()
        read_clips([(path, [1, 260])])  # one request: decoded in the caller, in parallel
        assert seen and seen[0] >= 1


def test_decoders_argument_is_checked(videos):
    path, _ = videos["gop250_mp4"]
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="decoders"):
            VideoReader(path, decoders=bad)


# ---------------------------------------------------------------- index cache


def test_index_cache_dir(videos, tmp_path, monkeypatch):
    path, _ = videos["vp9_webm"]
    vindex.memory_cache.clear()
    with VideoReader(path, cache_dir=tmp_path) as reader:
        meta = reader.metadata
    assert len(list(tmp_path.glob("*.npz"))) == 1
    vindex.memory_cache.clear()

    def no_scan(*args, **kwargs):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(vindex, "scan_packets", no_scan)
    with VideoReader(path, cache_dir=tmp_path) as reader:
        assert reader.metadata == meta
        assert frame_indices(reader.get_frames([47, 0, 13])) == [47, 0, 13]
        assert reader.stats.seeks <= 2  # starts at packet 0 without seeking
    vindex.memory_cache.clear()
    # a damaged cache file is ignored and rebuilt
    monkeypatch.undo()
    for f in tmp_path.glob("*.npz"):
        f.write_bytes(b"garbage")
    with VideoReader(path, cache_dir=tmp_path) as reader:
        assert reader.metadata == meta


def test_index_cache_dir_from_environment(tmp_path, monkeypatch):
    path = make_video(tmp_path / "v.mp4", 12, gop=4)
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("FASTVID_INDEX_CACHE", str(cache))
    _runtime.reload_settings()  # settings are read once per process
    vindex.memory_cache.clear()
    clips = read_clips([(path, [11, 0])], workers=1)  # what the generators call
    assert [frame_indices(c) for c in clips] == [[11, 0]]
    assert len(list(cache.glob("*.npz"))) == 1
    vindex.memory_cache.clear()
    monkeypatch.setattr(vindex, "scan_packets", lambda *a, **k: pytest.fail("index not cached"))
    with VideoReader(path) as reader:
        assert len(reader) == 12


def test_index_cache_follows_file_changes(tmp_path):
    path = make_video(tmp_path / "v.mp4", 20, gop=5)
    cache = tmp_path / "cache"
    with VideoReader(path, cache_dir=cache) as reader:
        assert len(reader) == 20
    make_video(path, 30, gop=5)  # same path, new content (size and mtime change)
    with VideoReader(path, cache_dir=cache) as reader:
        assert len(reader) == 30
        assert frame_indices(reader.get_frames([29])) == [29]


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="not found") as err:
        VideoReader(missing)
    assert err.value.path == str(missing) and isinstance(err.value, OSError)


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match="not a media file") as err:
        VideoReader(fake)
    assert str(fake) in str(err.value)


def test_directory(tmp_path):
    with pytest.raises(VideoError, match="directory"):
        VideoReader(tmp_path)


def test_audio_only_file(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 48000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream") as err:
        VideoReader(path)
    assert str(path) in str(err.value)


_TRUNCATE_SCRIPT = r"""
import json, sys
from fastvid import VideoError
from fastvid.reader import VideoReader
from fastvid.synth import frame_index
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
results = []
for frac in [0.03, 0.2, 0.5, 0.8, 0.97]:
    path = f"{dst}_{frac}{src[src.rfind('.'):]}"
    open(path, "wb").write(data[: int(len(data) * frac)])
    res = {"frac": frac}
    try:
        with VideoReader(path, threads=2) as reader:
            n = len(reader)
            res["n"] = n
            idx = reader._index
            res["pts"] = idx.frame_pts().tolist()
            # the picture of the last packet read may be cut short: its pixels are not checked
            res["last"] = [int(i) for i in (idx.frame_pkt == idx.num_packets - 1).nonzero()[0]]
            try:
                out = reader.get_frames(list(range(n)))
                res["indices"] = [frame_index(f) for f in out]
            except VideoError as exc:
                res["error"] = str(exc)
    except VideoError as exc:
        res["error"] = str(exc)
    res["path"] = path
    results.append(res)
print(json.dumps(results))
"""


@pytest.mark.parametrize(
    "name", ["h264_bframes_mp4", "faststart_mp4", "mpeg4_avi", "vp9_webm", "start_pts_ts"]
)
def test_truncated_synthetic_file_never_crashes(videos, name, tmp_path):
    """In a subprocess (a segfault would show as a signal): VideoError or the right frames."""
    import json

    if name == "faststart_mp4":  # index first: a cut keeps a readable file with missing data
        path, offset = faststart_copy(videos["h264_bframes_mp4"][0], tmp_path / "fs.mp4"), 0
    else:
        path, offset = videos[name]
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_SCRIPT, str(path), str(tmp_path / "cut")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with av.open(str(path)) as container:  # pts -> index drawn, in the whole file
        drawn = {f.pts: offset + k for k, f in enumerate(container.decode(video=0))}
    decoded_some = False
    for res in json.loads(proc.stdout):
        if "error" in res:
            assert res["path"] in res["error"]
            continue
        # a cut keeps a prefix in decode order: with B-frames, presentation order may
        # have holes near the end; each frame must be the picture its timestamp names
        got, pts = res["indices"], res["pts"]
        assert len(got) == len(pts) == res["n"]
        for i, (k, p) in enumerate(zip(got, pts, strict=True)):
            if i not in res["last"]:
                assert k == drawn[p], f"cut {res['frac']}: frame {i} is {k}, not {drawn[p]}"
        decoded_some = decoded_some or len(got) > 1
    if name in ("faststart_mp4", "vp9_webm", "start_pts_ts"):
        assert decoded_some  # those cuts leave readable prefixes


# ---------------------------------------------------------------- read_clips


def test_read_clips_order_and_errors(videos, tmp_path):
    reqs = [
        (videos["h264_bframes_mp4"][0], [5, 1]),
        (videos["mpeg4_avi"][0], [59, 0, 30]),
        (videos["vp9_webm"][0], [12]),
        (str(videos["gop250_mp4"][0]), [299, 150]),
    ]
    for workers in (None, 1, 3):
        clips = read_clips(reqs, size=(24, 32), workers=workers)
        assert [frame_indices(c) for c in clips] == [[5, 1], [59, 0, 30], [12], [299, 150]]
        assert all(c.shape[1:] == (24, 32, 3) for c in clips)
    gray = read_clips(reqs[:2], color="gray")
    assert gray[0].shape == (2, 48, 64, 1)
    kf = read_clips(reqs[:2], seek_mode="keyframe")
    assert frame_indices(kf[1]) == [48, 0, 24]  # 30 is as far from 24 as from 36: earlier wins
    assert read_clips([]) == []

    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF" + b"\0" * 100)
    with pytest.raises(VideoError) as err:
        read_clips([reqs[0], (bad, [0]), reqs[1]], workers=2)
    assert str(bad) in str(err.value)
    with pytest.raises(IndexError, match="mpeg4.avi"):
        read_clips([reqs[0], (videos["mpeg4_avi"][0], [60])], workers=2)


def test_stats_object():
    stats = DecodeStats(frames_decoded=3, frames_converted=2, seeks=1)
    assert stats.as_dict() == {"frames_decoded": 3, "frames_converted": 2, "seeks": 1}
    stats.reset()
    assert stats.as_dict() == {"frames_decoded": 0, "frames_converted": 0, "seeks": 0}


def test_import_is_light():
    code = (
        "import sys, fastvid.reader, fastvid.index, fastvid.info\n"
        "heavy = [m for m in ('tensorflow', 'cupy', 'cv2', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_memory_cache_is_bounded_by_bytes_not_entries(tmp_path):
    path = make_video(tmp_path / "v.mp4", 30, gop=5)
    with VideoReader(path) as reader:
        idx = vindex.memory_cache.get(vindex.cache_key(reader.path, reader.metadata.stream_index))
    size = vindex.index_nbytes(idx)
    cache = vindex._MemoryCache(max_bytes=3 * size)
    for k in range(10):  # many entries fit while their bytes do
        cache.put(("small", k), idx)
    assert [cache.get(("small", k)) is not None for k in range(10)] == [False] * 7 + [True] * 3
    cache.put(("small", 9), idx)  # replacing an entry does not count it twice
    assert all(cache.get(("small", k)) is not None for k in (7, 8, 9))


def test_close_waits_for_a_call_in_progress(videos):
    path, _ = videos["h264_bframes_mp4"]
    reader = VideoReader(path)
    started, results = threading.Event(), []

    def read():
        started.set()
        try:
            results.append(frame_indices(reader.get_frames(list(range(len(reader))))))
        except ValueError as err:  # closed before the call took the lock
            results.append(str(err))

    t = threading.Thread(target=read)
    t.start()
    started.wait()
    reader.close()
    t.join(timeout=60)
    assert results == [list(range(len(reader)))] or "closed" in results[0]


# ---------------------------------------------------------------- files that lie, files damaged


def remux(src: Path, dst: Path, fix) -> Path:
    """Copy the video packets of ``src`` into ``dst``, ``fix(position, packet)`` first."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream_in = inp.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        for k, packet in enumerate(p for p in inp.demux(stream_in) if p.dts is not None):
            fix(k, packet)
            packet.stream = stream_out
            out.mux(packet)
    return dst


def assert_same_however_asked(path: Path, where: list[float]) -> None:
    """The property: frame i alone, in a range, and in a sequential decode are one picture.

    ``where``: the single frames to ask for first, as fractions of the length.
    """
    from fastvid.bench.fuzz import digest, reference_decode

    ref = reference_decode(path).digests
    singles = [int(f * len(ref)) for f in where]
    with VideoReader(path) as reader:
        alone = {i: digest(reader.get_frames([i])[0]) for i in singles}
    with VideoReader(path) as reader:
        assert len(reader) == len(ref)
        ranged = [digest(f) for f in reader.get_frames(range(len(reader)))]
    assert ranged == ref
    assert alone == {i: ref[i] for i in singles}


def test_timestamps_equal_to_decode_order_around_bframes(videos, tmp_path):
    """An MP4 muxed with pts = dts although it has B-frames (as box.mp4): the decoder shows
    the pictures in another order, and that order is the frames'."""
    src, _ = videos["h264_bframes_mp4"]
    path = remux(src, tmp_path / "pts_is_dts.mp4", lambda k, p: setattr(p, "pts", p.dts))
    with VideoReader(path) as reader:
        assert reader._index.mode == vindex.MODE_DECODED
    assert_same_however_asked(path, [0.45, 0.05, 0.7, 0.25, 0.0, 0.9])


def test_keyframe_flag_that_lies_is_caught(videos):
    path, _ = videos["gop250_mp4"]
    with VideoReader(path) as reader:
        idx = reader._index
        fake = int(idx.frame_pkt[120])  # a P-frame, now claimed as a keyframe
        assert not idx.key[fake]
        key = idx.key.copy()
        key[fake] = True
        reader._index = reader._demux.index = dataclasses.replace(idx, key=key)
        out = reader.get_frames([125, 121])
        assert frame_indices(out) == [125, 121]
        assert reader._index.mode == vindex.MODE_DECODED  # renumbered by decoding it once
        np.testing.assert_array_equal(out, [sequential(path)[125], sequential(path)[121]])


def test_zeroed_chunk_in_an_mpeg4_avi(tmp_path):
    """A zeroed 4 KB chunk: after a seek the demuxer may number packets off by a few, which
    timestamps alone would not reveal; frames must still be those of a sequential decode."""
    src = make_video(
        tmp_path / "long.avi", 120, width=320, height=240, codec="mpeg4", gop=12, bframes=2
    )
    data = bytearray(src.read_bytes())
    at = len(data) // 3
    data[at : at + 4096] = bytes(4096)
    path = tmp_path / "zeroed.avi"
    path.write_bytes(bytes(data))
    assert_same_however_asked(path, [0.36, 0.33, 0.75, 0.04, 0.5, 0.99, 0.37])

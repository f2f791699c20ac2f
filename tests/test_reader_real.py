"""VideoReader on real files (``../shared/videos``; skipped when absent).

Every returned frame must be pixel-identical to the same frame of a full
sequential PyAV decode: compared through a digest of the RGB bytes, so the
reference of a whole file fits in memory.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import faststart_copy

from fastvid import VideoError
from fastvid.reader import VideoReader
from fastvid.sampling import uniform_indices

REAL = ["nasa_13013.mp4", "vidtest.ogv", "h265_video.mp4", "av1_video.mkv"]


def digest(rgb: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(rgb).tobytes(), digest_size=16).hexdigest()


_REFERENCE: dict[tuple[Path, int], tuple[list[str], list[int]]] = {}


def reference(path: Path, stream_index: int) -> tuple[list[str], list[int]]:
    """Digest and pts of every frame of a sequential decode of one stream."""
    key = (path, stream_index)
    if key not in _REFERENCE:
        with av.open(str(path)) as container:
            frames = [
                (digest(f.to_ndarray(format="rgb24")), f.pts)
                for f in container.decode(container.streams[stream_index])
            ]
        _REFERENCE[key] = ([d for d, _ in frames], [p for _, p in frames])
    return _REFERENCE[key]


def index_sets(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    count = min(16, n)
    return [
        uniform_indices(n, count),
        rng.permutation(n)[:count].tolist(),  # random, unsorted
        rng.integers(-n, n, size=10).tolist(),  # duplicates and negatives likely
        [n - 1, 0, n // 2, n // 2 + 1, n // 2 - 1],
        list(range(max(0, n // 3), min(n, n // 3 + 20))),  # a contiguous clip
    ]


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("fname", REAL)
def test_real_frames_pixel_identical_to_sequential_decode(shared_videos, fname, threads):
    path = shared_videos / fname
    with VideoReader(path, threads=threads) as reader:
        digests, _ = reference(path, reader.metadata.stream_index)
        n = len(reader)
        assert n == len(digests)
        for indices in index_sets(n, seed=len(fname)):
            reader.stats.reset()
            out = reader.get_frames(indices)
            assert [digest(f) for f in out] == [digests[i % n] for i in indices]
            assert len(reader._decoded_pts) == len(set(reader._decoded_pts))
            assert reader.stats.frames_converted == len({i % n for i in indices})
        out = reader.get_frames(index_sets(n, 0)[0], seek_mode="keyframe")
        assert set(reader.last_indices) <= set(reader.metadata.keyframe_indices)
        assert [digest(f) for f in out] == [digests[i] for i in reader.last_indices]
        assert reader._fallbacks == 0


def test_nasa_picks_the_480x270_stream(shared_videos):
    path = shared_videos / "nasa_13013.mp4"
    with VideoReader(path) as reader:
        meta = reader.metadata
        assert (meta.width, meta.height, meta.stream_index) == (480, 270, 3)
        assert meta.num_frames == len(reference(path, 3)[0])
        assert meta.fps == pytest.approx(30000 / 1001)
    with VideoReader(path, stream=0) as reader:
        meta = reader.metadata
        assert (meta.width, meta.height) == (320, 180)
        digests, pts = reference(path, 0)
        assert meta.num_frames == len(digests)
        out = reader.get_frames([len(digests) - 1, 5, 200])
        assert [digest(f) for f in out] == [digests[-1], digests[5], digests[200]]


def test_ogv_without_frame_count_in_header(shared_videos):
    path = shared_videos / "vidtest.ogv"
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the header does not say
    with VideoReader(path) as reader:
        assert len(reader) == len(reference(path, 0)[0])
        assert reader.metadata.fps > 0


_TRUNCATE_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from fastvid import VideoError
from fastvid.reader import VideoReader
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
results = []
for frac in [0.1, 0.35, 0.6, 0.9]:
    path = f"{dst}_{frac}{src[src.rfind('.'):]}"
    open(path, "wb").write(data[: int(len(data) * frac)])
    res = {"frac": frac, "path": path}
    try:
        with VideoReader(path) as reader:
            idx = reader._index
            n = len(reader)
            res["pts"] = idx.frame_pts().tolist()
            res["last"] = [int(i) for i in (idx.frame_pkt == idx.num_packets - 1).nonzero()[0]]
            res["digests"] = []
            try:
                for start in range(0, n, 32):
                    for f in reader.get_frames(range(start, min(n, start + 32))):
                        d = hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=16)
                        res["digests"].append(d.hexdigest())
            except VideoError as exc:
                res["error"] = str(exc)
    except VideoError as exc:
        res["error"] = str(exc)
    results.append(res)
print(json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "fname", ["nasa_13013.mp4", "nasa_faststart.mp4", "vidtest.ogv", "av1_video.mkv"]
)
def test_truncated_real_file_never_crashes(shared_videos, fname, tmp_path):
    """Cut copies, read in a subprocess: a VideoError naming the file, or correct frames."""
    if fname == "nasa_faststart.mp4":
        path = faststart_copy(shared_videos / "nasa_13013.mp4", tmp_path / fname)
    else:
        path = shared_videos / fname
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_SCRIPT, str(path), str(tmp_path / "cut")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # a crash would be a signal here
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        by_pts = {f.pts: digest(f.to_ndarray(format="rgb24")) for f in container.decode(stream)}
    readable = 0
    for res in json.loads(proc.stdout):
        if "error" in res:
            assert res["path"] in res["error"]
        for i, d in enumerate(res.get("digests", [])):
            if i not in res["last"]:  # the last packet read may be cut short
                assert d == by_pts[res["pts"][i]], f"cut {res['frac']}: frame {i} differs"
        readable += len(res.get("digests", [])) > 0
    if fname != "nasa_13013.mp4":  # its index is at the end: every cut is unreadable
        assert readable >= 2


def test_missing_real_stream_index(shared_videos):
    with pytest.raises(VideoError, match=r"video streams: \[0, 3\]"):
        VideoReader(shared_videos / "nasa_13013.mp4", stream=9)


# ---------------------------------------------------------------- every file of the folder


def every_shared_video() -> list[str]:
    from conftest import SHARED_VIDEOS

    if not SHARED_VIDEOS.is_dir():
        return ["(none)"]
    return sorted(p.name for p in SHARED_VIDEOS.iterdir() if p.suffix != ".md")


def sequential_digests(path: Path) -> list[str]:
    """A plain sequential decode of the best video stream, one thread, as players do:
    a packet the decoder refuses is skipped, a read error ends the stream."""
    out: list[str] = []
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.best("video")
        cc = stream.codec_context
        cc.thread_count = 1
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                try:
                    out += [digest(f.to_ndarray(format="rgb24")) for f in cc.decode(packet)]
                except av.error.FFmpegError:
                    continue
        except av.error.FFmpegError:
            pass
        out += [digest(f.to_ndarray(format="rgb24")) for f in cc.decode(None)]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fname", every_shared_video())
def test_frame_i_is_the_same_picture_however_asked(shared_videos, fname):
    """Alone, in a range, after other calls: the i-th picture of a sequential decode.

    Covers the files whose headers, timestamps or keyframe flags lie (tree.avi claims
    444 frames and holds 68; box.mp4 is muxed with pts = dts around B-frames;
    Megamind*.avi store packed B-frames; Megamind_bugy.avi is damaged), audio-first
    files and Cinepak.
    """
    path = shared_videos / fname
    ref = sequential_digests(path)
    with VideoReader(path) as reader:
        n = len(reader)
        singles = np.random.default_rng(n).permutation(n)[:12].tolist()
        alone = {i: digest(reader.get_frames([i])[0]) for i in singles}
    with VideoReader(path) as reader:
        assert len(reader) == len(ref)
        chunks = [reader.get_frames(range(s, min(n, s + 64))) for s in range(0, n, 64)]
    ranged = [digest(f) for chunk in chunks for f in chunk]
    assert ranged == ref
    assert alone == {i: ref[i] for i in singles}


def test_header_that_lies_about_its_frame_count(shared_videos):
    path = shared_videos / "tree.avi"
    with av.open(str(path)) as container:
        claimed = container.streams.video[0].frames
    with VideoReader(path) as reader:
        assert reader.metadata.codec == "cinepak"
        assert len(reader) == len(sequential_digests(path)) < claimed


def test_timestamps_that_lie_are_found_out(shared_videos):
    """box.mp4 is muxed with pts = dts, yet its h264 has B-frames: the decoder shows frames
    in another order. fastvid numbers them as the decoder shows them."""
    path = shared_videos / "box.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
    assert all(p.pts == p.dts for p in packets)
    with VideoReader(path) as reader:
        assert reader._index.mode == "decoded"
        assert reader.metadata.stream_index == 1  # the audio stream comes first

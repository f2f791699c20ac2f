"""The decode suite: fastvid's reader against the usual ways to get frames out of video.

Workloads (modeled on torchcodec's published benchmarks), all resized to 112x112:
16 uniformly spaced frames, 16 random frames, the first 100 frames, and a
16-frame contiguous clip at a random start. Methods, side by side on the same
files and the same indices:

- ``fastvid exact`` / ``fastvid keyframe``: :class:`fastvid.VideoReader`, one file at a time;
- ``fastvid read_clips``: every file of the set in one :func:`fastvid.read_clips` call;
- ``opencv sequential``: keras-video-generators' way, ``cv2.VideoCapture.read`` every
  frame up to the last target, keep (resize + BGR->RGB) the targets;
- ``opencv seek``: ``CAP_PROP_POS_FRAMES`` then ``read`` per target;
- ``pyav decode-all``: decode every frame up to the last target, convert the targets;
- ``decord`` when importable (decord 0.6 or its successor decord2, same import name;
  the note says which; never a dependency of fastvid);
- ``torchcodec`` when importable, at its fair settings: decoder-side ``Resize``,
  ``dimension_order="NHWC"``, ``torch.set_num_threads(1)`` while timing, and both
  ``num_ffmpeg_threads=1`` and ``0`` (two rows, the faster marked "best setting");
  ``torchcodec approximate`` (``seek_mode="approximate"``: no scan of the file on
  open, the same exact targets), ``torchcodec keyframes`` (asked for the nearest
  keyframes, the frames ``fastvid keyframe`` returns) and, for a set of files,
  ``torchcodec thread pool`` (one decoder per file on a ``ThreadPoolExecutor`` with
  one thread per core, as a user would write it);
- ``decode floor``: PyAV decoding only what the targets depend on (from each target's
  keyframe to its packet, non-reference non-target frames skipped), converting
  nothing. Written here from a demux-only index, independent of fastvid's reader.

Timings include opening each file. Indices (the container index) are built
once, outside the timing, for fastvid (its cache) and the floor; OpenCV, decord
and torchcodec (exact mode scans the file) build theirs when they open a file,
as they always do.

Frames are checked after timing: on synthetic videos each picture carries its
index; on real footage each returned frame is compared with a sequential PyAV
decode of the file (:func:`reference_frames`): it must be closer to the frame
asked for than to its neighbours (:func:`_check_real`).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastvid.bench import common, footage
from fastvid.sampling import uniform_indices

log = logging.getLogger(__name__)

SUITE = "decode"
SIZE = (112, 112)  # (width, height) of every returned frame
CLIP_LEN = 16
SEED = 1234

WORKLOADS: dict[str, str] = {
    "uniform16": "16 uniform frames @112x112",
    "random16": "16 random frames @112x112",
    "first100": "first 100 frames @112x112",
    "clip16": "16-frame clip at a random start @112x112",
}
METHODS: tuple[str, ...] = (
    "fastvid exact",
    "fastvid keyframe",
    "fastvid read_clips",
    "opencv sequential",
    "opencv seek",
    "pyav decode-all",
    "decord",
    "torchcodec",
    "torchcodec approximate",
    "torchcodec keyframes",
    "torchcodec thread pool",
    "decode floor",
)
TORCHCODEC = tuple(m for m in METHODS if m.startswith("torchcodec"))
# "torchcodec" is measured at both thread settings, one row each (method name + setting)
TORCHCODEC_SETTINGS = (("num_ffmpeg_threads=1", 1), ("num_ffmpeg_threads=0", 0))
# methods that read a whole set of files in one call: not run on a single file
SET_METHODS = ("fastvid read_clips", "torchcodec thread pool")
# short names for --decode-methods
_ALIASES = {
    "exact": "fastvid exact",
    "keyframe": "fastvid keyframe",
    "read_clips": "fastvid read_clips",
    "opencv-seq": "opencv sequential",
    "opencv-seek": "opencv seek",
    "pyav": "pyav decode-all",
    "decord": "decord",
    "torchcodec": "torchcodec",
    "torchcodec-approx": "torchcodec approximate",
    "torchcodec-keyframes": "torchcodec keyframes",
    "torchcodec-pool": "torchcodec thread pool",
    "floor": "decode floor",
}


# --------------------------------------------------------------------------- index


@dataclass(frozen=True)
class DemuxIndex:
    """What a demux-only pass over a file's best video stream tells.

    ``pts[i]`` is the timestamp of frame ``i`` in presentation order;
    ``keyframes`` the presentation indices of keyframes, sorted.
    """

    stream_index: int
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def keyframe_before(self, index: int) -> int:
        """The last keyframe at or before frame ``index`` (0 if none)."""
        k = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[k] if k >= 0 else 0


def demux_index(path: str | Path) -> DemuxIndex:
    """Read every packet header of the best video stream; decode nothing."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        if stream is None:
            raise ValueError(f"{path}: no video stream")
        pts, keys = [], set()
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.add(packet.pts)
        order = sorted(pts)
        keyframes = tuple(i for i, p in enumerate(order) if p in keys)
        return DemuxIndex(stream.index, tuple(order), keyframes or (0,))


# --------------------------------------------------------------------------- workloads


def workload_indices(name: str, num_frames: int, rng: np.random.Generator) -> list[int]:
    """The frame indices one workload asks of a video of ``num_frames`` frames."""
    if name == "uniform16":
        return uniform_indices(num_frames, min(16, num_frames))
    if name == "random16":
        k = min(16, num_frames)
        return [int(i) for i in rng.choice(num_frames, size=k, replace=False)]
    if name == "first100":
        return list(range(min(100, num_frames)))
    if name == "clip16":
        k = min(CLIP_LEN, num_frames)
        start = int(rng.integers(0, num_frames - k + 1))
        return list(range(start, start + k))
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


# --------------------------------------------------------------------------- methods
# Each per-file method takes (path, indices) and returns (frames, frames_decoded):
# frames is a uint8 (n, 112, 112, 3) RGB array in the order asked (the floor returns
# the presentation indices it reached instead), frames_decoded is None when unknown.

Output = tuple[Any, int | None]


def _sorted_targets(indices: Sequence[int]) -> list[int]:
    return sorted(set(indices))


def _resize_rgb_bgr(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)


def opencv_sequential(path: str | Path, indices: Sequence[int]) -> Output:
    """keras-video-generators' way: read every frame up to the last target."""
    import cv2

    wanted = set(indices)
    last = max(wanted)
    kept: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        i = 0
        while i <= last:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                kept[i] = _resize_rgb_bgr(frame)
            i += 1
    finally:
        cap.release()
    missing = wanted.difference(kept)
    if missing:
        raise RuntimeError(f"{path}: OpenCV stopped at frame {i}, before {min(missing)}")
    return np.stack([kept[i] for i in indices]), i


def opencv_seek_estimate(index: DemuxIndex, indices: Sequence[int]) -> int:
    """Frames OpenCV's FFmpeg backend decodes for ``CAP_PROP_POS_FRAMES`` seeks.

    It seeks (always) to 16 frames before the target, lands on the keyframe
    before that, and decodes forward to the target: an estimate, not a count.
    """
    return sum(t - index.keyframe_before(max(t - 16, 0)) + 1 for t in _sorted_targets(indices))


def opencv_seek(path: str | Path, indices: Sequence[int]) -> Output:
    """``CAP_PROP_POS_FRAMES`` + ``read`` for each distinct target, in increasing order."""
    import cv2

    kept: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        for t in _sorted_targets(indices):
            cap.set(cv2.CAP_PROP_POS_FRAMES, t)
            ok, frame = cap.read()
            if not ok:
                raise RuntimeError(f"{path}: OpenCV could not read frame {t} after a seek")
            kept[t] = _resize_rgb_bgr(frame)
    finally:
        cap.release()
    return np.stack([kept[i] for i in indices]), None


def pyav_decode_all(path: str | Path, indices: Sequence[int]) -> Output:
    """Decode every frame from the start to the last target; convert only the targets."""
    import av

    wanted = set(indices)
    last = max(wanted)
    kept: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        stream.thread_type = "AUTO"
        i = 0
        for frame in container.decode(stream):
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24", width=SIZE[0], height=SIZE[1])
            i += 1
            if i > last:
                break
    missing = wanted.difference(kept)
    if missing:
        raise RuntimeError(f"{path}: the stream ended before frame {min(missing)}")
    return np.stack([kept[i] for i in indices]), i


def decord_available() -> str | None:
    """None when decord can be used, else why not."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return "peer not installed (decord / decord2)"
    except Exception as e:  # a broken native library
        return f"decord not importable ({type(e).__name__}: {e})"
    return None


def decord_flavour() -> str:
    """Which package provides ``import decord``: "decord2 3.4.0", "decord 0.6.0"..."""
    for dist in ("decord2", "decord"):
        version = common._version(dist)
        if version:
            return f"{dist} {version}"
    return "decord"


def decord_read(path: str | Path, indices: Sequence[int]) -> Output:
    """decord's VideoReader resizing while decoding, ``get_batch`` of the targets."""
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=SIZE[0], height=SIZE[1])
    try:
        return vr.get_batch(list(indices)).asnumpy(), None
    finally:
        del vr


def torchcodec_available() -> str | None:
    """None when torchcodec can be used (with decoder-side transforms), else why not."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
        from torchcodec.transforms import Resize  # noqa: F401
    except ImportError as e:
        if "torchcodec" in str(getattr(e, "name", "") or e):
            return "peer not installed (torchcodec)"
        return f"torchcodec not importable ({type(e).__name__}: {e})"
    except Exception as e:  # no FFmpeg libraries, a torch mismatch...
        return f"torchcodec not importable ({type(e).__name__}: {e})"
    return None


def torchcodec_read(
    path: str | Path, indices: Sequence[int], *, threads: int = 1, seek_mode: str = "exact"
) -> Output:
    """torchcodec's ``VideoDecoder`` resizing while decoding, ``get_frames_at`` the targets."""
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    decoder = VideoDecoder(
        str(path),
        dimension_order="NHWC",
        num_ffmpeg_threads=threads,
        seek_mode=seek_mode,
        transforms=[Resize((SIZE[1], SIZE[0]))],
    )
    return decoder.get_frames_at(list(indices)).data.numpy(), None


class TorchcodecPool:
    """ "Many files" as a user writes it with torchcodec: one decoder per file on a thread
    pool with one thread per core (torchcodec releases the GIL while decoding)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, requests: list[tuple[Path, list[int]]]) -> list[Output]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bench-torchcodec")
        return list(self._pool.map(lambda r: torchcodec_read(r[0], r[1], threads=1), requests))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block (torchcodec's fair setting: torch's
    default intra-op threads slow its conversions down on a few cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_floor(
    path: str | Path,
    indices: Sequence[int],
    index: DemuxIndex,
    convert: bool = False,
    threads: int = 0,
) -> Output:
    """PyAV decoding only what the targets depend on; nothing converted.

    Targets are grouped by the keyframe that precedes them. For each group:
    one seek to that keyframe, then packets are fed in decode order up to the
    last target's packet, with ``skip_frame="NONREF"`` for every packet that is
    neither a target nor a keyframe (nothing depends on a non-reference frame);
    a final flush drains the decoder's reordering delay without feeding more
    packets. ``threads``: 1 for single-threaded decoding, 0 for FFmpeg's frame
    and slice threads on every core. Returns the presentation indices of the
    targets reached (or, with ``convert``, their RGB frames at 112x112, for
    tests) and the number of frames decoded.
    """
    import av

    groups: dict[int, list[int]] = {}
    for t in _sorted_targets(indices):
        groups.setdefault(index.keyframe_before(t), []).append(t)
    reached: dict[int, Any] = {}
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams[index.stream_index]
        codec = stream.codec_context
        if threads != 1:
            codec.thread_type = "AUTO"
        codec.thread_count = threads

        for key, targets in sorted(groups.items()):
            want = {index.pts[t]: t for t in targets}
            pending = set(want)

            def take(frames: Any, want: dict[int, int] = want) -> None:
                nonlocal decoded
                for frame in frames:
                    decoded += 1
                    t = want.get(frame.pts)
                    if t is not None:
                        reached[t] = (
                            frame.to_ndarray(format="rgb24", width=SIZE[0], height=SIZE[1])
                            if convert
                            else t
                        )

            container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
            for packet in container.demux(stream):
                if packet.size == 0:
                    break
                needed = packet.pts in want or packet.is_keyframe
                codec.skip_frame = "DEFAULT" if needed else "NONREF"
                take(codec.decode(packet))
                pending.discard(packet.pts)
                if not pending:
                    break
            codec.skip_frame = "DEFAULT"
            take(codec.decode(None))
    missing = set(indices).difference(reached)
    if missing:
        raise RuntimeError(f"{path}: the decode floor did not reach frames {sorted(missing)}")
    if convert:
        return np.stack([reached[i] for i in indices]), decoded
    return [reached[i] for i in indices], decoded


class FastvidMethods:
    """fastvid's reader, with a persistent index cache (as a training run would have)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def exact(self, path: str | Path, indices: Sequence[int], mode: str = "exact") -> Output:
        from fastvid.reader import VideoReader

        with VideoReader(path, cache_dir=self.cache_dir) as r:
            frames = r.get_frames(list(indices), size=SIZE, seek_mode=mode)
            return frames, int(r.stats.frames_decoded)

    def warm(self, paths: Sequence[Path]) -> None:
        """Open each file once, untimed: its index goes to the cache."""
        from fastvid.reader import VideoReader

        for p in paths:
            with VideoReader(p, cache_dir=self.cache_dir):
                pass

    def keyframe(self, path: str | Path, indices: Sequence[int]) -> Output:
        return self.exact(path, indices, mode="keyframe")

    def read_clips(self, requests: list[tuple[Path, list[int]]]) -> list[np.ndarray]:
        from fastvid.reader import read_clips

        return read_clips(requests, size=SIZE, cache_dir=self.cache_dir)


def fastvid_available() -> str | None:
    try:
        import fastvid.reader  # noqa: F401
    except Exception as e:
        return f"fastvid.reader not importable ({type(e).__name__}: {e})"
    return None


# --------------------------------------------------------------------------- verification


def _check_frames(
    method: str, outputs: list[Output], requests: list[tuple[Path, list[int]]]
) -> str:
    """Read each synthetic frame's index back; '' when all right, else a short note."""
    from fastvid.synth import frame_indices

    wrong = total = 0
    for (frames, _), (_, expect) in zip(outputs, requests, strict=True):
        if method == "decode floor" and not isinstance(frames, np.ndarray):
            got = list(frames)
        else:
            got = frame_indices(frames)
        total += len(expect)
        wrong += sum(int(g != e) for g, e in zip(got, expect, strict=True))
    return f"WRONG FRAMES {wrong}/{total}" if wrong else ""


def reference_frames(path: str | Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """Frames ``wanted`` of a sequential PyAV decode (the i-th picture decoded is frame i),
    RGB at 112x112: what real-footage frames are checked against."""
    import av

    out: dict[int, np.ndarray] = {}
    last = max(wanted, default=-1)
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24", width=SIZE[0], height=SIZE[1])
            if i >= last:
                break
    return out


# A returned frame is the one asked for when it is at most this far (mean absolute
# difference, grey levels) from the reference frame, and no neighbour is closer by
# more than REAL_MARGIN (libraries resize a little differently; still scenes make
# neighbours alike).
REAL_TOLERANCE = 8.0
REAL_MARGIN = 0.5


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _check_real(
    outputs: list[Output], expect: list[list[int]], refs: list[dict[int, np.ndarray]]
) -> str:
    """Real footage: each returned frame against the reference decode (see REAL_TOLERANCE)."""
    wrong = total = 0
    for (frames, _), want, ref in zip(outputs, expect, refs, strict=True):
        for frame, t in zip(frames, want, strict=True):
            total += 1
            d = {k: _mad(frame, ref[k]) for k in (t - 1, t, t + 1) if k in ref}
            if d[t] > REAL_TOLERANCE or any(v + REAL_MARGIN < d[t] for v in d.values()):
                wrong += 1
    if wrong:
        return f"WRONG FRAMES {wrong}/{total} (vs sequential decode)"
    return ""


def _needed_references(requests: list[list[int]], keyframes: Sequence[int]) -> set[int]:
    """Frames a check may compare with: each target, its nearest keyframe, their neighbours."""
    centres = {t for ts in requests for t in ts}
    centres |= {keyframes[_nearest(keyframes, t)] for t in set(centres)}
    return {k for t in centres for k in (t - 1, t, t + 1) if k >= 0}


# --------------------------------------------------------------------------- suite


def add_arguments(parser: argparse._ActionsContainer) -> None:
    """Options of the decode suite."""
    parser.add_argument(
        "--decode-methods",
        default="all",
        metavar="LIST",
        help="comma-separated methods (exact, keyframe, read_clips, opencv-seq, "
        "opencv-seek, pyav, decord, torchcodec, torchcodec-approx, "
        "torchcodec-keyframes, torchcodec-pool, floor) or all",
    )
    parser.add_argument(
        "--decode-workloads",
        default="all",
        metavar="LIST",
        help=f"comma-separated workloads ({', '.join(WORKLOADS)}) or all",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="do not check the frames each method returned"
    )


def _parse_list(
    text: str, choices: Sequence[str], aliases: dict[str, str] | None = None, what: str = "item"
) -> list[str]:
    if text.strip() == "all":
        return list(choices)
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name = (aliases or {}).get(item, item)
        if name not in choices:
            raise ValueError(f"unknown {what} {item!r}; choose from {', '.join(choices)}")
        out.append(name)
    return out


@dataclass
class _Set:
    """A set of files measured together: the short clips, or the long clip."""

    label: str
    files: list[Path]
    indexes: list[DemuxIndex]
    unit: str  # "clip": times are per file (set total / files); "call": one file
    synthetic: bool  # frames carry their index (fastvid.synth); else checked against PyAV


@dataclass
class _Peers:
    """What is installed, and the objects that live as long as the suite."""

    fv: FastvidMethods | None
    pool: TorchcodecPool
    skip: dict[str, str | None]


def _expected(m: str, requests: list[tuple[Path, list[int]]], s: _Set) -> list[list[int]]:
    """The frames method ``m`` should return: the targets, or (keyframe methods) the
    nearest keyframe of each."""
    if m in ("fastvid keyframe", "torchcodec keyframes"):
        return [
            [ix.keyframes[_nearest(ix.keyframes, t)] for t in i]
            for (_, i), ix in zip(requests, s.indexes, strict=True)
        ]
    return [i for _, i in requests]


def _verify(
    m: str,
    outputs: list[Output],
    requests: list[tuple[Path, list[int]]],
    s: _Set,
    refs: list[dict[int, np.ndarray]] | None,
) -> str:
    """A note when ``m`` returned wrong frames ('' when right or not checkable)."""
    if m == "decode floor":  # returns the indices it reached
        return _check_frames(m, outputs, requests)
    expect = _expected(m, requests, s)
    if s.synthetic:
        if m in ("fastvid keyframe", "torchcodec keyframes"):
            return _check_keyframes(outputs, expect, [set(ix.keyframes) for ix in s.indexes])
        return _check_frames(m, outputs, requests)
    if refs is None:
        return ""
    return _check_real(outputs, expect, refs)


_NOTES = {
    "fastvid keyframe": "returns the nearest keyframes",
    "fastvid read_clips": "whole set in one call (thread pool)",
    "torchcodec approximate": "seek_mode='approximate': no scan on open, exact targets",
    "torchcodec keyframes": "asked for the nearest keyframes (approximate mode)",
    "torchcodec thread pool": "one decoder per file, a thread per core",
}


def _measure_set(
    s: _Set, workloads: list[str], methods: list[str], args: Any, peers: _Peers, bar: Any
) -> list[dict]:
    rows: list[dict] = []
    nfiles = len(s.files)
    if peers.fv is not None:
        peers.fv.warm(s.files)  # index built (and files read) once, untimed, like the floor's
    plan: dict[str, list[tuple[Path, list[int]]]] = {}
    for w in workloads:
        rng = np.random.default_rng(SEED)
        plan[w] = [
            (p, workload_indices(w, ix.num_frames, rng))
            for p, ix in zip(s.files, s.indexes, strict=True)
        ]
    refs: list[dict[int, np.ndarray]] | None = None
    if not s.synthetic and not args.no_verify:
        bar.set_postfix_str(f"{s.label}: reference decode")
        refs = [
            reference_frames(
                p, _needed_references([plan[w][k][1] for w in workloads], ix.keyframes)
            )
            for k, (p, ix) in enumerate(zip(s.files, s.indexes, strict=True))
        ]
    for w in workloads:
        group = f"{s.label}: {WORKLOADS[w]}"
        requests = plan[w]
        returned = sum(len(i) for _, i in requests)
        exact_decoded: int | None = None
        tc_best = 1  # num_ffmpeg_threads of torchcodec's faster setting, once measured
        tc_skip_shown = False  # one skipped row stands for the whole torchcodec family
        for m in methods:
            bar.set_postfix_str(f"{s.label} {w} {m}")
            kw: dict[str, Any] = {"unit": s.unit, "frames_returned": returned}
            if m in SET_METHODS and nfiles < 2 and s.unit == "call":
                bar.update()
                continue  # one file: nothing to pool
            why = peers.skip.get(m)
            if why:
                if not (m in TORCHCODEC and tc_skip_shown):
                    name = "torchcodec" if m in TORCHCODEC else m
                    rows.append(common.Result(SUITE, group, name, skipped=why, **kw).to_dict())
                tc_skip_shown = tc_skip_shown or m in TORCHCODEC
                bar.update()
                continue
            variants = _variants(m, tc_best)
            measured = []
            try:
                with torch_threads(1) if m in TORCHCODEC else contextlib.nullcontext():
                    for label, threads in variants:
                        call = _make_call(m, peers, s, requests, threads)
                        measured.append(
                            (
                                label,
                                threads,
                                common.measure(call, repeats=args.repeats, warmup=args.warmup),
                            )
                        )
            except Exception as e:  # one method failing must not hide the others
                log.warning("%s on %s failed: %s", m, group, e)
                rows.append(common.Result(SUITE, group, m, skipped=f"failed: {e}", **kw).to_dict())
                bar.update()
                continue
            best = min(measured, key=lambda v: v[2].median)
            if m == "torchcodec":
                tc_best = best[1]
            # the floor shows its faster variant only; torchcodec shows both settings
            shown = measured if m == "torchcodec" else [best]
            for label, _threads, timing in shown:
                outputs = timing.value
                decoded, estimated = _decoded(m, outputs, requests, s, exact_decoded)
                if m == "fastvid exact":
                    exact_decoded = decoded
                note = "" if args.no_verify else _verify(m, outputs, requests, s, refs)
                name = m
                if m == "torchcodec":
                    name = f"torchcodec {label}"
                    note = note or ("best setting" if label == best[0] else "")
                elif m == "decode floor":
                    note = note or f"best: {label}"
                elif m == "decord":
                    note = note or decord_flavour()
                else:
                    note = note or _NOTES.get(m, "")
                scale = nfiles if s.unit == "clip" else 1
                extra: dict[str, Any] = {}
                if m == "torchcodec" and label == best[0]:
                    extra["best_setting"] = True
                if m == "decode floor":  # every variant's median (per unit), for the targets
                    extra["variants_s"] = {lb: t.median / scale for lb, _, t in measured}
                rows.append(
                    common.Result(
                        SUITE,
                        group,
                        name,
                        timing.median / scale,
                        timing.best / scale,
                        len(timing.times),
                        frames_decoded=decoded,
                        decoded_estimated=estimated,
                        reference=(m == "fastvid exact"),
                        note=note,
                        extra=extra,
                        **kw,
                    ).to_dict()
                )
            bar.update()
    return rows


def _variants(m: str, tc_best: int) -> list[tuple[str, int | None]]:
    """(label, threads) settings to time ``m`` at."""
    if m == "decode floor":  # which one wins depends on picture size, codec and cores
        return [("1 thread", 1), ("FFmpeg threads", 0)]
    if m == "torchcodec":
        return list(TORCHCODEC_SETTINGS)
    if m in ("torchcodec approximate", "torchcodec keyframes"):
        return [(f"num_ffmpeg_threads={tc_best}", tc_best)]
    return [("", None)]


def _nearest(keyframes: Sequence[int], t: int) -> int:
    """Position in ``keyframes`` of the keyframe nearest to ``t`` (ties: the earlier)."""
    k = bisect.bisect_left(keyframes, t)
    if k == 0:
        return 0
    if k == len(keyframes):
        return k - 1
    return k if keyframes[k] - t < t - keyframes[k - 1] else k - 1


def _check_keyframes(
    outputs: list[Output], expect: list[list[int]], keyframes: list[set[int]]
) -> str:
    """Keyframe mode: every returned frame must be a keyframe; say if not the nearest."""
    from fastvid.synth import frame_indices

    not_key = not_nearest = total = 0
    for (frames, _), want, keys in zip(outputs, expect, keyframes, strict=True):
        got = frame_indices(frames)
        total += len(got)
        not_key += sum(int(g not in keys) for g in got)
        not_nearest += sum(int(g != w) for g, w in zip(got, want, strict=True))
    if not_key:
        return f"WRONG FRAMES {not_key}/{total} are not keyframes"
    return f"{not_nearest}/{total} not the nearest keyframe" if not_nearest else ""


def _make_call(
    m: str,
    peers: _Peers,
    s: _Set,
    requests: list[tuple[Path, list[int]]],
    threads: int | None = None,
) -> Callable[[], list[Output]]:
    """One timed unit of work: method ``m`` over every request of the set."""
    fv = peers.fv
    if m == "fastvid read_clips":
        assert fv is not None
        return lambda: [(a, None) for a in fv.read_clips(requests)]
    if m == "torchcodec thread pool":
        return lambda: peers.pool(requests)
    if m == "torchcodec keyframes":
        keys = _expected(m, requests, s)
        t = 1 if threads is None else threads
        return lambda: [
            torchcodec_read(p, k, threads=t, seek_mode="approximate")
            for (p, _), k in zip(requests, keys, strict=True)
        ]
    fn = _per_file_method(m, fv, threads)
    return lambda: [fn(p, i, ix) for (p, i), ix in zip(requests, s.indexes, strict=True)]


def _per_file_method(
    m: str, fv: FastvidMethods | None, threads: int | None = None
) -> Callable[..., Output]:
    t = 0 if threads is None else threads
    if m == "fastvid exact":
        assert fv is not None
        return lambda p, i, ix: fv.exact(p, i)
    if m == "fastvid keyframe":
        assert fv is not None
        return lambda p, i, ix: fv.keyframe(p, i)
    if m == "opencv sequential":
        return lambda p, i, ix: opencv_sequential(p, i)
    if m == "opencv seek":
        return lambda p, i, ix: opencv_seek(p, i)
    if m == "pyav decode-all":
        return lambda p, i, ix: pyav_decode_all(p, i)
    if m == "decord":
        return lambda p, i, ix: decord_read(p, i)
    if m == "torchcodec":
        return lambda p, i, ix: torchcodec_read(p, i, threads=t)
    if m == "torchcodec approximate":
        return lambda p, i, ix: torchcodec_read(p, i, threads=t, seek_mode="approximate")
    if m == "decode floor":
        return lambda p, i, ix: decode_floor(p, i, ix, threads=t)
    raise ValueError(f"{m} is not a per-file method")


def _decoded(
    m: str,
    outputs: list[Output],
    requests: list[tuple[Path, list[int]]],
    s: _Set,
    exact_decoded: int | None,
) -> tuple[int | None, bool]:
    """Frames decoded by the last timed call, and whether the number is an estimate."""
    if m == "opencv seek":
        return sum(
            opencv_seek_estimate(ix, i) for (_, i), ix in zip(requests, s.indexes, strict=True)
        ), True
    if m == "fastvid read_clips":
        # same reader code as `fastvid exact`, which counts; read_clips does not report
        return exact_decoded, True
    counts = [d for _, d in outputs]
    if any(d is None for d in counts):
        return None, False
    return sum(counts), False


# --------------------------------------------------------------------------- targets


def _best_torchcodec(rows: list[dict], group: str) -> dict | None:
    timed = [
        r
        for r in rows
        if r.get("kind") == "result"
        and r.get("group") == group
        and str(r.get("method", "")).startswith("torchcodec num_ffmpeg_threads")
        and r.get("median_s") is not None
    ]
    return min(timed, key=lambda r: r["median_s"], default=None)


def _ratio(slow: dict | None, fast: dict | None) -> float | None:
    if slow is None or fast is None or not fast.get("median_s"):
        return None
    return slow["median_s"] / fast["median_s"]


def _target(
    name: str,
    measured: float | None,
    required: float,
    detail: str,
    comparison: str = ">=",
    peer_missing: str | None = None,
) -> dict:
    """A target row; ``peer_missing`` (why a peer is absent) replaces a verdict."""
    unavailable = ""
    if measured is None and peer_missing:
        unavailable = "peer not installed" if "not installed" in peer_missing else peer_missing
    return common.Target(SUITE, name, measured, required, comparison, detail, unavailable).to_dict()


def _targets(
    rows: list[dict],
    short_label: str | None,
    long_label: str | None,
    skip: dict[str, str | None],
    cores: int,
) -> list[dict]:
    """The issue's goals, measured on the ``uniform16`` workload."""
    out = []
    uni = WORKLOADS["uniform16"]
    tc_missing = skip.get("torchcodec")
    detail = "16 uniform frames @112x112"
    if short_label:
        g = f"{short_label}: {uni}"
        find = {m: common.find(rows, group=g, method=m) for m in METHODS}
        read_clips, floor = find["fastvid read_clips"], find["decode floor"]
        out.append(
            _target(
                f"{short_label}: read_clips vs OpenCV sequential (x faster)",
                _ratio(find["opencv sequential"], read_clips),
                1.4,
                f"{detail}, whole set",
            )
        )
        out.append(
            _target(
                f"{short_label}: read_clips vs torchcodec thread pool (x faster)",
                _ratio(find["torchcodec thread pool"], read_clips),
                1.5,
                f"{detail}, whole set",
                peer_missing=tc_missing,
            )
        )
        per_core = None
        if read_clips is not None and floor is not None:
            # the work of one decoder spread over the cores: the single-threaded floor
            single = floor.get("extra", {}).get("variants_s", {}).get("1 thread")
            single = single or floor["median_s"]
            per_core = read_clips["median_s"] / (single / cores)
        out.append(
            _target(
                f"{short_label}: read_clips / (decode floor / {cores} cores)",
                per_core,
                1.15,
                f"time ratio, {detail}, floor on 1 thread",
                comparison="<=",
            )
        )
        out.append(
            _target(
                f"{short_label}: VideoReader one file at a time / decode floor",
                _ratio(find["fastvid exact"], floor),
                1.10,
                f"time ratio, {detail}",
                comparison="<=",
            )
        )
    if long_label:
        g = f"{long_label}: {uni}"
        find = {m: common.find(rows, group=g, method=m) for m in METHODS}
        exact = find["fastvid exact"]
        out.append(
            _target(
                f"{long_label}: exact vs OpenCV seek (x faster)",
                _ratio(find["opencv seek"], exact),
                1.5,
                detail,
            )
        )
        tc = _best_torchcodec(rows, g)
        tc_detail = detail + (f", torchcodec {tc['method'].split(' ', 1)[1]}" if tc else "")
        out.append(
            _target(
                f"{long_label}: exact vs torchcodec's best setting (x faster)",
                _ratio(tc, exact),
                2.0,
                tc_detail,
                peer_missing=tc_missing,
            )
        )
        out.append(
            _target(
                f"{long_label}: exact vs decord (x faster)",
                _ratio(find["decord"], exact),
                2.0,
                detail,
                peer_missing=skip.get("decord"),
            )
        )
        out.append(
            _target(
                f"{long_label}: keyframe vs exact (x faster)",
                _ratio(exact, find["fastvid keyframe"]),
                15.0,
                detail,
            )
        )
    return out


# --------------------------------------------------------------------------- run


def run(args: Any) -> list[dict]:
    """Measure every method on every workload; rows for the table, then targets."""
    methods = _parse_list(getattr(args, "decode_methods", "all"), METHODS, _ALIASES, "method")
    workloads = _parse_list(
        getattr(args, "decode_workloads", "all"), list(WORKLOADS), what="workload"
    )
    given = bool(getattr(args, "files", None))
    real = not given and footage.footage_choice(args).folder is not None
    sets: list[_Set] = []
    notes: list[str] = []
    short = footage.short_clips(args)
    real = real and not getattr(args, "footage_fallback", None)
    if short:
        short_label = "given files" if given else "short clips"
        spec = common.QUICK_SHORT_SPEC if args.quick else common.SHORT_SPEC
        origin = "cut from real footage" if real else "synthetic"
        desc = f"{len(short)} files" if given else f"{len(short)} clips {origin}, {spec.describe()}"
        sets.append(
            _Set(
                short_label,
                short,
                [demux_index(p) for p in short],
                "clip",
                synthetic=not given and not real,
            )
        )
        notes.append(f"{short_label}: {desc}")
    long = footage.long_clip(args)
    real = real and not getattr(args, "footage_fallback", None)
    long_label = None
    if long is not None:
        own = getattr(args, "long", None) is not None
        ix = demux_index(long)
        long_label = "long clip"
        sets.append(_Set(long_label, [long], [ix], "call", synthetic=not own and not real))
        origin = "your file" if own else ("cut from real footage" if real else "synthetic")
        notes.append(
            f"{long_label}: {long.name} ({origin}): {ix.num_frames} frames, "
            f"{len(ix.keyframes)} keyframes"
        )
    rows: list[dict] = [{"kind": "note", "suite": SUITE, "text": n} for n in notes]
    if any(m.startswith("decord") for m in methods) and decord_available() is None:
        rows.append({"kind": "note", "suite": SUITE, "text": f"decord: {decord_flavour()}"})
    tc_why = torchcodec_available() if any(m in TORCHCODEC for m in methods) else None
    if any(m in TORCHCODEC for m in methods) and tc_why is None:
        rows.append(
            {
                "kind": "note",
                "suite": SUITE,
                "text": f"torchcodec {common._version('torchcodec')} (torch "
                f"{common._version('torch')}): decoder-side Resize, NHWC, "
                f"torch.set_num_threads(1) while timing",
            }
        )
    cores = common.usable_cores()
    skip = {
        "decord": decord_available(),
        **dict.fromkeys(TORCHCODEC, tc_why),
        **dict.fromkeys(
            ("fastvid exact", "fastvid keyframe", "fastvid read_clips"), fastvid_available()
        ),
    }
    with tempfile.TemporaryDirectory(prefix="fastvid-bench-index-") as cache:
        peers = _Peers(
            FastvidMethods(Path(cache)) if fastvid_available() is None else None,
            TorchcodecPool(cores),
            skip,
        )
        try:
            total = sum(len(workloads) * len(methods) for _ in sets)
            with common.progress(total=total, desc="decode", unit="method") as bar:
                for s in sets:
                    rows.extend(_measure_set(s, workloads, methods, args, peers, bar))
        finally:
            peers.pool.close()
    rows.extend(
        _targets(
            rows,
            sets[0].label if sets and sets[0].unit == "clip" else None,
            long_label,
            skip,
            cores,
        )
    )
    return rows

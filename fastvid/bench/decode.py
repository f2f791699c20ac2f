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
- ``decord`` when importable (never a dependency of fastvid);
- ``decode floor``: PyAV decoding only what the targets depend on (from each target's
  keyframe to its packet, non-reference non-target frames skipped), converting
  nothing. Written here from a demux-only index, independent of fastvid's reader.

Timings include opening each file. Indices (the container index) are built
once, outside the timing, for fastvid (its cache) and the floor; OpenCV and
decord build theirs when they open a file, as they always do.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastvid.bench import common
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
    "decode floor",
)
# short names for --decode-methods
_ALIASES = {"exact": "fastvid exact", "keyframe": "fastvid keyframe",
            "read_clips": "fastvid read_clips", "opencv-seq": "opencv sequential",
            "opencv-seek": "opencv seek", "pyav": "pyav decode-all", "decord": "decord",
            "floor": "decode floor"}


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

    return cv2.cvtColor(cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR),
                        cv2.COLOR_BGR2RGB)


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
    except Exception as e:  # ImportError, or a broken native library
        return f"decord not importable ({type(e).__name__})"
    return None


def decord_read(path: str | Path, indices: Sequence[int]) -> Output:
    """decord's VideoReader resizing while decoding, ``get_batch`` of the targets."""
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=SIZE[0], height=SIZE[1])
    try:
        return vr.get_batch(list(indices)).asnumpy(), None
    finally:
        del vr


def decode_floor(path: str | Path, indices: Sequence[int], index: DemuxIndex,
                 convert: bool = False, threads: int = 0) -> Output:
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
                        reached[t] = frame.to_ndarray(
                            format="rgb24", width=SIZE[0], height=SIZE[1]) if convert else t

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

    @staticmethod
    def read_clips(requests: list[tuple[Path, list[int]]]) -> list[np.ndarray]:
        from fastvid.reader import read_clips

        return read_clips(requests, size=SIZE)


def fastvid_available() -> str | None:
    try:
        import fastvid.reader  # noqa: F401
    except Exception as e:
        return f"fastvid.reader not importable ({type(e).__name__}: {e})"
    return None


# --------------------------------------------------------------------------- verification


def _check_frames(method: str, outputs: list[Output],
                  requests: list[tuple[Path, list[int]]]) -> str:
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


# --------------------------------------------------------------------------- suite


def add_arguments(parser: argparse._ActionsContainer) -> None:
    """Options of the decode suite."""
    parser.add_argument("--decode-methods", default="all", metavar="LIST",
                        help="comma-separated methods (exact, keyframe, read_clips, opencv-seq, "
                             "opencv-seek, pyav, decord, floor) or all")
    parser.add_argument("--decode-workloads", default="all", metavar="LIST",
                        help=f"comma-separated workloads ({', '.join(WORKLOADS)}) or all")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check that synthetic frames carry the requested indices")


def _parse_list(text: str, choices: Sequence[str], aliases: dict[str, str] | None = None,
                what: str = "item") -> list[str]:
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
    synthetic: bool


def _measure_set(s: _Set, workloads: list[str], methods: list[str], args: Any,
                 fv: FastvidMethods | None, bar: Any) -> list[dict]:
    rows: list[dict] = []
    skip_reason = {
        "decord": decord_available(),
        **dict.fromkeys(("fastvid exact", "fastvid keyframe", "fastvid read_clips"),
                        fastvid_available()),
    }
    nfiles = len(s.files)
    if fv is not None:
        fv.warm(s.files)  # index built (and files read) once, untimed, like the floor's
    for w in workloads:
        group = f"{s.label}: {WORKLOADS[w]}"
        rng = np.random.default_rng(SEED)
        requests = [(p, workload_indices(w, ix.num_frames, rng))
                    for p, ix in zip(s.files, s.indexes, strict=True)]
        returned = sum(len(i) for _, i in requests)
        exact_decoded: int | None = None
        for m in methods:
            bar.set_postfix_str(f"{s.label} {w} {m}")
            kw: dict[str, Any] = {"unit": s.unit, "frames_returned": returned}
            if m == "fastvid read_clips" and nfiles < 2 and s.unit == "call":
                bar.update()
                continue  # one file: read_clips is fastvid exact plus a pool
            if skip_reason.get(m):
                rows.append(common.Result(SUITE, group, m, skipped=skip_reason[m], **kw).to_dict())
                bar.update()
                continue
            # the floor is the faster of single-threaded and FFmpeg-threaded decoding:
            # which one wins depends on picture size, codec and cores
            variants = ([("1 thread", 1), ("FFmpeg threads", 0)] if m == "decode floor"
                        else [("", None)])
            try:
                measured = [(label, common.measure(_make_call(m, fv, s, requests, threads),
                                                   repeats=args.repeats, warmup=args.warmup))
                            for label, threads in variants]
                variant, timing = min(measured, key=lambda lt: lt[1].median)
            except Exception as e:  # one method failing must not hide the others
                log.warning("%s on %s failed: %s", m, group, e)
                rows.append(common.Result(SUITE, group, m, skipped=f"failed: {e}", **kw)
                            .to_dict())
                bar.update()
                continue
            outputs = timing.value
            decoded, estimated = _decoded(m, outputs, requests, s, exact_decoded)
            if m == "fastvid exact":
                exact_decoded = decoded
            note = ""
            if s.synthetic and not args.no_verify:
                expect = None
                if m == "fastvid keyframe":
                    expect = [[ix.keyframes[_nearest(ix.keyframes, t)] for t in i]
                              for (_, i), ix in zip(requests, s.indexes, strict=True)]
                    note = _check_keyframes(outputs, expect,
                                            [set(ix.keyframes) for ix in s.indexes])
                else:
                    note = _check_frames(m, outputs, requests)
            if m == "fastvid keyframe":
                note = note or "returns the nearest keyframes"
            if m == "fastvid read_clips":
                note = note or "whole set in one call (thread pool)"
            if m == "decode floor":
                note = note or f"best: {variant}"
            scale = nfiles if s.unit == "clip" else 1
            rows.append(common.Result(
                SUITE, group, m, timing.median / scale, timing.best / scale, len(timing.times),
                frames_decoded=decoded, decoded_estimated=estimated,
                reference=(m == "fastvid exact"), note=note, **kw).to_dict())
            bar.update()
    return rows


def _nearest(keyframes: Sequence[int], t: int) -> int:
    """Position in ``keyframes`` of the keyframe nearest to ``t`` (ties: the earlier)."""
    k = bisect.bisect_left(keyframes, t)
    if k == 0:
        return 0
    if k == len(keyframes):
        return k - 1
    return k if keyframes[k] - t < t - keyframes[k - 1] else k - 1


def _check_keyframes(outputs: list[Output], expect: list[list[int]],
                     keyframes: list[set[int]]) -> str:
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


def _make_call(m: str, fv: FastvidMethods | None, s: _Set,
               requests: list[tuple[Path, list[int]]],
               threads: int | None = None) -> Callable[[], list[Output]]:
    """One timed unit of work: method ``m`` over every request of the set."""
    if m == "fastvid read_clips":
        assert fv is not None
        return lambda: [(a, None) for a in fv.read_clips(requests)]
    fn = _per_file_method(m, fv, threads)
    return lambda: [fn(p, i, ix) for (p, i), ix in zip(requests, s.indexes, strict=True)]


def _per_file_method(m: str, fv: FastvidMethods | None,
                     threads: int | None = None) -> Callable[..., Output]:
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
    if m == "decode floor":
        return lambda p, i, ix: decode_floor(p, i, ix, threads=0 if threads is None else threads)
    return lambda p, i, ix: (_ for _ in ()).throw(ValueError(m))  # read_clips: not per file


def _decoded(m: str, outputs: list[Output], requests: list[tuple[Path, list[int]]], s: _Set,
             exact_decoded: int | None) -> tuple[int | None, bool]:
    """Frames decoded by the last timed call, and whether the number is an estimate."""
    if m == "opencv seek":
        return sum(opencv_seek_estimate(ix, i)
                   for (_, i), ix in zip(requests, s.indexes, strict=True)), True
    if m == "fastvid read_clips":
        # same reader code as `fastvid exact`, which counts; read_clips does not report
        return exact_decoded, True
    counts = [d for _, d in outputs]
    if any(d is None for d in counts):
        return None, False
    return sum(counts), False


def _targets(rows: list[dict], short_label: str | None, long_label: str | None) -> list[dict]:
    out = []
    uni = WORKLOADS["uniform16"]
    if short_label:
        g = f"{short_label}: {uni}"
        out.append(common.Target(
            SUITE, f"{short_label}: read_clips vs OpenCV sequential (x faster)",
            common.speedup(rows, g, "opencv sequential", "fastvid read_clips"), 1.4,
            detail="16 uniform frames @112x112, whole set").to_dict())
        out.append(common.Target(
            SUITE, f"{short_label}: VideoReader one file at a time / decode floor",
            common.speedup(rows, g, "fastvid exact", "decode floor"), 1.15, comparison="<=",
            detail="time ratio, 16 uniform frames @112x112").to_dict())
    if long_label:
        g = f"{long_label}: {uni}"
        out.append(common.Target(
            SUITE, f"{long_label}: exact vs OpenCV seek (x faster)",
            common.speedup(rows, g, "opencv seek", "fastvid exact"), 1.5,
            detail="16 uniform frames @112x112").to_dict())
        out.append(common.Target(
            SUITE, f"{long_label}: exact vs decord (x faster)",
            common.speedup(rows, g, "decord", "fastvid exact"), 1.2,
            detail="16 uniform frames @112x112").to_dict())
        out.append(common.Target(
            SUITE, f"{long_label}: keyframe vs exact (x faster)",
            common.speedup(rows, g, "fastvid exact", "fastvid keyframe"), 10.0,
            detail="16 uniform frames @112x112").to_dict())
    return out


def run(args: Any) -> list[dict]:
    """Measure every method on every workload; rows for the table, then targets."""
    methods = _parse_list(getattr(args, "decode_methods", "all"), METHODS, _ALIASES, "method")
    workloads = _parse_list(getattr(args, "decode_workloads", "all"), list(WORKLOADS),
                            what="workload")
    given = bool(getattr(args, "files", None))
    sets: list[_Set] = []
    short = common.short_clips(args)
    if short:
        short_label = "given files" if given else "short clips"
        spec = common.QUICK_SHORT_SPEC if args.quick else common.SHORT_SPEC
        desc = f"{len(short)} files" if given else f"{len(short)} clips, {spec.describe()}"
        sets.append(_Set(short_label, short, [demux_index(p) for p in short], "clip", not given))
    long = common.long_clip(args)
    long_label = None
    if long is not None:
        synthetic = getattr(args, "long", None) is None
        ix = demux_index(long)
        long_label = "long clip"
        sets.append(_Set(long_label, [long], [ix], "call", synthetic))
        desc_long = f"{long.name}: {ix.num_frames} frames, {len(ix.keyframes)} keyframes"
    rows: list[dict] = []
    for s in sets:
        what = desc if s.unit == "clip" else desc_long
        rows.append({"kind": "note", "suite": SUITE, "text": f"{s.label}: {what}"})
    with tempfile.TemporaryDirectory(prefix="fastvid-bench-index-") as cache:
        fv = FastvidMethods(Path(cache)) if fastvid_available() is None else None
        total = sum(len(workloads) * len(methods) for _ in sets)
        with common.progress(total=total, desc="decode", unit="method") as bar:
            for s in sets:
                rows.extend(_measure_set(s, workloads, methods, args, fv, bar))
    rows.extend(_targets(rows, sets[0].label if sets and sets[0].unit == "clip" else None,
                         long_label))
    return rows

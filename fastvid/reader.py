"""Seek-aware decoding with PyAV: exactly the frames asked for, decoding as little as possible.

Frame ``i`` of a video is the ``i``-th picture a plain sequential decode of the
chosen stream outputs (FFmpeg's "best" video stream unless told otherwise).
For a request, the targets are grouped by the keyframe each one needs decoding
from; each group is reached with one seek (or by demuxing forward when it is
close), the packets between the keyframe and the targets are decoded without
being converted, and packets that are neither targets nor references are not
decoded at all (``skip_frame="NONREF"``; B-frames in most streams).

Nothing is taken on trust: every packet after a seek must be the one the index
holds (timestamp, size, byte offset), and every picture must be one the index
expects, in the order it expects (:mod:`fastvid._walk`). When the file's
timestamps turn out to lie, the reader decodes it once to number its frames as
a sequential decode does (:mod:`fastvid.index`) and answers from that; when a
seek cannot be trusted, it decodes from the start; when even that cannot give a
frame, it raises :class:`fastvid.CorruptVideoError`.

Threading: a :class:`VideoReader` serves one thread at a time (calls from
several threads are serialised by a lock, never run concurrently); open one
reader per thread to decode in parallel. PyAV releases the GIL while
decoding, so :func:`read_clips` decodes the videos of a batch on a thread pool,
and one call whose targets fall into several keyframe groups decodes the groups
on several decoders at once (each walking its groups as above, every picture
checked the same way).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from fastvid import _convert, _runtime
from fastvid import index as _index
from fastvid._demux import Demuxer, Desync, Source
from fastvid._indexer import Indexer
from fastvid._walk import Anomaly, decode_parts, decode_targets, split_groups
from fastvid.errors import CorruptVideoError, VideoError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

Color = Literal["rgb", "bgr", "gray", "yuv420p"]
SeekMode = Literal["exact", "keyframe"]
COLORS = _convert.COLORS
INDEX_CACHE_ENV = _runtime.ENV_INDEX_CACHE  # default cache_dir of every reader

# Decode one call's keyframe groups on several decoders only when the work is this large
# (pixels x packets to decode): below it, opening more decoders costs more than it saves.
PARALLEL_MIN_WORK = 40_000_000
SEEK_MODES = ("exact", "keyframe")


@dataclass(frozen=True)
class VideoMetadata:
    """What a reader knows about its stream, computed once when it opens.

    ``num_frames`` is exact (what a sequential decode gives; counted from the
    packets, never the header). ``fps`` is the stream's nominal rate (derived
    from the timestamps when the container gives none) and ``duration`` the
    span of the frames' timestamps plus one frame, in seconds.
    ``keyframe_indices`` are frame indices. ``width`` and ``height`` are the
    frames' size as returned: upright (the stream's display matrix applied)
    unless the reader was opened with ``apply_rotation=False``;
    ``coded_width`` and ``coded_height`` are the pictures' size as coded.
    ``rotation`` is the display rotation in degrees, counter-clockwise, as
    stored in the file, and ``mirrored`` whether the display matrix also
    mirrors the picture. ``stream_index`` is the index of the stream in the
    container.
    """

    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    keyframe_indices: tuple[int, ...]
    rotation: int = 0
    stream_index: int = 0
    coded_width: int = 0
    coded_height: int = 0
    mirrored: bool = False


@dataclass
class DecodeStats:
    """Counters, cumulative over a reader's calls (``reset()`` zeroes them).

    ``frames_decoded`` counts pictures the decoder output (references between
    a keyframe and a target included; skipped non-reference packets are not);
    ``frames_converted`` counts colour conversions (one per distinct frame
    returned); ``seeks`` counts demuxer seeks (reopening the file counts as one).
    """

    frames_decoded: int = 0
    frames_converted: int = 0
    seeks: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Reindexed(Exception):
    """The index was rebuilt by decoding: frame numbers may have changed, ask again."""


class VideoReader:
    """Random access to the frames of one video stream.

    ``source``: the file's path, its ``bytes``, or a binary file object (an open
    file, ``io.BytesIO``): the same frames as from the path; ``path`` then names
    it (``"<N bytes>"`` for data in memory). ``stream``: index of a video stream in the container
    (``None``: FFmpeg's best video stream, e.g. the 480x270 one of a file that
    has two). ``cache_dir``: a directory where the packet index is stored,
    keyed by path, size and mtime, so re-opening the file later skips the scan
    (an in-process cache already spares it within one run); when None, the
    environment variable ``FASTVID_INDEX_CACHE`` names it, so the generators,
    ``fastvid convert`` and ``read_clips`` persist their indexes too. ``threads``:
    FFmpeg decoding threads (frame and slice threading); ``None`` picks one
    thread for pictures smaller than 640x360 (threading costs more than it
    gains there) and FFmpeg's automatic frame threading otherwise; ``0`` always
    asks for the latter.

    ``decoders``: decoders working on one call at once. A call whose targets fall
    into several keyframe groups decodes them on up to this many decoders in
    parallel (one thread each), when the work is large enough to pay for it.
    ``None``: one per core, except inside :func:`read_clips`' pool (which
    already decodes several files at once); 1: one decoder, as ever.

    ``apply_rotation``: return frames upright, as players show them, applying
    the stream's display matrix (quarter turns and mirroring; ``metadata``
    ``width``/``height`` are then the shown size); False returns them as coded.

    ``verify``: decode the whole stream once when indexing (kept in the index
    caches like any index) and keep a checksum of every frame; every frame
    returned is then bit-identical to a sequential decode, even in a damaged
    file whose damage neither the demuxer nor the decoder reports (which the
    default, demux-only index cannot see until a request decodes it). Costs
    one full decode per file.

    Raises a :class:`fastvid.VideoError` subclass naming the file when it is
    missing (:class:`~fastvid.VideoNotFoundError`), not a media file
    (:class:`~fastvid.NotAMediaFileError`), has no such video stream
    (:class:`~fastvid.NoVideoStreamError`) or no decoder for its codec
    (:class:`~fastvid.UnsupportedCodecError`).
    """

    def __init__(
        self,
        source: PathLike | bytes | Any,
        stream: int | None = None,
        *,
        cache_dir: PathLike | None = None,
        threads: int | None = None,
        verify: bool = False,
        apply_rotation: bool = True,
        decoders: int | None = None,
    ) -> None:
        if decoders is not None and (not isinstance(decoders, int) or decoders < 1):
            raise ValueError(f"decoders must be a positive integer or None. Received: {decoders!r}")
        source = Source(source)
        self._source = source
        self._decoders = decoders
        self._parts: list[Demuxer] = []  # the extra decoders of parallel calls, kept open
        self.path = source.path
        self.stats = DecodeStats()
        self.last_indices: list[int] = []
        self.last_timestamps: list[float] = []
        self._lock = threading.Lock()
        self._closed = False
        self._apply_rotation = bool(apply_rotation)
        self._decoded_pts: list[Any] = []  # pts of every picture decoded by the last call
        self._fallbacks = 0  # times a verified path (decoding from the start) answered
        self._pid = os.getpid()
        self._demux = Demuxer(source, stream, threads, self.stats)
        try:
            self._stream_index = self._demux.stream_index
            if cache_dir is None:
                cache_dir = _runtime.settings().index_cache_dir
            self._indexer = Indexer(self._demux, cache_dir, bool(verify))
            self._use_index(self._indexer.load())
        except BaseException:
            self.close()
            raise
        _runtime.reset_after_fork(self)

    def _after_fork(self) -> None:
        # the file descriptor is shared with the parent: reopen before reading
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ index

    def _use_index(self, idx: _index.PacketIndex) -> None:
        self._index = self._demux.index = idx
        if idx.mode != _index.MODE_PTS:
            # decode as the sequential decode that numbered the frames did: hiding damage
            # as players do, and on one thread for a damaged file (FFmpeg's frame threads
            # may treat damaged data differently)
            self._demux.configure(strict=False, threads=1 if idx.damaged.any() else None)
        self.metadata = _metadata(idx, self._demux.stream, self._stream_index, self._apply_rotation)
        turns, mirrored = (idx.probe.get("turns", 0), idx.probe.get("mirrored", False))
        if not self._apply_rotation:
            turns, mirrored = 0, False
        self._converter = _convert.Converter(self.path, turns, mirrored)

    # ------------------------------------------------------------------ public API

    def __len__(self) -> int:
        return self.metadata.num_frames

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} frames"
        return f"VideoReader({self.path!r}, stream={self._stream_index}, {state})"

    def close(self) -> None:
        """Release the file and the decoder; idempotent. Waits for a call in progress."""
        with self._lock:
            self._closed = True
            self._demux.close()
            self._close_parts()

    def _close_parts(self) -> None:
        for demux in self._parts:
            demux.close()
        self._parts = []

    def get_frames(
        self,
        indices: Sequence[int] | np.ndarray,
        *,
        size: tuple[int, int] | None = None,
        color: Color = "rgb",
        seek_mode: SeekMode = "exact",
    ) -> np.ndarray:
        """Frames ``indices`` (any order, duplicates allowed, negative from the end).

        Returns uint8 ``(len(indices), H, W, 3)`` for ``color`` "rgb" or "bgr",
        ``(…, H, W, 1)`` for "gray" (luma, full range) and ``(…, H*3//2, W)``
        I420 for "yuv420p" (even ``W`` and ``H`` required), in the order asked.
        ``size=(height, width)`` resizes during the colour conversion (one
        swscale pass: area averaging when shrinking, bilinear otherwise).

        ``seek_mode="exact"`` returns exactly the frames asked for;
        ``"keyframe"`` decodes keyframes only and returns, for each index, the
        nearest keyframe (ties go to the earlier one). :attr:`last_indices`
        holds the frame indices actually returned.

        Raises ``IndexError`` for an index out of range, ``ValueError`` for bad
        arguments and :class:`fastvid.CorruptVideoError` when a frame cannot be
        decoded (truncated or corrupt file).
        """
        out_spec = _convert.output_spec(size, color, (self.metadata.width, self.metadata.height))
        if seek_mode not in SEEK_MODES:
            raise ValueError(f"seek_mode must be one of {SEEK_MODES}, got {seek_mode!r}")
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: reader is closed")
            if os.getpid() != self._pid:  # a forked child: its own file descriptor
                self._pid = os.getpid()
                self._demux.reopen()
                self._close_parts()
            promised = self.metadata.num_frames
            try:
                return self._get(indices, out_spec, seek_mode)
            except _Reindexed:
                try:
                    return self._get(indices, out_spec, seek_mode)
                except IndexError as exc:
                    why = str(exc).removeprefix(f"{self.path}: ")
                    raise CorruptVideoError(
                        self.path,
                        f"{why}; its packets promised {promised} frames, decoding it gives "
                        f"{self.metadata.num_frames}",
                    ) from None

    def get_frames_at_times(
        self,
        seconds: Sequence[float] | np.ndarray,
        *,
        size: tuple[int, int] | None = None,
        color: Color = "rgb",
    ) -> np.ndarray:
        """The frames shown at ``seconds`` (stream time, as :attr:`last_timestamps` gives it).

        The frame shown at ``t`` is the last one whose timestamp is not after ``t``
        (variable frame rates included). Times before the first frame or from the
        end of the last one on raise ``IndexError`` naming the valid range.
        :attr:`last_indices` and :attr:`last_timestamps` say which frames came back.
        Other arguments as :meth:`get_frames`.
        """
        times = self._index.frame_seconds(self.metadata.fps)
        want = np.asarray(seconds, dtype=np.float64).reshape(-1)
        if times.size == 0:
            raise IndexError(f"{self.path}: the video has no frames")
        last = times[-1] + (1.0 / self.metadata.fps if self.metadata.fps else 0.0)
        bad = (want < times[0]) | (want >= max(last, np.nextafter(times[-1], np.inf)))
        if bad.any():
            raise IndexError(
                f"{self.path}: time {float(want[bad][0])!r} s is outside the video, which "
                f"shows frames from {times[0]:.6g} s to {last:.6g} s"
            )
        indices = np.searchsorted(times, want, side="right") - 1
        return self.get_frames(indices, size=size, color=color)

    def _get(self, indices: Any, out_spec: _convert.Output, seek_mode: str) -> np.ndarray:
        wanted = _normalize(indices, self.metadata.num_frames, self.path)
        if seek_mode == "keyframe":
            wanted = _snap_to_keyframes(wanted, self.metadata.keyframe_indices, self.path)
        out = np.empty((len(wanted), *out_spec.shape), np.uint8)
        slots: dict[int, list[int]] = {}
        for k, i in enumerate(wanted):
            slots.setdefault(i, []).append(k)
        converted: set[int] = set()

        def sink(i: int, frame: Any) -> None:  # called from the parallel decoders' threads too
            first, *rest = slots[i]
            out[first] = self._converter.convert(frame, out_spec)
            converted.add(i)  # a verified retry converts a frame again: count it once
            for k in rest:
                out[k] = out[first]

        self._decoded_pts = []
        if slots:
            try:
                self._decode(sorted(slots), sink, keyframes_only=seek_mode == "keyframe")
            except BaseException:
                self._demux.forget_position()  # interrupted mid-walk: start clean next time
                raise
            finally:
                self.stats.frames_converted += len(converted)
        self.last_indices = list(wanted)
        times = self._index.frame_seconds(self.metadata.fps)
        self.last_timestamps = [float(times[i]) for i in wanted]
        return out

    # ------------------------------------------------------------------ decoding

    def _decode(self, targets: list[int], sink: Any, *, keyframes_only: bool) -> None:
        try:
            rest = self._decode_in_parts(targets, sink, keyframes_only)
            if rest:
                self._fallbacks += decode_targets(
                    self._demux, rest, sink, self._decoded_pts, keyframes_only=keyframes_only
                )
        except Anomaly as exc:
            if self._index.mode != _index.MODE_PTS:
                raise CorruptVideoError(
                    self.path, f"decoding from the start disagrees with its own index: {exc}"
                ) from exc
            # timestamps that lie: number the frames by decoding, and the call starts over
            self._use_index(self._indexer.rebuild(self._index, str(exc)))
            self._demux.forget_position()
            raise _Reindexed from exc

    def _decoder_count(self) -> int:
        if self._decoders is not None:
            return self._decoders
        if _runtime.on_pool_thread("read") or _runtime.on_pool_thread("gop"):
            return 1  # the pool already keeps the cores busy with other files
        return min(8, _runtime.default_threads())

    def _decode_in_parts(self, targets: list[int], sink: Any, keyframes_only: bool) -> list[int]:
        """Decode the targets' keyframe groups on several decoders at once, when that pays;
        the targets left for the one-decoder path (all of them when it does not pay, or
        when a part found the index wrong: that path then says how)."""
        count, idx = self._decoder_count(), self._index
        if count < 2 or idx.mode != _index.MODE_PTS or not self._demux.strict:
            return targets  # damaged or renumbered files: the one path that handles them
        pixels = self.metadata.coded_width * self.metadata.coded_height
        if pixels * idx.num_packets < PARALLEL_MIN_WORK:
            return targets  # even decoding the whole file would not pay (short clips)
        parts, work = split_groups(idx, targets, keyframes_only, count)
        if len(parts) < 2 or work * pixels < PARALLEL_MIN_WORK:
            return targets
        while len(self._parts) < len(parts):  # one thread each: the parts share the cores
            demux = Demuxer(self._source, self._stream_index, 1, DecodeStats())
            self._parts.append(demux)
        demuxers = self._parts[: len(parts)]
        for demux in demuxers:
            demux.index = idx
        try:
            done, _ = decode_parts(
                demuxers,
                parts,
                sink,
                self._decoded_pts,
                keyframes_only=keyframes_only,
                executor=_runtime.pool("gop", count),
            )
        except (Anomaly, Desync) as exc:
            log.debug("%s: a parallel part failed (%s); decoding on one decoder", self.path, exc)
            return targets
        finally:
            for demux in demuxers:
                self.stats.frames_decoded += demux.stats.frames_decoded
                self.stats.seeks += demux.stats.seeks
                demux.stats.reset()
        return sorted(set(targets) - done)  # frames not produced, or not matching checksums


# ---------------------------------------------------------------------- requests


def _normalize(indices: Sequence[int] | np.ndarray, n: int, path: str) -> list[int]:
    """Frame indices as non-negative ints, or IndexError/TypeError saying what is wrong."""
    if isinstance(indices, int | np.integer):
        raise TypeError("indices must be a sequence of frame indices, not a single int")
    arr = np.asarray(indices)
    if arr.size == 0:
        return []
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"indices must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
    bad = (arr < -n) | (arr >= n)
    if bad.any():
        first = int(arr[bad][0])
        valid = f"valid indices are {-n}..{n - 1}" if n else "the video has no frames"
        raise IndexError(f"{path}: frame index {first} out of range ({n} frames; {valid})")
    return np.where(arr < 0, arr + n, arr).astype(np.int64).tolist()


def _snap_to_keyframes(wanted: list[int], keyframes: Sequence[int], path: str) -> list[int]:
    """Each index replaced by the nearest keyframe (ties go to the earlier one)."""
    keys = np.asarray(keyframes, np.int64)
    if keys.size == 0:
        log.warning("%s: no keyframes known; keyframe mode returns exact frames", path)
        return wanted
    arr = np.asarray(wanted, np.int64)
    right = np.clip(np.searchsorted(keys, arr), 0, keys.size - 1)
    left = np.clip(right - 1, 0, keys.size - 1)
    use_left = np.abs(arr - keys[left]) <= np.abs(keys[right] - arr)
    return np.where(use_left, keys[left], keys[right]).tolist()


def _metadata(
    idx: _index.PacketIndex, stream: Any, stream_index: int, apply_rotation: bool
) -> VideoMetadata:
    """What :attr:`VideoReader.metadata` says of a stream, from its index."""
    cc = stream.codec_context
    n = idx.num_frames
    rate = stream.average_rate or stream.guessed_rate
    span = 0.0
    if idx.mode != _index.MODE_ORDINAL and n >= 2:
        fpts = np.sort(idx.frame_pts())
        span = float((int(fpts[-1]) - int(fpts[0])) * idx.time_base)
    fps = float(rate) if rate else (n - 1) / span if span > 0 else 0.0
    if span > 0:
        duration = span + (1.0 / fps if fps else 0.0)
    else:
        duration = n / fps if fps else 0.0
    probe = idx.probe
    coded = (int(probe.get("width") or cc.width or 0), int(probe.get("height") or cc.height or 0))
    shown = coded[::-1] if apply_rotation and probe.get("turns", 0) % 2 else coded
    return VideoMetadata(
        num_frames=n,
        fps=fps,
        duration=duration,
        width=shown[0],
        height=shown[1],
        codec=cc.name,
        pix_fmt=str(probe.get("pix_fmt") or cc.pix_fmt or ""),
        keyframe_indices=idx.keyframe_indices(),
        rotation=int(probe.get("rotation") or 0),
        stream_index=stream_index,
        coded_width=coded[0],
        coded_height=coded[1],
        mirrored=bool(probe.get("mirrored", False)),
    )


# ---------------------------------------------------------------------- batches


def default_workers() -> int:
    """Threads :func:`read_clips` uses by default: one per core (PyAV decodes without the GIL)."""
    return min(32, _runtime.default_threads())


def _read_one(
    path: PathLike,
    indices: Sequence[int],
    size: Any,
    color: Color,
    seek_mode: SeekMode,
    threads: int | None,
    cache_dir: PathLike | None,
    verify: bool,
) -> np.ndarray:
    with VideoReader(path, cache_dir=cache_dir, threads=threads, verify=verify) as reader:
        return reader.get_frames(indices, size=size, color=color, seek_mode=seek_mode)


def read_clips(
    requests: Iterable[tuple[PathLike, Sequence[int]] | tuple[PathLike, Sequence[int], Any]],
    *,
    size: tuple[int, int] | None = None,
    color: Color = "rgb",
    seek_mode: SeekMode = "exact",
    workers: int | None = None,
    cache_dir: PathLike | None = None,
    verify: bool = False,
) -> list[np.ndarray]:
    """Decode ``(path, indices)`` requests on a thread pool; arrays in request order.

    Each request opens its own :class:`VideoReader` (one reader per thread) and
    returns what ``get_frames(indices, size=, color=, seek_mode=)`` returns; a
    request ``(path, indices, size)`` has a size of its own.
    ``workers``: threads (default: one per core; 1 decodes in the calling
    thread). ``verify``: as :class:`VideoReader`'s. The pool is created once
    per worker count and reused. The first
    failing request (in request order) raises, after all requests finished: a
    :class:`VideoError` naming its file, or ``IndexError`` (also naming it) for
    an index out of range. Any other exception is not the file's fault and
    propagates as it is.
    """
    reqs = [(r[0], r[1], r[2] if len(r) > 2 else size) for r in requests]
    if not reqs:
        return []
    setting = default_workers() if workers is None else max(1, int(workers))
    n_workers = min(setting, len(reqs))
    # with several videos in flight, FFmpeg threads inside each only oversubscribe the cores
    threads = 1 if n_workers > 1 else None
    args = (color, seek_mode, threads, cache_dir, verify)
    if n_workers == 1:
        return [_read_one(p, idx, sz, *args) for p, idx, sz in reqs]
    # keyed by the count asked for, not by this call's request count: one pool per setting
    pool = _runtime.pool("read", setting)
    futures = [pool.submit(_read_one, p, idx, sz, *args) for p, idx, sz in reqs]
    results: list[np.ndarray] = []
    error: BaseException | None = None
    for fut in futures:
        try:
            results.append(fut.result())
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
    return results


__all__ = [
    "COLORS",
    "SEEK_MODES",
    "DecodeStats",
    "VideoError",
    "VideoMetadata",
    "VideoReader",
    "default_workers",
    "read_clips",
]

"""Seek-aware decoding with PyAV: exactly the frames asked for, decoding as little as possible.

Frame ``i`` of a video is the ``i``-th picture in presentation order of the
chosen stream (FFmpeg's "best" video stream unless told otherwise). For a
request, the targets are grouped by the keyframe each one needs decoding
from; each group is reached with one seek (or by demuxing forward when it is
close), the packets between the keyframe and the targets are decoded without
being converted, and packets that are neither targets nor references are not
decoded at all (``skip_frame="NONREF"``; B-frames in most streams). Every
returned picture is identified by its timestamp after decoding, so a frame of
the wrong index is never returned: when something does not add up (a demuxer
that lands elsewhere than its index says, a damaged file) the reader falls
back to decoding from the start of the file, and raises :class:`VideoError`
when even that cannot produce a frame.

Threading: a :class:`VideoReader` serves one thread at a time (calls from
several threads are serialised by a lock, never run concurrently); open one
reader per thread to decode in parallel. PyAV releases the GIL while
decoding, so :func:`read_clips` decodes the videos of a batch on a thread pool.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from fastvid import index as _index
from fastvid.errors import VideoError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

COLORS = ("rgb", "bgr", "gray", "yuv420p")
INDEX_CACHE_ENV = "FASTVID_INDEX_CACHE"  # default cache_dir of every reader
SEEK_MODES = ("exact", "keyframe")

_SWS_FORMAT = {"rgb": "rgb24", "bgr": "bgr24", "gray": "gray", "yuv420p": "yuv420p"}

# Up to this many packets ahead, demux forward instead of seeking. Measured with the
# file in the page cache: a seek costs about as much as reading 1-3 packets in
# MP4/MKV/Ogg/AVI and ~20 in an MP4 with six interleaved streams.
_READ_AHEAD = 8

# Decoders seen to apply skip_frame="NONREF" to the very packet submitted, pixel-exact
# (tests prove it). Others get every packet between keyframe and target decoded: an
# external library with internal queues (libdav1d) applies the switch late and loses
# targets; still correct (frames are checked by pts and decoded again), but slower.
_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})

# Below this many pixels per picture FFmpeg's threads cost more than they save
# (measured on 2 cores: 320x240 mpeg4 decodes faster on one thread).
_THREADING_MIN_PIXELS = 640 * 360


@dataclass(frozen=True)
class VideoMetadata:
    """What a reader knows about its stream, computed once when it opens.

    ``num_frames`` is exact (counted from the packets, never the header).
    ``fps`` is the stream's nominal rate (derived from the timestamps when the
    container gives none) and ``duration`` the span of the frames' timestamps
    plus one frame, in seconds. ``keyframe_indices`` are frame indices (in
    presentation order). ``rotation`` is the display rotation in degrees,
    counter-clockwise, as stored in the file; frames are returned as coded,
    not rotated. ``stream_index`` is the index of the stream in the container.
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


@dataclass(frozen=True)
class _Output:
    width: int
    height: int
    color: str

    @property
    def shape(self) -> tuple[int, ...]:
        if self.color == "yuv420p":
            return (self.height * 3 // 2, self.width)
        return (self.height, self.width, 1 if self.color == "gray" else 3)


class _Desync(Exception):
    """The demuxer did not give the packet the index says comes next."""


class VideoReader:
    """Random access to the frames of one video stream.

    ``path``: the file. ``stream``: index of a video stream in the container
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

    Raises :class:`fastvid.VideoError` (an ``OSError``) naming the file when it
    is missing, not a media file, or has no video stream.
    """

    def __init__(
        self,
        path: PathLike,
        stream: int | None = None,
        *,
        cache_dir: PathLike | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.stats = DecodeStats()
        self.last_indices: list[int] = []
        self._lock = threading.Lock()
        self._container: Any = None
        self._closed = False
        self._reformatter = VideoReformatter()
        self._decoded_pts: list[Any] = []  # pts of every picture decoded by the last call
        self._skip = "DEFAULT"
        # demuxer state: the iterator over our stream's packets and the decode
        # position of the next packet it yields (None: unknown, seek first)
        self._packets: Any = None
        self._pending: Any = None
        self._next_pos: int | None = None
        self._seek_by = "pts"
        self._fallbacks = 0  # times the seek path failed and a decode from the start ran

        if not os.path.exists(self.path):
            raise VideoError(self.path, "file not found")
        if os.path.isdir(self.path):
            raise VideoError(self.path, "is a directory, not a video file")
        self._container = self._open_container()
        try:
            self._stream = self._select_stream(stream)
            self._stream_index = self._stream.index
            self._threads = self._thread_count(threads)
            self._configure_decoder()
            if cache_dir is None:
                cache_dir = os.environ.get(INDEX_CACHE_ENV) or None
            self._index = self._load_index(cache_dir)
            self.metadata = self._make_metadata()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _open_container(self):
        try:
            return av.open(self.path, metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise VideoError(
                self.path, f"cannot open: not a media file, or a damaged/truncated one ({reason})"
            ) from exc

    def _select_stream(self, stream: int | None):
        streams = self._container.streams
        videos = [s for s in streams.video]
        if not videos:
            kinds = ", ".join(f"{s.index}: {s.type}" for s in streams) or "none"
            raise VideoError(self.path, f"no video stream (streams: {kinds})")
        if stream is None:
            return streams.best("video") or videos[0]
        choices = [s.index for s in videos]
        if not 0 <= stream < len(streams) or streams[stream].type != "video":
            raise VideoError(
                self.path, f"stream {stream} is not a video stream; video streams: {choices}"
            )
        return streams[stream]

    def _thread_count(self, threads: int | None) -> int:
        if threads is not None:
            if threads < 0:
                raise ValueError(f"threads must be >= 0, got {threads}")
            return threads
        cc = self._stream.codec_context
        return 0 if (cc.width or 0) * (cc.height or 0) >= _THREADING_MIN_PIXELS else 1

    def _configure_decoder(self) -> None:
        cc = self._stream.codec_context
        if self._threads == 1:
            cc.thread_count = 1
        else:
            cc.thread_type = "AUTO"  # frame threading across pictures, slices within one
            cc.thread_count = self._threads
        self._skip = cc.skip_frame

    def _reopen(self) -> None:
        """A fresh demuxer and decoder at the start of the file (the robust rewind)."""
        old = self._container
        self._container = self._open_container()
        try:
            old.close()
        except Exception:  # closing a damaged container must not mask the real work
            pass
        self._stream = self._container.streams[self._stream_index]
        self._configure_decoder()
        self._start_packets(0)
        self.stats.seeks += 1

    # ------------------------------------------------------------------ index

    def _load_index(self, cache_dir: PathLike | None) -> _index.PacketIndex:
        key = _index.cache_key(self.path, self._stream_index)
        idx = _index.memory_cache.get(key)
        if idx is None and cache_dir is not None:
            idx = _index.load_cached(cache_dir, key)
        if idx is not None:
            self._start_packets(0)  # fresh container: the demuxer is at the first packet
            _index.memory_cache.put(key, idx)
            return idx
        idx = _index.build_index(
            self._container, self._stream, probe=self._probe, decode_all=self._decode_all
        )
        _index.memory_cache.put(key, idx)
        if cache_dir is not None:
            _index.store_cached(cache_dir, key, idx)
        return idx

    def _probe(self, packet) -> dict[str, Any]:
        """Decode one keyframe packet: the real picture size, format and rotation."""
        cc = self._stream.codec_context
        frames: list[Any] = []
        try:
            frames = list(cc.decode(packet)) + list(cc.decode(None))
        except av.error.FFmpegError as exc:
            log.debug("%s: probe decode failed: %s", self.path, exc)
        finally:
            cc.flush_buffers()
        if not frames:
            return {}
        return _frame_facts(frames[0])

    def _decode_all(self) -> tuple[list[bool], dict[str, Any]]:
        """Ordinal indexing: decode the whole stream once, noting which pictures are key."""
        keys: list[bool] = []
        facts: dict[str, Any] = {}
        with av.open(self.path, metadata_errors="ignore") as container:
            stream = container.streams[self._stream_index]
            try:
                for frame in container.decode(stream):
                    if not facts:
                        facts = _frame_facts(frame)
                    keys.append(bool(frame.key_frame))
            except av.error.FFmpegError as exc:
                log.warning("%s: decoding stopped early: %s", self.path, exc)
        return keys, facts

    def _make_metadata(self) -> VideoMetadata:
        idx, stream = self._index, self._stream
        cc = stream.codec_context
        n = idx.num_frames
        rate = stream.average_rate or stream.guessed_rate
        span = 0.0
        if idx.mode == _index.MODE_PTS and n >= 2:
            fpts = idx.frame_pts()
            span = float((int(fpts[-1]) - int(fpts[0])) * idx.time_base)
        if rate:
            fps = float(rate)
        elif span > 0:
            fps = (n - 1) / span
        else:
            fps = 0.0
        if span > 0:
            duration = span + (1.0 / fps if fps else 0.0)
        else:
            duration = n / fps if fps else 0.0
        probe = idx.probe
        return VideoMetadata(
            num_frames=n,
            fps=fps,
            duration=duration,
            width=int(probe.get("width") or cc.width or 0),
            height=int(probe.get("height") or cc.height or 0),
            codec=cc.name,
            pix_fmt=str(probe.get("pix_fmt") or cc.pix_fmt or ""),
            keyframe_indices=idx.keyframe_indices(),
            rotation=int(probe.get("rotation") or 0),
            stream_index=self._stream_index,
        )

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
            self._packets = self._pending = None
            if self._container is not None:
                try:
                    self._container.close()
                except Exception:
                    pass
                self._container = None

    def get_frames(
        self,
        indices: Sequence[int] | np.ndarray,
        *,
        size: tuple[int, int] | None = None,
        color: str = "rgb",
        seek_mode: str = "exact",
    ) -> np.ndarray:
        """Frames ``indices`` (any order, duplicates allowed, negative from the end).

        Returns uint8 ``(len(indices), H, W, 3)`` for ``color`` "rgb" or "bgr",
        ``(…, H, W, 1)`` for "gray" (luma, full range) and ``(…, H*3//2, W)``
        I420 for "yuv420p" (even ``W`` and ``H`` required), in the order asked.
        ``size=(width, height)`` resizes during the colour conversion (one
        swscale pass: area averaging when shrinking, bilinear otherwise).

        ``seek_mode="exact"`` returns exactly the frames asked for;
        ``"keyframe"`` decodes keyframes only and returns, for each index, the
        nearest keyframe (ties go to the earlier one). :attr:`last_indices`
        holds the frame indices actually returned.

        Raises ``IndexError`` for an index out of range, ``ValueError`` for bad
        arguments and :class:`VideoError` when a frame cannot be decoded
        (truncated or corrupt file).
        """
        out_spec = self._output_spec(size, color)
        if seek_mode not in SEEK_MODES:
            raise ValueError(f"seek_mode must be one of {SEEK_MODES}, got {seek_mode!r}")
        wanted = self._normalize(indices)
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: reader is closed")
            if seek_mode == "keyframe":
                wanted = self._snap_to_keyframes(wanted)
            out = np.empty((len(wanted), *out_spec.shape), np.uint8)
            slots: dict[int, list[int]] = {}
            for k, i in enumerate(wanted):
                slots.setdefault(i, []).append(k)

            def sink(i: int, frame) -> None:
                first, *rest = slots[i]
                out[first] = self._convert(frame, out_spec)
                self.stats.frames_converted += 1
                for k in rest:
                    out[k] = out[first]

            self._decoded_pts = []
            if slots:
                try:
                    self._decode(sorted(slots), sink, keyframes_only=seek_mode == "keyframe")
                except BaseException:
                    self._forget_position()  # interrupted mid-walk: start clean next time
                    raise
            self.last_indices = list(wanted)
        return out

    # ------------------------------------------------------------------ requests

    def _output_spec(self, size: tuple[int, int] | None, color: str) -> _Output:
        if color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {color!r}")
        if size is None:
            width, height = self.metadata.width, self.metadata.height
        else:
            try:
                width, height = (int(v) for v in size)
            except (TypeError, ValueError):
                raise ValueError(f"size must be (width, height), got {size!r}") from None
            if width <= 0 or height <= 0:
                raise ValueError(f"size must be positive, got {size!r}")
        if color == "yuv420p" and (width % 2 or height % 2):
            raise ValueError(
                f"yuv420p output needs an even width and height, got {width}x{height}; pass size="
            )
        return _Output(width, height, color)

    def _normalize(self, indices: Sequence[int] | np.ndarray) -> list[int]:
        if isinstance(indices, int | np.integer):
            raise TypeError("indices must be a sequence of frame indices, not a single int")
        arr = np.asarray(indices)
        if arr.size == 0:
            return []
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                f"indices must be a 1-D sequence of integers, got {arr.dtype} {arr.shape}"
            )
        n = self.metadata.num_frames
        bad = (arr < -n) | (arr >= n)
        if bad.any():
            first = int(arr[bad][0])
            valid = f"valid indices are {-n}..{n - 1}" if n else "the video has no frames"
            raise IndexError(f"{self.path}: frame index {first} out of range ({n} frames; {valid})")
        return np.where(arr < 0, arr + n, arr).astype(np.int64).tolist()

    def _snap_to_keyframes(self, wanted: list[int]) -> list[int]:
        keys = np.asarray(self.metadata.keyframe_indices, np.int64)
        if keys.size == 0:
            log.warning("%s: no keyframes known; keyframe mode returns exact frames", self.path)
            return wanted
        arr = np.asarray(wanted, np.int64)
        right = np.clip(np.searchsorted(keys, arr), 0, keys.size - 1)
        left = np.clip(right - 1, 0, keys.size - 1)
        use_left = np.abs(arr - keys[left]) <= np.abs(keys[right] - arr)
        return np.where(use_left, keys[left], keys[right]).tolist()

    def _convert(self, frame, spec: _Output) -> np.ndarray:
        shrink = spec.width < frame.width and spec.height < frame.height
        converted = self._reformatter.reformat(
            frame,
            width=spec.width,
            height=spec.height,
            format=_SWS_FORMAT[spec.color],
            interpolation="AREA" if shrink else "BILINEAR",
            threads=1,  # parallelism comes from decoding threads and read_clips' pool
        )
        arr = converted.to_ndarray()
        return arr[..., None] if spec.color == "gray" else arr

    # ------------------------------------------------------------------ decoding

    def _decode(
        self, targets: list[int], sink: Callable[[int, Any], None], *, keyframes_only: bool
    ) -> None:
        if self._index.mode == _index.MODE_ORDINAL:
            self._decode_ordinal(targets, sink)
            return
        done: set[int] = set()
        try:
            self._walk(targets, sink, done, keyframes_only)
        except _Desync as exc:
            log.warning("%s: %s; decoding from the start instead", self.path, exc)
            self._next_pos = None
        missing = [t for t in targets if t not in done]
        if missing:
            log.warning(
                "%s: %d frame(s) not produced by seeking (first: %d); decoding from the start",
                self.path,
                len(missing),
                missing[0],
            )
            self._fallbacks += 1
            self._reopen()
            try:
                self._walk_from_start(missing, sink, done)
            except _Desync as exc:
                log.warning("%s: %s", self.path, exc)
                self._next_pos = None
            missing = [t for t in targets if t not in done]
        if missing:
            raise VideoError(self.path, self._missing_reason(missing))

    def _missing_reason(self, missing: list[int]) -> str:
        shown = ", ".join(str(m) for m in missing[:8]) + (" ..." if len(missing) > 8 else "")
        why = "the file is truncated or corrupt"
        if self._index.truncated:
            why = "the file is truncated (reading stopped before its end)"
        return f"cannot decode frame(s) {shown} of {self.metadata.num_frames}: {why}"

    def _on_frames(self, frames, pts_to_frame: dict, done: set[int], sink) -> None:
        for frame in frames:
            self.stats.frames_decoded += 1
            self._decoded_pts.append(frame.pts)
            t = pts_to_frame.get(frame.pts)
            if t is not None and t not in done:
                sink(t, frame)
                done.add(t)

    def _walk(self, targets: list[int], sink, done: set[int], keyframes_only: bool) -> None:
        """Decode the targets group by group, each from the keyframe it depends on."""
        idx = self._index
        tpos = idx.frame_pkt[np.asarray(targets, np.int64)].tolist()
        pts_to_frame = {int(idx.pts[p]): t for t, p in zip(targets, tpos, strict=True)}
        target_pos = set(tpos)
        # intervals of decode positions [start, end]; overlapping or adjacent ones merge,
        # so no packet is decoded twice in one call
        if keyframes_only:
            # only the keyframe packets themselves reach the decoder: stronger than
            # skip_frame="NONKEY", which would still have every packet read and submitted
            intervals = [[p, p] for p in sorted(target_pos)]
        else:
            intervals = []
            for start, p in sorted((idx.anchor(p), p) for p in target_pos):
                if intervals and start <= intervals[-1][1] + 1:
                    intervals[-1][1] = max(intervals[-1][1], p)
                else:
                    intervals.append([start, p])
        nonref = self._stream.codec_context.name in _NONREF_CODECS
        fed = False  # packets sent since the decoder was last drained
        for start, end in intervals:
            if fed and self._needs_seek(start):
                # a seek flushes the decoder: collect the pictures it still holds first
                self._on_frames(self._drain(), pts_to_frame, done, sink)
                fed = False
            self._position_at(start)
            for p in range(start, end + 1):
                packet = self._take(p)
                if nonref and not keyframes_only and p not in target_pos:
                    self._set_skip("NONREF")
                else:
                    self._set_skip("DEFAULT")
                self._on_frames(self._decode_packet(packet), pts_to_frame, done, sink)
                fed = True
            if not keyframes_only:
                # the next group starts at another keyframe after a gap: end this one here
                self._on_frames(self._drain(), pts_to_frame, done, sink)
                fed = False
        if fed:
            self._on_frames(self._drain(), pts_to_frame, done, sink)

    def _walk_from_start(self, targets: list[int], sink, done: set[int]) -> None:
        """The fallback: a plain sequential decode from the first packet, nothing skipped."""
        idx = self._index
        tpos = idx.frame_pkt[np.asarray(targets, np.int64)]
        pts_to_frame = {int(idx.pts[p]): t for t, p in zip(targets, tpos.tolist(), strict=True)}
        self._set_skip("DEFAULT")
        try:
            for p in range(int(tpos.max()) + 1):
                self._on_frames(self._decode_packet(self._take(p)), pts_to_frame, done, sink)
        finally:
            self._on_frames(self._drain(), pts_to_frame, done, sink)

    def _decode_ordinal(self, targets: list[int], sink) -> None:
        """Files without timestamps: frame i is the i-th picture out of the decoder."""
        self._reopen()
        wanted = set(targets)
        last = max(targets)
        ordinal = 0
        self._set_skip("DEFAULT")

        def take(frames) -> None:
            nonlocal ordinal
            for frame in frames:
                self.stats.frames_decoded += 1
                self._decoded_pts.append(frame.pts)
                if ordinal in wanted:
                    sink(ordinal, frame)
                    wanted.discard(ordinal)
                ordinal += 1

        try:
            for packet in self._container.demux(self._stream):
                if packet.size:
                    take(self._decode_packet(packet))
                if ordinal > last:
                    break
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("%s: reading stopped: %s", self.path, exc)
        if wanted:
            take(self._drain())
        self._next_pos = None  # the demuxer is mid-file; the next call reopens anyway
        if wanted:
            raise VideoError(self.path, self._missing_reason(sorted(wanted)))

    def _set_skip(self, mode: str) -> None:
        if mode != self._skip:
            # read by the decoder when each packet is submitted, frame threads included
            self._stream.codec_context.skip_frame = mode
            self._skip = mode

    def _decode_packet(self, packet) -> list[Any]:
        try:
            return self._stream.codec_context.decode(packet)
        except av.error.FFmpegError as exc:  # damaged data: later pictures may still decode
            log.debug("%s: decode error at pts %s: %s", self.path, packet.pts, exc)
            return []

    def _drain(self) -> list[Any]:
        """The pictures still inside the decoder; leaves it ready for a new keyframe."""
        cc = self._stream.codec_context
        try:
            return cc.decode(None)
        except av.error.FFmpegError as exc:
            log.debug("%s: drain error: %s", self.path, exc)
            return []
        finally:
            cc.flush_buffers()

    # ------------------------------------------------------------------ demuxing

    def _start_packets(self, position: int) -> None:
        self._packets = self._iter_packets()
        self._pending = None
        self._next_pos = position

    def _iter_packets(self):
        for packet in self._container.demux(self._stream):
            if packet.size:  # skip end-of-stream markers: sending one would drain the decoder
                yield packet

    def _forget_position(self) -> None:
        self._packets = self._pending = self._next_pos = None
        try:
            self._stream.codec_context.flush_buffers()
        except Exception:  # a closed or broken decoder: the next call reopens or seeks
            pass

    def _needs_seek(self, position: int) -> bool:
        nxt = self._next_pos
        return self._packets is None or nxt is None or not nxt <= position <= nxt + _READ_AHEAD

    def _position_at(self, position: int) -> None:
        """Make ``position`` the next packet the demuxer yields."""
        if self._needs_seek(position):
            self._seek(position)
        while self._next_pos < position:
            self._take(self._next_pos)  # demuxed, not decoded

    def _take(self, position: int):
        """The packet at decode ``position``, which must be the next one."""
        if position != self._next_pos:
            raise _Desync(f"expected to read packet {self._next_pos}, not {position}")
        packet, self._pending = self._pending, None
        try:
            if packet is None:
                packet = next(self._packets, None)
        except (av.error.FFmpegError, OSError) as exc:
            raise _Desync(f"reading packet {position} failed: {exc}") from exc
        if packet is None:
            raise _Desync(f"the file ended before packet {position}")
        if packet.pts != int(self._index.pts[position]):
            expected = self._index.pts[position]
            raise _Desync(f"packet {position} has pts {packet.pts}, the index says {expected}")
        self._next_pos = position + 1
        return packet

    def _seek(self, position: int) -> None:
        """Seek so that the demuxer is at or before ``position`` (a keyframe or 0)."""
        idx = self._index
        pos_of_pts = idx.position_of_pts()
        for _ in range(2):
            pts = int(idx.pts[position])
            dts = int(idx.dts[position])
            if self._seek_by == "pts" or dts == _index.NO_TS:
                ts = pts
            else:
                ts = min(pts, dts)
            try:
                self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                log.debug("%s: seek to %d failed: %s", self.path, ts, exc)
                break
            self.stats.seeks += 1
            self._start_packets(-1)
            try:
                first = next(self._packets, None)
            except (av.error.FFmpegError, OSError):
                first = None
            landed = pos_of_pts.get(first.pts) if first is not None else None
            if landed is not None and landed <= position:
                self._pending, self._next_pos = first, landed
                return
            if self._seek_by == "dts":
                break
            # some demuxers (MPEG-TS) seek by decode time and land after the keyframe
            log.debug(
                "%s: seeking by pts landed at %s, not <= %d; seeking by dts from now on",
                self.path,
                landed,
                position,
            )
            self._seek_by = "dts"
        self._reopen()


def _frame_facts(frame) -> dict[str, Any]:
    try:
        rotation = int(frame.rotation)
    except Exception:
        rotation = 0
    return {
        "width": int(frame.width),
        "height": int(frame.height),
        "pix_fmt": frame.format.name,
        "rotation": rotation,
    }


# ---------------------------------------------------------------------- batches

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def default_workers() -> int:
    """Threads :func:`read_clips` uses by default: one per core (PyAV decodes without the GIL)."""
    return max(1, min(32, os.cpu_count() or 1))


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastvid-read")
            _POOLS[workers] = pool
        return pool


def _read_one(
    path: PathLike,
    indices: Sequence[int],
    size,
    color: str,
    seek_mode: str,
    threads: int | None,
    cache_dir: PathLike | None,
) -> np.ndarray:
    try:
        with VideoReader(path, cache_dir=cache_dir, threads=threads) as reader:
            return reader.get_frames(indices, size=size, color=color, seek_mode=seek_mode)
    except (VideoError, IndexError, ValueError, TypeError):
        raise
    except Exception as exc:  # anything else from a damaged file still names it
        raise VideoError(os.fspath(path), f"{type(exc).__name__}: {exc}") from exc


def read_clips(
    requests: Iterable[tuple[PathLike, Sequence[int]]],
    *,
    size: tuple[int, int] | None = None,
    color: str = "rgb",
    seek_mode: str = "exact",
    workers: int | None = None,
    cache_dir: PathLike | None = None,
) -> list[np.ndarray]:
    """Decode ``(path, indices)`` requests on a thread pool; arrays in request order.

    Each request opens its own :class:`VideoReader` (one reader per thread) and
    returns what ``get_frames(indices, size=, color=, seek_mode=)`` returns.
    ``workers``: threads (default: one per core; 1 decodes in the calling
    thread). The pool is created once per worker count and reused. The first
    failing request (in request order) raises, after all requests finished:
    :class:`VideoError` naming its file, or ``IndexError`` (also naming it) for
    an index out of range.
    """
    reqs = [(p, idx) for p, idx in requests]
    if not reqs:
        return []
    n_workers = default_workers() if workers is None else int(workers)
    n_workers = max(1, min(n_workers, len(reqs)))
    # with several videos in flight, FFmpeg threads inside each only oversubscribe the cores
    threads = 1 if n_workers > 1 else None
    args = (size, color, seek_mode, threads, cache_dir)
    if n_workers == 1:
        return [_read_one(p, idx, *args) for p, idx in reqs]
    # keyed by the count asked for, not by this call's request count: one pool per setting
    pool = _pool(default_workers() if workers is None else int(workers))
    futures = [pool.submit(_read_one, p, idx, *args) for p, idx in reqs]
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

"""One open video stream, positioned by decode position, every packet checked against the index.

:class:`Demuxer` owns a PyAV container and its decoder. It opens the file
(turning every way that can fail into a typed :class:`fastvid.VideoError`),
picks the stream, and hands out packets by their position in decode order:
reading forward when the next packet is near, seeking otherwise. Each packet
it hands out is checked against the index (timestamp, size and byte offset),
so a demuxer that lands somewhere else after a seek, or numbers the packets of
a damaged file differently from the scan, raises :class:`Desync` instead of
feeding the decoder the wrong data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import av

from fastvid import index as _index
from fastvid.errors import (
    NotAMediaFileError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoNotFoundError,
)

log = logging.getLogger(__name__)

# Up to this many packets ahead, demux forward instead of seeking. Measured with the
# file in the page cache: a seek costs about as much as reading 1-3 packets in
# MP4/MKV/Ogg/AVI and ~20 in an MP4 with six interleaved streams.
READ_AHEAD = 8

# Below this many pixels per picture FFmpeg's threads cost more than they save
# (measured on 2 cores: 320x240 mpeg4 decodes faster on one thread).
THREADING_MIN_PIXELS = 640 * 360

# Decoders seen to apply skip_frame="NONREF" to the very packet submitted, pixel-exact
# (tests prove it). Others get every packet between keyframe and target decoded: an
# external library with internal queues (libdav1d) applies the switch late and loses
# targets; still correct (pictures are checked), but slower.
NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})


class Desync(Exception):
    """The demuxer did not give the packet the index says comes next."""


class Source:
    """Where a video's bytes are: a path, or bytes in memory.

    ``source`` is a path, ``bytes`` (or a ``bytearray``/``memoryview``), or a
    binary file object: one with the name of a file on disk reads that file
    (the same frames as from the path); any other (``io.BytesIO``, a socket
    stream) is read into memory once, from its start when it can seek.
    ``path`` names the source in messages and errors.
    """

    def __init__(self, source: Any) -> None:
        self.data: bytes | None = None
        if isinstance(source, str | os.PathLike):
            self.path = os.fspath(source)
            return
        if isinstance(source, bytes | bytearray | memoryview):
            self.data = bytes(source)
        elif callable(getattr(source, "read", None)):
            name = getattr(source, "name", None)
            if isinstance(name, str) and os.path.isfile(name):
                self.path = name
                return
            if callable(getattr(source, "seek", None)) and getattr(source, "seekable", bool)():
                source.seek(0)
            self.data = bytes(source.read())
        else:
            raise TypeError(
                "a video source is a path, bytes or a binary file object. "
                f"Received: {source!r:.80} of type {type(source).__name__}"
            )
        self.path = f"<{len(self.data)} bytes>"

    def open(self) -> Any:
        """``av.open`` with every failure turned into a :class:`fastvid.VideoError`."""
        if self.data is None:
            if not os.path.exists(self.path):
                raise VideoNotFoundError(self.path)
            if os.path.isdir(self.path):
                raise NotAMediaFileError(self.path, "is a directory, not a video file")
        target = self.path if self.data is None else io.BytesIO(self.data)
        try:
            return av.open(target, metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise NotAMediaFileError(
                self.path, f"cannot open: not a media file, or a damaged/truncated one ({reason})"
            ) from exc

    def cache_key(self, stream_index: int) -> tuple:
        """What identifies this source's index: the file (path, size, mtime) or the bytes."""
        if self.data is None:
            return _index.cache_key(self.path, stream_index)
        digest = hashlib.blake2b(self.data, digest_size=16).hexdigest()
        return ("<bytes>", digest, len(self.data), stream_index)


def _codec_name(stream: Any) -> str:
    # PyAV has no codec context (so no name) for a stream it cannot decode; its repr
    # still says what FFmpeg calls the codec ("video/<nocodec>" when it knows none)
    name = repr(stream).split("video/", 1)[-1].split(" ", 1)[0]
    return "" if name.startswith("<") else name


def select_stream(container: Any, path: str, stream: int | None) -> Any:
    """The video stream to read: ``stream`` (an index in the container) or FFmpeg's best."""
    streams = container.streams
    videos = list(streams.video)
    listing = ", ".join(f"{s.index}: {s.type}" for s in streams) or "none"
    if not videos:
        raise NoVideoStreamError(path, f"no video stream (streams: {listing})")
    if stream is not None:
        choices = [s.index for s in videos]
        if not 0 <= stream < len(streams):
            raise NoVideoStreamError(
                path,
                f"stream {stream} does not exist: the file has {len(streams)} streams "
                f"({listing}); video streams: {choices}",
            )
        kind = streams[stream].type
        if kind != "video":
            article = "an" if kind[:1] in "aeiou" else "a"
            raise NoVideoStreamError(
                path,
                f"stream {stream} is {article} {kind} stream, not a video stream; "
                f"video streams: {choices}",
            )
        chosen = streams[stream]
    else:
        best = streams.best("video") or videos[0]
        decodable = [s for s in videos if s.codec_context is not None]
        chosen = best if best.codec_context is not None or not decodable else decodable[0]
    if chosen.codec_context is None:
        name = _codec_name(chosen)
        what = f"codec {name!r}" if name else "its codec (FFmpeg does not recognise it)"
        raise UnsupportedCodecError(
            path, f"stream {chosen.index}: this FFmpeg build has no decoder for {what}", name
        )
    return chosen


class Demuxer:
    """An open container of ``path`` and the decoder of one of its video streams.

    ``source`` is a :class:`Source`. ``index`` must be set (:attr:`index`) before
    packets are taken by position.
    ``threads``: FFmpeg decoding threads (0: FFmpeg's automatic frame and slice
    threading). ``stats``: the reader's counters (seeks are counted here).
    ``strict``: the decoder reports errors it would otherwise conceal
    (FFmpeg's ``err_detect=explode``), so that damage cannot pass unseen.
    """

    def __init__(
        self,
        source: Source,
        stream: int | None,
        threads: int | None,
        stats: Any,
        *,
        strict: bool = True,
    ) -> None:
        self.source = source
        self.path = source.path
        self.stats = stats
        self.strict = strict
        self.index: _index.PacketIndex | None = None
        self._container = source.open()
        try:
            self._stream = select_stream(self._container, self.path, stream)
            self.stream_index = self._stream.index
            self.threads = self._thread_count(threads)
            self._configure()
        except BaseException:
            self.close()
            raise
        self._packets: Iterator[Any] | None = None
        self._pending: Any = None
        self._next_pos: int | None = None
        self._seek_by = "pts"

    # ------------------------------------------------------------------ container

    @property
    def stream(self) -> Any:
        return self._stream

    @property
    def container(self) -> Any:
        return self._container

    @property
    def codec_context(self) -> Any:
        return self._stream.codec_context

    def _thread_count(self, threads: int | None) -> int:
        if threads is not None:
            if threads < 0:
                raise ValueError(f"threads must be >= 0, got {threads}")
            return threads
        cc = self.codec_context
        return 0 if (cc.width or 0) * (cc.height or 0) >= THREADING_MIN_PIXELS else 1

    def _configure(self) -> None:
        cc = self.codec_context
        if self.threads == 1:
            cc.thread_count = 1
        else:
            cc.thread_type = "AUTO"  # frame threading across pictures, slices within one
            cc.thread_count = self.threads
        if self.strict:
            # report damage instead of hiding it: a decoder that conceals an error does so
            # with what it decoded before, so after a seek it would hide it differently
            cc.options = {"err_detect": "explode"}
        self._skip = cc.skip_frame

    def configure(self, *, threads: int | None = None, strict: bool | None = None) -> None:
        """Change the decoder's threads or strictness (reopens it when that changes)."""
        new_threads = self.threads if threads is None else threads
        new_strict = self.strict if strict is None else strict
        if (new_threads, new_strict) != (self.threads, self.strict):
            self.threads, self.strict = new_threads, new_strict
            self.reopen()
            self.stats.seeks -= 1  # not a seek of any request

    def reopen(self) -> None:
        """A fresh demuxer and decoder at the start of the file (the robust rewind)."""
        old = self._container
        self._container = self.source.open()
        try:
            old.close()
        except Exception:  # closing a damaged container must not mask the real work
            pass
        self._stream = self._container.streams[self.stream_index]
        self._configure()
        self.start_packets(0)
        self.stats.seeks += 1

    def close(self) -> None:
        self._packets = self._pending = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None

    # ------------------------------------------------------------------ decoding

    def set_skip(self, mode: str) -> None:
        if mode != self._skip:
            # read by the decoder when each packet is submitted, frame threads included
            self.codec_context.skip_frame = mode
            self._skip = mode

    def decode(self, packet: Any) -> tuple[list[Any], bool]:
        """(pictures, failed): a decode error on damaged data is reported, not raised."""
        try:
            return self.codec_context.decode(packet), False
        except av.error.FFmpegError as exc:
            log.debug("%s: decode error at pts %s: %s", self.path, packet.pts, exc)
            return [], True

    def drain(self) -> tuple[list[Any], bool]:
        """The pictures still inside the decoder; leaves it ready for a new keyframe."""
        cc = self.codec_context
        try:
            return cc.decode(None), False
        except av.error.FFmpegError as exc:
            log.debug("%s: drain error: %s", self.path, exc)
            return [], True
        finally:
            cc.flush_buffers()

    # ------------------------------------------------------------------ packets

    def start_packets(self, position: int | None) -> None:
        self._packets = self._iter_packets()
        self._pending = None
        self._next_pos = position

    def _iter_packets(self) -> Iterator[Any]:
        # end-of-stream markers are skipped: sending one would drain the decoder
        return _index.demux_packets(self._container, self._stream)

    def forget_position(self) -> None:
        """Seek again next time (after an error or an interruption mid-walk)."""
        self._packets = self._pending = self._next_pos = None
        try:
            self.codec_context.flush_buffers()
        except Exception:  # a closed or broken decoder: the next call reopens or seeks
            pass

    def needs_seek(self, position: int) -> bool:
        nxt = self._next_pos
        return self._packets is None or nxt is None or not nxt <= position <= nxt + READ_AHEAD

    def position_at(self, position: int) -> None:
        """Make ``position`` the next packet the demuxer yields."""
        if self.needs_seek(position):
            self._seek(position)
        while self._next_pos < position:
            self.take(self._next_pos)  # demuxed, not decoded

    def _next_packet(self, position: int) -> Any:
        packet, self._pending = self._pending, None
        try:
            if packet is None:
                packet = next(self._packets, None)
        except (av.error.FFmpegError, OSError) as exc:
            raise Desync(f"reading packet {position} failed: {exc}") from exc
        if packet is None:
            raise Desync(f"the file ended before packet {position}")
        return packet

    def take(self, position: int) -> Any:
        """The packet at decode ``position``, which must be the next one."""
        if position != self._next_pos:
            raise Desync(f"expected to read packet {self._next_pos}, not {position}")
        packet = self._next_packet(position)
        if not self.index.identifies(position, packet):
            raise Desync(
                f"packet {position} is not the one the index holds (pts {packet.pts}, "
                f"{packet.size} bytes at {packet.pos}; the index says pts "
                f"{self.index.pts[position]}, {self.index.size[position]} bytes at "
                f"{self.index.pos[position]})"
            )
        self._next_pos = position + 1
        return packet

    def _seek(self, position: int) -> None:
        """Seek so that the demuxer is at or before ``position``, on a packet it can prove."""
        idx = self.index
        pos_of_pts = idx.position_of_pts()
        for _ in range(2):
            dts = int(idx.dts[position])
            ts = int(idx.pts[position])
            if self._seek_by == "dts" and dts != _index.NO_TS:
                ts = min(ts, dts)
            try:
                self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                log.debug("%s: seek to %d failed: %s", self.path, ts, exc)
                break
            self.stats.seeks += 1
            self.start_packets(None)
            try:
                first = next(self._packets, None)
            except (av.error.FFmpegError, OSError):
                first = None
            landed = pos_of_pts.get(first.pts) if first is not None else None
            if landed is not None and landed <= position and idx.identifies(landed, first):
                self._pending, self._next_pos = first, landed
                return
            if landed is not None and landed <= position:
                # the timestamp is one the index knows, the packet is not: the demuxer
                # numbers this damaged file differently after a seek; trust the scan
                raise Desync(f"after a seek, packet {landed} is not the one the index holds")
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
        self.reopen()

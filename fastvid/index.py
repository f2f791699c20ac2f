"""The packet index of one video stream: what frame ``i`` is and where to start decoding it.

Frame ``i`` is the ``i``-th picture a plain sequential decode of the stream
outputs. Decoders output pictures in presentation order, so for a healthy file
that is the ``i``-th shown packet sorted by presentation timestamp, which a
demux-only scan (no decoding) finds: ~13 us a packet from the page cache.
Headers lie, and so do timestamps sometimes: an MP4 muxed with ``pts = dts``
around B-frames, an AVI whose packed B-frames carry each other's timestamps,
a damaged file whose pictures do not all decode. So the order the timestamps
predict is checked before it is trusted:

* :data:`MODE_PTS`: the scan decodes the first packets as it reads them and
  the pictures must come out exactly as the timestamps predict; every later
  packet goes through the decoder's header parsing (a broken header would drop
  a picture); the reader then checks every decode against the prediction.
* :data:`MODE_DECODED`: when a check fails, the whole stream is decoded once
  and the index records the order the decoder really gives (each picture is
  still identified by the timestamp of the packet that carried it, so seeking
  keeps working) and which pictures the decoder itself calls keyframes.
* :data:`MODE_ORDINAL`: packets without unique timestamps (raw elementary
  streams) cannot be identified after a seek: frame ``i`` is then the ``i``-th
  picture out of a decode from the start, and every request decodes from there.

Packets are kept in decode order; ``pts``, ``pos``, ``size`` and ``key`` are
per packet and ``frame_pkt[i]`` is the decode position of frame ``i``. An
index is built once per file and reused: kept in an in-process cache bounded
by bytes and, when a cache directory is given, in an ``.npz`` file keyed by the
file's absolute path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fastvid import _runtime

log = logging.getLogger(__name__)

# bump when the meaning of a stored index changes: older cache files are ignored
INDEX_VERSION = 3

MODE_PTS = "pts"
MODE_DECODED = "decoded"
MODE_ORDINAL = "ordinal"

NO_TS = np.iinfo(np.int64).min  # stands for a missing timestamp in the int64 arrays

# how many packets the scan decodes to check the timestamps' frame order: enough for
# B-frame reordering (x264's b-pyramid reorders within 4 pictures) to show
PREFIX_PACKETS = 16

_ARRAYS = (
    "pts",
    "dts",
    "pos",
    "size",
    "key",
    "shown",
    "frame_pkt",
    "frame_key",
    "damaged",
    "frame_digest",
)
_BOOL_ARRAYS = ("key", "shown", "frame_key", "damaged")


@dataclass(frozen=True)
class Picture:
    """One picture out of the decoder: its timestamp, whether it is a keyframe, and
    whether the decoder marked it corrupt (concealed damage)."""

    pts: int | None
    key: bool
    corrupt: bool = False
    digest: int = 0  # CRC-32 of the decoded planes (what a later decode must reproduce)


@dataclass
class Decoded:
    """What a full sequential decode gave: the pictures in output order, the facts of
    the first, and the decode positions of the packets that failed to decode."""

    pictures: list[Picture]
    facts: dict[str, Any]
    failed: list[int]


@dataclass(frozen=True, eq=False)
class PacketIndex:
    """Per-packet facts of one stream (decode order) and the frame order they give.

    ``probe`` holds what the first decoded picture told (``width``, ``height``,
    ``pix_fmt``, ``rotation``); it is stored with the index so a cached reader
    never has to decode to fill in its metadata.
    """

    mode: str  # MODE_PTS, MODE_DECODED or MODE_ORDINAL
    time_base: Fraction
    pts: np.ndarray  # int64 (P,), NO_TS when missing (never in MODE_PTS / MODE_DECODED)
    dts: np.ndarray  # int64 (P,), NO_TS when missing
    pos: np.ndarray  # int64 (P,): byte offset in the file, -1 when the demuxer gives none
    size: np.ndarray  # int64 (P,): bytes
    key: np.ndarray  # bool (P,): decoding may start here (MODE_DECODED: the decoder agrees)
    shown: np.ndarray  # bool (P,): the packet gives a frame of the stream
    frame_pkt: np.ndarray  # int64 (N,): decode position of frame i (not MODE_ORDINAL)
    frame_key: np.ndarray  # bool (N,): frame i is a keyframe
    truncated: bool = False  # the scan stopped on a read error before the end
    probe: dict[str, Any] = field(default_factory=dict)
    # bool (P,): the sequential decode failed on the packet or concealed damage in its
    # picture (MODE_DECODED; empty otherwise)
    damaged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # int64 (N,): CRC-32 of frame i as the sequential decode gave it (MODE_DECODED)
    frame_digest: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def num_frames(self) -> int:
        return int(self.frame_key.shape[0])

    @property
    def num_packets(self) -> int:
        return int(self.pts.shape[0])

    def frame_pts(self) -> np.ndarray:
        """Presentation timestamp of each frame (not in MODE_ORDINAL)."""
        return self.pts[self.frame_pkt]

    def keyframe_indices(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.frame_key))

    def frame_seconds(self, fps: float) -> np.ndarray:
        """float64 (N,): when frame ``i`` is shown, in seconds of the stream's time base.

        The frames' timestamps, in frame order (their ascending order: when
        timestamps lie, frames are still shown in turn); without usable
        timestamps (MODE_ORDINAL), ``i / fps``.
        """

        def make() -> np.ndarray:
            if self.mode == MODE_ORDINAL:
                return np.arange(self.num_frames, dtype=np.float64) / (fps or 1.0)
            ticks = np.sort(self.frame_pts()).astype(np.float64)
            return ticks * float(self.time_base)

        return self._cached("_seconds", make)

    def _cached(self, name: str, make: Callable[[], Any]) -> Any:
        value = self.__dict__.get(name)
        if value is None:
            value = make()
            object.__setattr__(self, name, value)
        return value

    @property
    def rank(self) -> np.ndarray:
        """Per packet: the frame it gives, or -1 (MODE_PTS / MODE_DECODED)."""

        def make() -> np.ndarray:
            rank = np.full(self.num_packets, -1, np.int64)
            rank[self.frame_pkt] = np.arange(self.frame_pkt.size)
            return rank

        return self._cached("_rank", make)

    @property
    def order(self) -> np.ndarray:
        """Per packet, a key that sorts pictures as they are shown.

        The timestamps in MODE_PTS (packets that give no frame, such as the
        hidden pictures of an edit list, still have their place); the frame
        number in MODE_DECODED, where timestamps may lie.
        """
        return self.pts if self.mode == MODE_PTS else self.rank

    def anchor(self, pos: int) -> int:
        """Decode position to start from so that the packet at ``pos`` decodes correctly.

        The last keyframe at or before ``pos`` in decode order that is shown
        before the target: a picture shown before the keyframe that precedes
        it in decode order (an open-GOP leading picture) may reference the
        previous group, so it starts one keyframe earlier. Position 0 when no
        keyframe precedes (the decoder then does what a sequential decode does).

        In a damaged file (MODE_DECODED with ``damaged`` packets), what the
        decoder makes of a packet after the first damage can depend on that
        damage even across keyframes (it hides damage with what it decoded
        before): targets from there on decode from the last clean start before
        the first damaged packet, as the sequential decode did.
        """
        first = self._first_damage
        if first is None or pos < first:
            return self._plain_anchor(pos)
        if self.key[first]:
            return self._plain_anchor(first - 1) if first > 0 else 0
        return self._plain_anchor(first)

    @property
    def _first_damage(self) -> int | None:
        def make() -> int:
            hits = np.flatnonzero(self.damaged) if self.damaged.size else []
            return int(hits[0]) if len(hits) else -1

        first = self._cached("_first_damaged", make)
        return None if first < 0 else first

    def _plain_anchor(self, pos: int) -> int:
        keys = self._cached("_keys", lambda: np.flatnonzero(self.key))
        j = int(np.searchsorted(keys, pos, side="right")) - 1
        order = self.order
        target = order[pos]
        while j >= 0 and order[keys[j]] > target:
            j -= 1
        return int(keys[j]) if j >= 0 else 0

    def position_of_pts(self) -> dict[int, int]:
        """Map pts -> decode position, built on first use (seeking needs it)."""
        return self._cached(
            "_pos_of_pts", lambda: {int(p): i for i, p in enumerate(self.pts.tolist())}
        )

    def identifies(self, position: int, packet: Any) -> bool:
        """True when ``packet`` is the one the index holds at ``position``.

        The timestamp, the size and (where the demuxer gives it) the byte offset
        must all agree: after a seek into a damaged file a demuxer may number
        packets consistently off by a few, which the timestamp alone would not
        reveal.
        """
        if packet.pts != int(self.pts[position]) or packet.size != int(self.size[position]):
            return False
        expected, got = int(self.pos[position]), packet.pos
        return expected < 0 or got is None or got < 0 or got == expected


# --------------------------------------------------------------------------- building


class ScanCheck:
    """Decoding alongside the scan: do pictures come out as the timestamps predict?

    The first :data:`PREFIX_PACKETS` packets are decoded in full: the pictures
    must come out in timestamp order, one per shown packet, the first one a
    keyframe. Every later packet goes through the decoder's header parsing only
    (``skip_frame="ALL"``, about as cheap as demuxing it): a packet whose
    headers are broken gives no picture, which would shift the numbering of
    every frame after it, so any such error sends the file to a full decode.

    ``decode(packet_or_None, headers_only)`` sends one packet (None drains) and
    returns the :class:`Picture` objects it yields, the facts of the first one,
    and whether the decoder reported an error.
    """

    def __init__(
        self, decode: Callable[[Any, bool], tuple[list[Picture], dict[str, Any], bool]]
    ) -> None:
        self._decode = decode
        self.fed_pts: list[int] = []  # shown packets decoded in full, in decode order
        self.pictures: list[Picture] = []
        self.facts: dict[str, Any] = {}
        self.failed = 0  # packets of the first ones the decoder reported errors on
        self.broken = 0  # later packets whose headers the decoder refused
        self.hidden = 0  # packets sent that give no frame (pictures an edit list hides)
        self._headers_only = False

    def feed(self, packet: Any, shown: bool) -> None:
        if self._headers_only:
            self.broken += self._decode(packet, True)[2]
            return
        if shown:
            self.fed_pts.append(packet.pts)
        else:
            self.hidden += 1
        self._take(self._decode(packet, False))
        if len(self.fed_pts) >= PREFIX_PACKETS:
            self._take(self._decode(None, False))  # the prefix's pictures, then headers only
            self._headers_only = True

    def _take(self, result: tuple[list[Picture], dict[str, Any], bool]) -> None:
        pictures, facts, failed = result
        self.failed += failed
        self.pictures += pictures
        if facts and not self.facts:
            self.facts = facts

    def finish(self) -> None:
        if not self._headers_only:
            self._take(self._decode(None, False))

    def problem(self) -> str | None:
        """Why the timestamps' order cannot be trusted, or None."""
        got = [p.pts for p in self.pictures]
        expected = sorted(p for p in self.fed_pts if p is not None)
        if self.failed:
            return f"{self.failed} of its first {len(self.fed_pts)} packets fail to decode"
        if self.broken:
            return f"{self.broken} of its packets have headers the decoder refuses"
        if any(p.corrupt for p in self.pictures):
            return "the decoder hid damage in one of its first pictures"
        if got == expected:
            if self.pictures and not self.pictures[0].key and not self.hidden:
                return "its first picture is not a keyframe"
            return None
        if len(got) != len(expected):
            return (
                f"its first {len(self.fed_pts)} packets decode to {len(got)} pictures, "
                f"not {len(expected)}"
            )
        return "the decoder shows its pictures in another order than their timestamps say"


class DemuxStopped(OSError):
    """The demuxer gave up mid-file (PyAV raised something other than an FFmpeg error)."""


def demux_packets(container: Any, stream: Any) -> Iterator[Any]:
    """The packets of ``stream`` that hold data, in file order.

    PyAV's demuxer raises ``IndexError`` when a damaged MPEG-TS announces a stream
    it did not list at open; reading stops there, as at a read error: that
    becomes :class:`DemuxStopped` (an ``OSError``, as read errors are), never an
    ``IndexError`` that would read as a bad frame index.
    """
    try:
        for packet in container.demux(stream):
            if packet.size:  # skip end-of-stream markers (and empty chunks: no picture)
                yield packet
    except IndexError as exc:
        raise DemuxStopped(f"the demuxer met a stream it did not announce ({exc})") from exc


def scan_packets(container: Any, stream: Any, check: ScanCheck | None = None) -> tuple:
    """Demux every packet of ``stream``, each also handed to ``check`` (see :class:`ScanCheck`).

    Returns the per-packet arrays, whether the scan stopped on a read error (a
    truncated or damaged file) and how many packets the demuxer flagged corrupt.
    Discarded packets (hidden by an edit list) are not shown; corrupt ones count
    as shown, but make the caller check by decoding.
    """
    import av  # noqa: PLC0415

    cols: dict[str, list] = {name: [] for name in ("pts", "dts", "pos", "size", "key", "shown")}
    truncated = False
    corrupt = 0
    try:
        for packet in demux_packets(container, stream):
            shown = not packet.is_discard
            corrupt += bool(packet.is_corrupt)
            cols["pts"].append(NO_TS if packet.pts is None else packet.pts)
            cols["dts"].append(NO_TS if packet.dts is None else packet.dts)
            cols["pos"].append(-1 if packet.pos is None else packet.pos)
            cols["size"].append(packet.size)
            cols["key"].append(packet.is_keyframe)
            cols["shown"].append(shown)
            if check is not None:
                check.feed(packet, shown)
    except (av.error.FFmpegError, OSError) as exc:
        # a truncated or damaged file: what was read so far is still usable
        log.warning("%s: packet scan stopped early: %s", container.name, exc)
        truncated = True
    if check is not None:
        check.finish()
    try:
        # MP4/AVI list every packet in their index: fewer read means the data ends early
        if len(stream.index_entries) > len(cols["pts"]):
            truncated = True
    except Exception:  # an index-less container, or one PyAV cannot list
        pass
    dtypes = {"key": bool, "shown": bool}
    arrays = {k: np.asarray(v, dtypes.get(k, np.int64)) for k, v in cols.items()}
    return arrays, truncated, corrupt


def build_index(
    container: Any,
    stream: Any,
    *,
    check: ScanCheck,
    decode_all: Callable[[], Decoded],
    verify: bool = False,
) -> PacketIndex:
    """Index ``stream`` of an open ``container`` (the demuxer ends at the end of the file).

    ``check`` decodes the first packets during the scan; when the pictures do
    not come out as the timestamps predict, the demuxer saw damage, or there
    are no usable timestamps, ``decode_all()`` decodes the whole stream once
    and the order it shows is recorded. ``verify`` decodes the whole stream in
    any case and records a checksum of every frame (see :func:`decoded_index`).
    """
    arrays, truncated, corrupt = scan_packets(container, stream, check)
    pts = arrays["pts"]
    base = dict(
        time_base=Fraction(stream.time_base or Fraction(1, 1)),
        truncated=truncated,
        **{k: arrays[k] for k in ("pts", "dts", "pos", "size", "key", "shown")},
    )
    usable = not np.any(pts == NO_TS) and np.unique(pts).size == pts.size
    if not usable:
        problem = "its packets lack unique timestamps"
    elif truncated or corrupt:
        # damage the demuxer saw: which pictures the decoder still gives, only decoding tells
        problem = "it is damaged (the demuxer found truncated or corrupt data)"
    else:
        problem = check.problem()
    if usable and (problem is None or pts.size == 0) and not verify:
        frame_pkt = _frames_by_pts(pts, arrays["shown"])
        return PacketIndex(
            mode=MODE_PTS,
            frame_pkt=frame_pkt,
            frame_key=arrays["key"][frame_pkt].copy(),
            probe=check.facts,
            **base,
        )
    if problem is not None:
        log.info("%s: %s; counting its frames by decoding it once", container.name, problem)
    decoded = decode_all()
    decoded.facts = decoded.facts or check.facts
    return decoded_index(base, decoded, container.name, timestamps_trusted=problem is None)


def _frames_by_pts(pts: np.ndarray, shown: np.ndarray) -> np.ndarray:
    shown_pos = np.flatnonzero(shown)
    return shown_pos[np.argsort(pts[shown_pos], kind="stable")].astype(np.int64)


def decoded_index(
    base: dict[str, Any], decoded: Decoded, name: str, timestamps_trusted: bool = False
) -> PacketIndex:
    """The index of what a full sequential decode gave (its pictures, in output order).

    Every frame's checksum is kept: a reader returns a picture only when its
    own decode reproduces it. When the decode shows exactly what the
    timestamps predict, without damage (``timestamps_trusted``: a verified
    scan), the index stays in MODE_PTS, with its faster decoding, plus the
    checksums.
    """
    pts = base["pts"]
    pictures, facts = decoded.pictures, decoded.facts
    frame_key = np.asarray([p.key for p in pictures], bool)
    pos_of = {int(p): i for i, p in enumerate(pts.tolist())} if pts.size else {}
    positions = [pos_of.get(p.pts) if p.pts is not None else None for p in pictures]
    if any(p is None for p in positions) or len(set(positions)) != len(positions):
        log.warning(
            "%s: its pictures cannot be matched to packets; every request decodes from the "
            "start of the file",
            name,
        )
        return PacketIndex(
            mode=MODE_ORDINAL,
            frame_pkt=np.zeros(0, np.int64),
            frame_key=frame_key,
            probe=facts,
            **base,
        )
    frame_pkt = np.asarray(positions, np.int64)
    shown = np.zeros(pts.size, bool)
    shown[frame_pkt] = True
    # a packet can start a decode when the decoder called its picture a keyframe; packets
    # that gave no picture keep the container's word (edit-list pictures are never shown)
    key = np.where(shown, False, base["key"])
    key[frame_pkt] = frame_key
    damaged = np.zeros(pts.size, bool)
    damaged[[p for p in decoded.failed if p < pts.size]] = True
    damaged[frame_pkt[[p.corrupt for p in pictures]]] = True
    digest = np.asarray([p.digest for p in pictures], np.int64)
    by_pts = _frames_by_pts(pts, base["shown"])
    if timestamps_trusted and not damaged.any() and np.array_equal(frame_pkt, by_pts):
        return PacketIndex(
            mode=MODE_PTS,
            frame_pkt=frame_pkt,
            frame_key=base["key"][frame_pkt].copy(),
            probe=facts,
            frame_digest=digest,
            **base,
        )
    return PacketIndex(
        mode=MODE_DECODED,
        frame_pkt=frame_pkt,
        frame_key=frame_key,
        probe=facts,
        **{**base, "key": key, "shown": shown, "damaged": damaged, "frame_digest": digest},
    )


# --------------------------------------------------------------------------- caches


def cache_key(path: str, stream_index: int) -> tuple[str, int, int, int]:
    """(absolute path, size, mtime in ns, stream): changes whenever the file does."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, stream_index)


def index_nbytes(index: PacketIndex) -> int:
    """Memory an index holds: its arrays (about 42 bytes a packet) plus a fixed overhead."""
    arrays = (getattr(index, f.name) for f in fields(index))
    return 1024 + sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


class _MemoryCache:
    """A thread-safe LRU of indexes, so readers opened per batch reuse the scan.

    Bounded by bytes rather than entries: a dataset of 13,000 short clips holds
    about 80 MB of indexes, and an entry bound below the file count would
    rescan nearly every file every epoch. The bound is ``FASTVID_INDEX_MEMORY``.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple, PacketIndex] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        _runtime.reset_after_fork(self)

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            return _runtime.settings().index_memory_bytes
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int | None) -> None:
        self._max_bytes = value

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def get(self, key: tuple) -> PacketIndex | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, index: PacketIndex) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= index_nbytes(old)
            self._items[key] = index
            self._nbytes += index_nbytes(index)
            while self._nbytes > self.max_bytes and len(self._items) > 1:
                _, evicted = self._items.popitem(last=False)
                self._nbytes -= index_nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0


memory_cache = _MemoryCache()


def _cache_file(cache_dir: str | os.PathLike[str], key: tuple) -> Path:
    digest = hashlib.sha256(json.dumps([*key, INDEX_VERSION]).encode("utf-8")).hexdigest()[:32]
    return Path(cache_dir) / f"{digest}.npz"


def load_cached(cache_dir: str | os.PathLike[str], key: tuple) -> PacketIndex | None:
    """The stored index for ``key``, or None (missing, stale or unreadable: rebuilt)."""
    path = _cache_file(cache_dir, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != INDEX_VERSION or meta.get("key") != list(key):
                return None
            arrays = {
                name: data[name].astype(bool if name in _BOOL_ARRAYS else np.int64)
                for name in _ARRAYS
            }
            return PacketIndex(
                mode=meta["mode"],
                time_base=Fraction(meta["time_base"][0], meta["time_base"][1]),
                truncated=bool(meta["truncated"]),
                probe=dict(meta["probe"]),
                **arrays,
            )
    except Exception as exc:  # a damaged cache file must never break reading
        log.debug("ignoring unreadable index cache %s: %s", path, exc)
        return None


def store_cached(cache_dir: str | os.PathLike[str], key: tuple, index: PacketIndex) -> None:
    """Write ``index`` atomically (temp file + rename: concurrent readers never see half)."""
    path = _cache_file(cache_dir, key)
    meta = {
        "version": INDEX_VERSION,
        "key": list(key),
        "mode": index.mode,
        "time_base": [index.time_base.numerator, index.time_base.denominator],
        "truncated": index.truncated,
        "probe": index.probe,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        np.savez(
            tmp, meta=np.array(json.dumps(meta)), **{name: getattr(index, name) for name in _ARRAYS}
        )
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full cache dir only costs speed
        log.warning("cannot write index cache %s: %s", path, exc)

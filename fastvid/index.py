"""The packet index of one video stream: what frame ``i`` is and where to start decoding it.

Built once per file by a demux-only scan (no decoding) and reused: kept in a
small in-process cache and, when a cache directory is given, in an ``.npz``
file keyed by the file's absolute path, size and modification time, so the
second epoch and the second run of a training job skip the scan.

Frame ``i`` is the ``i``-th frame in presentation order: the packets that make
a picture (not empty, not flagged *discard* by an edit list, not corrupt),
sorted by presentation timestamp. Packets are kept in decode order; ``pts``,
``key`` and ``shown`` are per packet, ``frame_pkt[i]`` is the decode position
of frame ``i``.

Why a scan and not ``stream.index_entries`` alone: an MP4 index holds decode
timestamps, not presentation ones, a Matroska index only keyframe cues and an
Ogg file none, while presentation order needs every packet's pts. The index
entries only serve to notice a file whose data ends before its index does. (The
scan costs ~13 us per packet from the page cache: ~20 ms for a minute of 25 fps.)

Files without usable timestamps (raw elementary streams, duplicate pts) are
indexed by decoding them once instead (*ordinal* mode): frame ``i`` is then the
``i``-th picture the decoder outputs, which is exactly what a sequential decode
gives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# bump when the meaning of a stored index changes: older cache files are ignored
INDEX_VERSION = 1

MODE_PTS = "pts"
MODE_ORDINAL = "ordinal"

NO_TS = np.iinfo(np.int64).min  # stands for a missing timestamp in the int64 arrays


@dataclass(frozen=True, eq=False)
class PacketIndex:
    """Per-packet facts of one stream (decode order) and the frame order they imply.

    ``probe`` holds what the first decoded picture told (``width``, ``height``,
    ``pix_fmt``, ``rotation``); it is stored with the index so a cached reader
    never has to decode to fill in its metadata.
    """

    mode: str  # MODE_PTS or MODE_ORDINAL
    time_base: Fraction
    pts: np.ndarray  # int64 (P,), NO_TS when missing (never in MODE_PTS)
    dts: np.ndarray  # int64 (P,), NO_TS when missing
    key: np.ndarray  # bool (P,)
    shown: np.ndarray  # bool (P,): the packet yields a frame of the stream
    frame_pkt: np.ndarray  # int64 (N,): decode position of frame i (MODE_PTS)
    frame_key: np.ndarray  # bool (N,): frame i is a keyframe
    truncated: bool = False  # the scan stopped on a read error before the end
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frame_key.shape[0])

    @property
    def num_packets(self) -> int:
        return int(self.pts.shape[0])

    def frame_pts(self) -> np.ndarray:
        """Presentation timestamp of each frame (MODE_PTS only)."""
        return self.pts[self.frame_pkt]

    def keyframe_indices(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.frame_key))

    def anchor(self, pos: int) -> int:
        """Decode position to start from so that the packet at ``pos`` decodes correctly.

        The last keyframe at or before ``pos`` in decode order whose pts is not
        after the target's: a frame shown before the keyframe that precedes it
        in decode order (an open-GOP leading picture) may reference the previous
        GOP, so it starts one keyframe earlier. Position 0 when no keyframe
        precedes (the decoder then does what a sequential decode does).
        """
        keys = self._key_positions
        j = int(np.searchsorted(keys, pos, side="right")) - 1
        target_pts = self.pts[pos]
        while j >= 0 and self.pts[keys[j]] > target_pts:
            j -= 1
        return int(keys[j]) if j >= 0 else 0

    @property
    def _key_positions(self) -> np.ndarray:
        cached = self.__dict__.get("_keys")
        if cached is None:
            cached = np.flatnonzero(self.key)
            object.__setattr__(self, "_keys", cached)
        return cached

    def position_of_pts(self) -> dict[int, int]:
        """Map pts -> decode position, built on first use (seeking needs it)."""
        cached = self.__dict__.get("_pos_of_pts")
        if cached is None:
            cached = {int(p): i for i, p in enumerate(self.pts.tolist())}
            object.__setattr__(self, "_pos_of_pts", cached)
        return cached


def _frames_from_packets(pts: np.ndarray, key: np.ndarray, shown: np.ndarray):
    shown_pos = np.flatnonzero(shown)
    order = np.argsort(pts[shown_pos], kind="stable")
    frame_pkt = shown_pos[order].astype(np.int64)
    return frame_pkt, key[frame_pkt].copy()


def scan_packets(container, stream, probe=None) -> tuple[dict[str, np.ndarray], bool, dict]:
    """Demux every packet of ``stream`` without decoding it.

    Returns the per-packet arrays, whether the scan stopped on a read error
    (truncated or damaged file) and what ``probe(packet)`` returned for the
    first keyframe packet (the caller decodes that one picture).
    """
    import av

    pts_l: list[int] = []
    dts_l: list[int] = []
    key_l: list[bool] = []
    shown_l: list[bool] = []
    truncated = False
    facts: dict[str, Any] = {}
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # end-of-stream marker (or an empty chunk: no picture)
                continue
            pts_l.append(NO_TS if packet.pts is None else packet.pts)
            dts_l.append(NO_TS if packet.dts is None else packet.dts)
            key_l.append(packet.is_keyframe)
            shown_l.append(not (packet.is_discard or packet.is_corrupt))
            if probe is not None and not facts and packet.is_keyframe:
                facts = probe(packet) or {"probed": False}
    except (av.error.FFmpegError, OSError) as exc:
        # a truncated or damaged file: what was read so far is still usable
        log.warning("%s: packet scan stopped early: %s", container.name, exc)
        truncated = True
    try:
        # MP4/AVI list every packet in their index: fewer read means the data ends early
        if len(stream.index_entries) > len(pts_l):
            truncated = True
    except Exception:  # an index-less container, or one PyAV cannot list
        pass
    arrays = {
        "pts": np.asarray(pts_l, np.int64),
        "dts": np.asarray(dts_l, np.int64),
        "key": np.asarray(key_l, bool),
        "shown": np.asarray(shown_l, bool),
    }
    return arrays, truncated, facts


def build_index(
    container,
    stream,
    *,
    probe: Callable[[Any], dict[str, Any]] | None,
    decode_all: Callable[[], tuple[list[bool], dict[str, Any]]],
) -> PacketIndex:
    """Index ``stream`` of an open ``container`` (the demuxer ends at the end of the file).

    ``probe(packet)`` decodes the first keyframe packet and returns the facts
    kept in :attr:`PacketIndex.probe`. When the packets have no usable
    timestamps, ``decode_all()`` decodes the whole stream and returns the
    keyframe flag of every output picture plus the probe facts.
    """
    arrays, truncated, facts = scan_packets(container, stream, probe)
    pts, shown = arrays["pts"], arrays["shown"]
    usable = (
        pts.size > 0
        and not np.any(pts == NO_TS)
        and np.unique(pts).size == pts.size  # seeking identifies packets by pts
    )
    if usable or pts.size == 0:
        frame_pkt, frame_key = _frames_from_packets(pts, arrays["key"], shown)
        mode = MODE_PTS
    else:
        log.warning(
            "%s: packets lack unique timestamps; frames are counted by decoding "
            "and every request decodes from the start of the file",
            container.name,
        )
        keys, facts = decode_all()
        frame_pkt = np.zeros(0, np.int64)
        frame_key = np.asarray(keys, bool)
        mode = MODE_ORDINAL
    return PacketIndex(
        mode=mode,
        time_base=Fraction(stream.time_base or Fraction(1, 1)),
        pts=pts,
        dts=arrays["dts"],
        key=arrays["key"],
        shown=shown,
        frame_pkt=frame_pkt,
        frame_key=frame_key,
        truncated=truncated,
        probe=facts,
    )


# --------------------------------------------------------------------------- caches


def cache_key(path: str, stream_index: int) -> tuple[str, int, int, int]:
    """(absolute path, size, mtime in ns, stream): changes whenever the file does."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, stream_index)


def index_nbytes(index: PacketIndex) -> int:
    """Memory an index holds: its arrays (about 26 bytes a packet) plus a fixed overhead."""
    arrays = (getattr(index, f.name) for f in fields(index))
    return 1024 + sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


class _MemoryCache:
    """A thread-safe LRU of indexes, so readers opened per batch reuse the scan.

    Bounded by bytes rather than entries: a dataset of 13,000 short clips holds
    about 60 MB of indexes, and an entry bound below the file count would
    rescan nearly every file every epoch.
    """

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, PacketIndex] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

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
            return PacketIndex(
                mode=meta["mode"],
                time_base=Fraction(meta["time_base"][0], meta["time_base"][1]),
                pts=data["pts"].astype(np.int64),
                dts=data["dts"].astype(np.int64),
                key=data["key"].astype(bool),
                shown=data["shown"].astype(bool),
                frame_pkt=data["frame_pkt"].astype(np.int64),
                frame_key=data["frame_key"].astype(bool),
                truncated=bool(meta["truncated"]),
                probe=dict(meta["probe"]),
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
            tmp,
            meta=np.array(json.dumps(meta)),
            pts=index.pts,
            dts=index.dts,
            key=index.key,
            shown=index.shown,
            frame_pkt=index.frame_pkt,
            frame_key=index.frame_key,
        )
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full cache dir only costs speed
        log.warning("cannot write index cache %s: %s", path, exc)

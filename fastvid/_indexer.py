"""Where a reader's packet index comes from: a cache, a scan, or a full decode.

An index (:mod:`fastvid.index`) is looked up in the process's memory cache,
then in the cache directory; failing both, the demuxer scans the file, decoding
its first packets and parsing the headers of the rest as it goes
(:class:`fastvid.index.ScanCheck`). When that check, or a later decode, finds
the timestamps cannot be trusted, :meth:`Indexer.rebuild` decodes the whole
stream once, on one thread, and numbers the frames as that decode gives them.
Every index built is stored in both caches.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from fastvid import index as _index
from fastvid._demux import Demuxer
from fastvid._walk import decode_pictures, frame_facts

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class Indexer:
    """The index of the stream a :class:`fastvid._demux.Demuxer` reads.

    ``verify``: build every index by a full decode (with per-frame checksums);
    a cached index made without one is not used.
    """

    def __init__(self, demux: Demuxer, cache_dir: PathLike | None, verify: bool) -> None:
        self.demux = demux
        self.path = demux.path
        self.cache_dir = cache_dir
        self.verify = verify
        self.key = demux.source.cache_key(demux.stream_index)

    def load(self) -> _index.PacketIndex:
        """The cached index, or one built by scanning the file (the demuxer is at its start)."""
        idx = _index.memory_cache.get(self.key)
        if idx is None and self.cache_dir is not None:
            idx = _index.load_cached(self.cache_dir, self.key)
        if idx is not None and self.verify and not idx.frame_digest.size:
            idx = None  # indexed without a full decode: verify now
        if idx is not None:
            self.demux.start_packets(0)  # fresh container: the demuxer is at the first packet
            _index.memory_cache.put(self.key, idx)
            return idx
        idx = _index.build_index(
            self.demux.container,
            self.demux.stream,
            check=_index.ScanCheck(self._scan_decode),
            decode_all=self._decode_all,
            verify=self.verify,
        )
        self.demux.drain()  # headers only so far: a clean decoder for the first request
        self.demux.set_skip("DEFAULT")
        self._store(idx)
        return idx

    def rebuild(self, old: _index.PacketIndex, reason: str) -> _index.PacketIndex:
        """The index numbered by one full decode (the timestamps' order failed ``reason``)."""
        log.warning(
            "%s: %s; decoding it once to number its frames as a sequential decode does (frames "
            "read from it before may have been numbered by its timestamps, which are wrong "
            "there: VideoReader(verify=True) checks a file fully when it is opened)",
            self.path,
            reason,
        )
        decoded = self._decode_all()
        decoded.facts = decoded.facts or old.probe
        kept = ("mode", "frame_pkt", "frame_key", "probe", "damaged", "frame_digest")
        base = {f.name: getattr(old, f.name) for f in fields(old) if f.name not in kept}
        idx = _index.decoded_index(base, decoded, self.path)
        self._store(idx)
        return idx

    def _store(self, idx: _index.PacketIndex) -> None:
        _index.memory_cache.put(self.key, idx)
        if self.cache_dir is not None:
            _index.store_cached(self.cache_dir, self.key, idx)

    def _scan_decode(
        self, packet: Any, headers_only: bool
    ) -> tuple[list[_index.Picture], dict[str, Any], bool]:
        demux = self.demux
        demux.set_skip("ALL" if headers_only else "DEFAULT")
        frames, failed = demux.drain() if packet is None else demux.decode(packet)
        facts = frame_facts(frames[0]) if frames else {}
        pictures = [_index.Picture(f.pts, bool(f.key_frame), bool(f.is_corrupt)) for f in frames]
        return pictures, facts, failed

    def _decode_all(self) -> _index.Decoded:
        """A full sequential decode in a fresh demuxer: the pictures, in output order.

        On one thread: that is the decode frames are numbered by (FFmpeg's frame
        threads may treat damaged data differently).
        """
        counters = SimpleNamespace(seeks=0, frames_decoded=0)  # nobody reads them
        fresh = Demuxer(self.demux.source, self.demux.stream_index, 1, counters, strict=False)
        try:
            return decode_pictures(fresh)
        finally:
            fresh.close()

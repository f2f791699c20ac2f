"""The frame cache: decoded uint8 frames at the target size, bounded, least recently used out.

keras-video-generators cached whole float32 sequences at the output size with
no bound, so a cache meant to save decoding grew until the machine swapped.
Here one entry is one decoded frame (uint8, already at the size the batch
needs), so the same frame serves every sliding window that contains it, four
times fewer bytes are kept than in float32, and the total never exceeds
``max_bytes``: adding past the bound drops the least recently used frames.
Memory stays flat from one epoch to the next. Thread safe.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from fastvid import _runtime

log = logging.getLogger(__name__)

_FALLBACK_BYTES = 2 << 30


def default_cache_bytes() -> int:
    """A quarter of the machine's physical memory (2 GiB when it cannot be read)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_BYTES
    return int(total // 4) if total > 0 else _FALLBACK_BYTES


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`FrameCache` at one moment."""

    entries: int
    nbytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int


class FrameCache:
    """A bounded LRU map from a key to one uint8 frame.

    Stored frames are private, read-only copies: a caller can neither change
    them nor keep a larger decoded buffer alive through them. :meth:`get`
    returns the stored array itself (no copy), so a hit gives back exactly the
    bytes that were put. A frame larger than ``max_bytes`` is not stored.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        _runtime.reset_after_fork(self)
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        """Bytes of frame data held now (always ``<= max_bytes``)."""
        return self._nbytes

    def get(self, key: Hashable) -> np.ndarray | None:
        """The frame stored under ``key`` (now most recently used), or None."""
        with self._lock:
            frame = self._items.get(key)
            if frame is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return frame

    def get_many(self, keys: Iterable[Hashable]) -> list[np.ndarray | None]:
        """:meth:`get` of each key, under one lock."""
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                frame = self._items.get(key)
                if frame is None:
                    self.misses += 1
                else:
                    self._items.move_to_end(key)
                    self.hits += 1
                out.append(frame)
        return out

    def put(self, key: Hashable, frame: np.ndarray) -> bool:
        """Store a copy of ``frame``; False when it alone exceeds the bound."""
        return self.put_many([(key, frame)]) == 1

    def put_many(self, items: Iterable[tuple[Hashable, np.ndarray]]) -> int:
        """Store several frames; returns how many were stored."""
        prepared = []
        for key, frame in items:
            if frame.dtype != np.uint8:
                raise ValueError(f"the frame cache holds uint8 frames, got {frame.dtype}")
            if frame.nbytes > self.max_bytes:
                continue
            copy = np.array(frame, dtype=np.uint8, copy=True, order="C")
            copy.flags.writeable = False
            prepared.append((key, copy))
        with self._lock:
            for key, copy in prepared:
                old = self._items.pop(key, None)
                if old is not None:
                    self._nbytes -= old.nbytes
                self._items[key] = copy
                self._nbytes += copy.nbytes
            while self._nbytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._nbytes -= dropped.nbytes
                self.evictions += 1
        return len(prepared)

    def clear(self) -> None:
        """Drop every frame (counters are kept)."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def stats(self) -> CacheStats:
        """Entries, bytes and hit/miss/eviction counters."""
        with self._lock:
            return CacheStats(
                len(self._items),
                self._nbytes,
                self.max_bytes,
                self.hits,
                self.misses,
                self.evictions,
            )

    def __getstate__(self) -> dict:
        # a copy sent to a worker process starts empty: frames are not worth pickling
        state = self.__dict__.copy()
        state["_items"] = OrderedDict()
        state["_nbytes"] = 0
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._after_fork()
        _runtime.reset_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it

"""Decoded frames for a loader's requests: the frame cache first, then the decoder.

Each file is decoded once per batch, for the union of the frames its samples
need (sliding windows of one video overlap), minus the frames in the cache. A
file whose decoding fails (a :class:`fastvid.VideoError`, or an ``IndexError``
naming it) is recorded as bad in the dataset's state, named in one warning,
and the call answers None so that the loader can pick other samples; any other
exception is not the file's fault and propagates.
"""

from __future__ import annotations

import logging

import numpy as np

from fastvid import sampling
from fastvid._table import DatasetState
from fastvid.errors import VideoError
from fastvid.ops.affine import decode_size
from fastvid.reader import read_clips

log = logging.getLogger(__name__)

Request = tuple[str, list[int]]


class FrameSource:
    """uint8 frames of ``(path, indices)`` requests at one size, format and seek mode.

    ``size`` is ``(height, width)``; ``input_format`` what the decoder delivers
    (``"rgb"`` or ``"yuv420p"``, as the compute backend prefers). With ``aspect``
    ``"crop"`` or ``"pad"`` each file is decoded at its own shape, scaled to cover or
    fit ``size`` (:func:`fastvid.ops.affine.decode_size`); the loader's sampling pass
    then crops or pads.
    """

    def __init__(
        self,
        state: DatasetState,
        *,
        size: tuple[int, int],
        input_format: str,
        seek_mode: str,
        threads: int | None,
        verify: bool,
        policy: sampling.ShortVideoPolicy,
        skipped: dict[str, str],
        aspect: str = "stretch",
    ) -> None:
        self.state, self.policy, self.skipped = state, policy, skipped
        self.threads, self.size, self.aspect = threads, size, aspect
        self._read = dict(color=input_format, seek_mode=seek_mode, verify=verify)
        self._format = (input_format, seek_mode)  # cache keys' tail, after the size

    def decode_size(self, path: str) -> tuple[int, int]:
        """``(height, width)`` that ``path``'s frames are decoded at."""
        found = self.state.probes.get(path)
        if self.aspect == "stretch" or not isinstance(found, tuple):
            return self.size
        return decode_size((found[2], found[3]), self.size, self.aspect)

    def load(self, requests: list[Request]) -> list[np.ndarray] | None:
        """One uint8 clip per request, in order; None when a file turned out unreadable."""
        cache = self.state.cache
        wanted: dict[str, set[int]] = {}
        for path, indices in requests:
            wanted.setdefault(path, set()).update(indices)
        frames: dict[tuple[str, int], np.ndarray] = {}
        missing: dict[str, list[int]] = {}
        keys = {
            path: ((w, h), *self._format) for path in wanted for h, w in [self.decode_size(path)]
        }
        for path, idx in wanted.items():
            ordered = sorted(idx)
            if cache is not None:
                found = cache.get_many([(path, i, *keys[path]) for i in ordered])
                frames.update(
                    {(path, i): f for i, f in zip(ordered, found, strict=True) if f is not None}
                )
            todo = [i for i in ordered if (path, i) not in frames]
            if todo:
                missing[path] = todo
        decoded: dict[str, tuple[list[int], np.ndarray]] = {}
        if missing:
            clips = self._decode(list(missing.items()))
            if clips is None:
                return None
            for (path, ordered), clip in zip(missing.items(), clips, strict=True):
                decoded[path] = (ordered, clip)
                frames.update({(path, i): f for i, f in zip(ordered, clip, strict=True)})
                if cache is not None:
                    cache.put_many(
                        ((path, i, *keys[path]), f) for i, f in zip(ordered, clip, strict=True)
                    )
        out = []
        for path, indices in requests:
            got = decoded.get(path)
            if got is not None and got[0] == list(indices):
                out.append(got[1])  # the common case: exactly this sample's frames, no copy
            else:
                out.append(np.stack([frames[(path, i)] for i in indices]))
        return out

    def _decode(self, requests: list[Request]) -> list[np.ndarray] | None:
        try:
            return read_clips(
                [(p, idx, self.decode_size(p)) for p, idx in requests],
                workers=self.threads,
                **self._read,
            )
        except (VideoError, IndexError):
            pass  # a file's fault: find out which one, one at a time
        clips: list[np.ndarray] = []
        failed = False
        for path, indices in requests:
            try:
                clips.extend(
                    read_clips([(path, indices, self.decode_size(path))], workers=1, **self._read)
                )
            except (VideoError, IndexError) as err:  # the file's fault, not the machine's
                self._mark_bad(path, err)
                failed = True
        return None if failed else clips

    def _mark_bad(self, path: str, err: Exception) -> None:
        reason = err.reason if isinstance(err, VideoError) else str(err)
        if self.policy.fail:
            raise VideoError(path, reason) from err
        with self.state.lock:
            first = path not in self.state.bad
            self.state.bad[path] = reason
            count = len(self.state.bad)
        if first:
            log.warning(
                "%s: cannot be decoded (%s); left out from now on (%d such files)",
                path,
                reason,
                count,
            )
        self.skipped[path] = reason

"""Decoding the targets of one request, every picture checked against the index.

A *run* is what the decoder does between two flushes: it starts at a keyframe
(an *anchor*), is fed packets in decode order, and is drained at the end.
While it runs, every picture that comes out must be one the index expects:

* its timestamp names a packet of the index, one that gives a frame;
* pictures come out in frame order (decoders output in presentation order);
* the anchor's picture is a keyframe in the decoder's own judgement;
* every packet fed for decoding (not skipped) that the index says is shown
  after the anchor gives its picture by the end of the run;
* with timestamps as the frame order (``MODE_PTS``), no packet fails to decode
  and the decoder marks no picture corrupt (damage it hid);
* where the index holds checksums (``MODE_DECODED``, or ``verify=True``), each
  returned picture has the checksum the sequential decode gave it (so damage
  that a decoder hides differently from another starting point is caught).

A picture that breaks one of these raises :class:`Anomaly`: the index's idea
of the file is wrong there, and the reader answers from a verified path
instead (a full decode that numbers the frames, or a decode from the start).
A demuxer that does not give the packet expected raises
:class:`fastvid._demux.Desync`.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Executor, wait
from typing import Any

import av
import numpy as np

from fastvid import index as _index
from fastvid._demux import NONREF_CODECS, Demuxer, Desync
from fastvid._orientation import orientation
from fastvid.errors import CorruptVideoError

log = logging.getLogger(__name__)

Sink = Callable[[int, Any], None]  # (frame index, av.VideoFrame)


class Anomaly(Exception):
    """The pictures contradict what the index says about the file."""


class Cancelled(Exception):
    """A walk stopped because its call was interrupted (a parallel part)."""


def frame_facts(frame: Any) -> dict[str, Any]:
    """What a decoded picture says about the stream (kept in the index's ``probe``)."""
    try:
        rotation = int(frame.rotation)
    except Exception:
        rotation = 0
    turns, mirrored = orientation(frame)
    return {
        "width": int(frame.width),
        "height": int(frame.height),
        "pix_fmt": frame.format.name,
        "rotation": rotation,
        "turns": turns,
        "mirrored": mirrored,
    }


def picture_digest(frame: Any) -> int:
    """CRC-32 of a decoded picture's planes (its own pixel format, padding excluded)."""
    try:
        planes = frame.to_ndarray()
    except (ValueError, TypeError, av.error.FFmpegError):  # a format NumPy cannot hold as is
        planes = frame.reformat(format="yuv444p").to_ndarray()
    return zlib.crc32(np.ascontiguousarray(planes))


def decode_pictures(demux: Demuxer) -> _index.Decoded:
    """A plain sequential decode of the demuxer's stream from its first packet.

    Every picture in output order, the first one's facts, and the decode
    positions of the packets the decoder refused. Decode errors on damaged
    data are skipped, as players do; a read error ends the stream.
    """
    decoded = _index.Decoded([], {}, [])

    def take(frames: list[Any]) -> None:
        for frame in frames:
            if not decoded.facts:
                decoded.facts = frame_facts(frame)
            decoded.pictures.append(
                _index.Picture(
                    frame.pts, bool(frame.key_frame), bool(frame.is_corrupt), picture_digest(frame)
                )
            )

    demux.set_skip("DEFAULT")
    position = 0
    try:
        for packet in _index.demux_packets(demux.container, demux.stream):
            frames, failed = demux.decode(packet)
            if failed:
                decoded.failed.append(position)
            take(frames)
            position += 1
    except (av.error.FFmpegError, OSError) as exc:
        log.warning("%s: reading stopped early: %s", demux.path, exc)
    take(demux.drain()[0])
    return decoded


def plan(index: _index.PacketIndex, positions: set[int], keyframes_only: bool) -> list[list[int]]:
    """Intervals ``[start, end]`` of decode positions that produce ``positions``.

    Exact mode: each target from its anchor; intervals that overlap or touch
    merge, so no packet is decoded twice in one call. Keyframe mode: only the
    keyframe packets themselves reach the decoder (stronger than
    ``skip_frame="NONKEY"``, which would still read and submit every packet).
    """
    if keyframes_only:
        return [[p, p] for p in sorted(positions)]
    intervals: list[list[int]] = []
    for start, p in sorted((index.anchor(p), p) for p in positions):
        if intervals and start <= intervals[-1][1] + 1:
            intervals[-1][1] = max(intervals[-1][1], p)
        else:
            intervals.append([start, p])
    return intervals


def split_groups(
    index: _index.PacketIndex, targets: Sequence[int], keyframes_only: bool, parts: int
) -> tuple[list[list[int]], int]:
    """``targets`` cut into at most ``parts`` runs of whole keyframe groups, consecutive in
    the file and balanced by the packets each decodes; and the packets to decode in all.

    A group is the targets decoded from one keyframe (in keyframe mode, each target).
    Fewer runs than ``parts`` come back when there are fewer groups.
    """
    ordered = np.asarray(sorted(targets), np.int64)
    positions = index.frame_pkt[ordered]
    if keyframes_only:
        anchors = positions
    else:
        anchors = np.array([index.anchor(int(p)) for p in positions], np.int64)
    starts, group_of = np.unique(anchors, return_inverse=True)
    ends = np.full(len(starts), -1, np.int64)
    np.maximum.at(ends, group_of, positions)
    # groups that overlap (a group reaching past the next one's keyframe: open GOPs) stay
    # in one part, so that no packet is decoded twice
    unit = np.concatenate([[0], np.cumsum(starts[1:] > np.maximum.accumulate(ends)[:-1])])
    group_of = unit[group_of]
    firsts = np.r_[0, np.flatnonzero(np.diff(unit)) + 1]
    starts, ends = starts[firsts], np.maximum.reduceat(ends, firsts)
    costs = ends - starts + 1
    total = int(costs.sum())
    if parts < 2 or len(starts) < 2:
        return [ordered.tolist()], total
    # group g goes to the part its middle falls in, cutting the work into equal shares
    middles = np.cumsum(costs) - costs / 2
    part_of_group = np.minimum((middles * parts / total).astype(np.int64), parts - 1)
    part_of_target = part_of_group[group_of]
    runs = [ordered[part_of_target == k].tolist() for k in range(parts)]
    return [run for run in runs if run], total


def decode_parts(
    demuxers: Sequence[Demuxer],
    parts: Sequence[Sequence[int]],
    sink: Sink,
    decoded_pts: list[Any],
    *,
    keyframes_only: bool,
    executor: Executor,
) -> tuple[set[int], set[int]]:
    """Each part of the targets (:func:`split_groups`) walked on its own demuxer, at once.

    Returns the frames done and those whose checksum did not match. Raises
    :class:`Anomaly` or :class:`fastvid._demux.Desync` from a part after every part
    stopped; when the calling thread is interrupted, stops the parts first.
    """
    cancel = threading.Event()

    def run(demux: Demuxer, part: Sequence[int]) -> Walk:
        walk = Walk(demux, part, sink, decoded_pts, cancel)
        try:
            walk.seeking(keyframes_only)
        except BaseException:
            demux.forget_position()
            raise
        return walk

    futures = [executor.submit(run, d, p) for d, p in zip(demuxers, parts, strict=False)]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
    except BaseException:  # interrupted: no part may go on writing into the caller's arrays
        cancel.set()
        wait(futures)
        raise
    cancel.set()  # a part failed (the call falls back): the others need not finish
    wait(futures)
    errors = [e for f in futures if (e := f.exception()) is not None]
    for error in errors:
        if not isinstance(error, Cancelled):  # the first part that failed, in file order
            raise error
    done: set[int] = set()
    mismatched: set[int] = set()
    for future in futures:
        walk = future.result()
        done |= walk.done
        mismatched |= walk.mismatched
    return done, mismatched


class Walk:
    """One request's decoding on one :class:`Demuxer`; pictures of ``targets`` go to ``sink``.

    ``decoded_pts`` collects the timestamp of every picture decoded (the tests
    use it to prove no frame is decoded twice in a call).
    """

    def __init__(
        self,
        demux: Demuxer,
        targets: Sequence[int],
        sink: Sink,
        decoded_pts: list[Any],
        cancel: threading.Event | None = None,
    ) -> None:
        self.demux = demux
        self._cancel = cancel
        self.index = demux.index
        self.targets = set(targets)
        self.done: set[int] = set()
        self._sink = sink
        self._decoded_pts = decoded_pts
        self._strict = self.index.mode == _index.MODE_PTS
        # MODE_DECODED (or a verified index): every returned picture must be the one the
        # sequential decode gave
        self._digests = self.index.frame_digest if self.index.frame_digest.size else None
        self.mismatched: set[int] = set()
        self._order = self.index.order
        self._rank = self.index.rank
        self._pos_of_pts = self.index.position_of_pts()
        self._begin(0)

    def missing(self) -> list[int]:
        return sorted(self.targets - self.done)

    # ------------------------------------------------------------------ runs

    def _begin(self, anchor: int) -> None:
        self._last_rank = -1
        self._anchor_order = int(self._order[anchor])
        self._expected: set[int] = set()
        self._must_be_key: set[int] = set()

    def _feed(self, position: int, packet: Any, decode: bool, anchor: bool) -> None:
        idx = self.index
        if anchor and idx.key[position]:
            self._must_be_key.add(position)
        self.demux.set_skip("DEFAULT" if decode else "NONREF")
        after_anchor = self._order[position] >= self._anchor_order
        if decode and idx.shown[position] and after_anchor:
            self._expected.add(position)
        frames, failed = self.demux.decode(packet)
        if failed and self._strict and after_anchor:
            raise Anomaly(f"packet {position} does not decode")
        self._pictures(frames)

    def _end(self) -> None:
        frames, failed = self.demux.drain()
        if failed and self._strict:
            raise Anomaly("the decoder failed while draining")
        self._pictures(frames)
        if self._expected:
            first = min(self._expected)
            raise Anomaly(
                f"{len(self._expected)} packet(s) gave no picture (first: packet {first})"
            )

    def _pictures(self, frames: list[Any]) -> None:
        for frame in frames:
            self.demux.stats.frames_decoded += 1
            self._decoded_pts.append(frame.pts)
            position = self._pos_of_pts.get(frame.pts)
            if position is None:
                raise Anomaly(
                    f"the decoder gave a picture with pts {frame.pts}, which no "
                    "packet of the index has"
                )
            if self._strict and frame.is_corrupt:
                raise Anomaly(f"the decoder hid damage in the picture of packet {position}")
            rank = int(self._rank[position])
            if rank < 0:
                if self._strict:
                    raise Anomaly(f"packet {position} gave a picture the index does not count")
                continue  # MODE_DECODED: a picture a sequential decode does not give
            if rank <= self._last_rank:
                raise Anomaly(
                    f"frame {rank} came out after frame {self._last_rank}: the "
                    "pictures are not in the order the index has"
                )
            self._last_rank = rank
            if position in self._must_be_key and not frame.key_frame:
                raise Anomaly(
                    f"packet {position} is marked as a keyframe but does not decode as one"
                )
            self._expected.discard(position)
            if rank in self.targets and rank not in self.done:
                if self._digests is not None and picture_digest(frame) != self._digests[rank]:
                    self.mismatched.add(rank)  # decoded otherwise than from the start
                    continue
                self._sink(rank, frame)
                self.done.add(rank)

    # ------------------------------------------------------------------ strategies

    def seeking(self, keyframes_only: bool) -> None:
        """Each group of targets from its anchor: one seek per group that is not near."""
        idx, demux = self.index, self.demux
        tpos = set(idx.frame_pkt[np.asarray(sorted(self.targets), np.int64)].tolist())
        # non-reference skipping only where timestamps proved right: in files whose order had
        # to be found by decoding (packed B-frames in AVI, say), skipping a packet can change
        # which picture a later packet shows
        nonref = self._strict and demux.codec_context.name in NONREF_CODECS and not keyframes_only
        running = False
        for start, end in plan(idx, tpos, keyframes_only):
            if running and demux.needs_seek(start):
                self._end()  # a seek flushes the decoder: collect what it still holds first
                running = False
            demux.position_at(start)
            if not running:
                self._begin(start)
                running = True
            for p in range(start, end + 1):
                if self._cancel is not None and self._cancel.is_set():
                    raise Cancelled
                packet = demux.take(p)
                decode = not nonref or p in tpos
                self._feed(p, packet, decode, anchor=p == start)
            if not keyframes_only:
                # the next group starts at another keyframe after a gap: end this one here
                self._end()
                running = False
        if running:
            self._end()

    def from_start(self) -> None:
        """The verified path: a plain sequential decode from the first packet, nothing skipped.

        The caller reopens the demuxer first.
        """
        idx = self.index
        last = int(idx.frame_pkt[np.asarray(sorted(self.targets), np.int64)].max())
        self._begin(0)
        for p in range(last + 1):
            self._feed(p, self.demux.take(p), decode=True, anchor=p == 0)
        self._end()

    def ordinal(self) -> None:
        """Files without usable timestamps: frame i is the i-th picture from the start.

        The caller reopens the demuxer first.
        """
        demux = self.demux
        wanted = set(self.targets)
        last = max(wanted)
        ordinal = 0

        def take(frames: list[Any]) -> None:
            nonlocal ordinal
            for frame in frames:
                demux.stats.frames_decoded += 1
                self._decoded_pts.append(frame.pts)
                if ordinal in wanted:
                    self._sink(ordinal, frame)
                    self.done.add(ordinal)
                ordinal += 1

        demux.set_skip("DEFAULT")
        try:
            for packet in _index.demux_packets(demux.container, demux.stream):
                take(demux.decode(packet)[0])
                if ordinal > last:
                    break
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("%s: reading stopped: %s", demux.path, exc)
        if ordinal <= last:
            take(demux.drain()[0])
        demux.forget_position()  # mid-file: the next call reopens anyway


def decode_targets(
    demux: Demuxer,
    targets: list[int],
    sink: Sink,
    decoded_pts: list[Any],
    *,
    keyframes_only: bool,
) -> int:
    """Decode ``targets`` (sorted frame indices) into ``sink``: seeking where that can be
    trusted, from the start otherwise. Returns 1 when the start had to answer, else 0.

    Raises :class:`Anomaly` when pictures contradict the index (with timestamps as the
    order, the caller renumbers the file and asks again), and
    :class:`fastvid.CorruptVideoError` when no path gives the frames.
    """
    index = demux.index
    if index.mode == _index.MODE_ORDINAL:
        walk = Walk(demux, targets, sink, decoded_pts)
        demux.reopen()
        walk.ordinal()
        _raise_missing(demux, walk.missing())
        return 0
    walk = Walk(demux, targets, sink, decoded_pts)
    try:
        walk.seeking(keyframes_only)
        if not walk.missing():
            return 0
        reason = f"{len(walk.missing())} frame(s) not produced by seeking"
    except Desync as exc:
        reason = str(exc)
    except Anomaly:
        if index.mode == _index.MODE_PTS:
            raise  # the index is wrong, not only the seek: renumber first
        reason = "pictures after a seek contradict the index"
    log.warning("%s: %s; decoding from the start instead", demux.path, reason)
    walk = Walk(demux, targets, sink, decoded_pts)
    demux.reopen()
    try:
        walk.from_start()
    except Desync as exc:
        raise CorruptVideoError(demux.path, f"the file reads differently now: {exc}") from exc
    if walk.mismatched:
        shown = ", ".join(map(str, sorted(walk.mismatched)[:8]))
        raise CorruptVideoError(
            demux.path,
            f"frame(s) {shown} of {index.num_frames} are damaged in a way the decoder does not "
            "reproduce: two decodes from the start give different pictures",
        )
    _raise_missing(demux, walk.missing())
    return 1


def _raise_missing(demux: Demuxer, missing: list[int]) -> None:
    if not missing:
        return
    index = demux.index
    shown = ", ".join(str(m) for m in missing[:8]) + (" ..." if len(missing) > 8 else "")
    why = "the file is truncated or corrupt"
    if index.truncated:
        why = "the file is truncated (reading stopped before its end)"
    raise CorruptVideoError(
        demux.path, f"cannot decode frame(s) {shown} of {index.num_frames}: {why}"
    )

"""Which frames a sample takes: pure functions of frame counts, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``num_frames`` frames.

    Each index is the middle of one of ``count`` equal segments, so the first
    and last frames (often black or fading) are avoided on long videos and no
    index repeats while ``count <= num_frames``. Raises ``ValueError`` when
    ``num_frames`` is smaller than ``count``.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if num_frames < count:
        raise ValueError(f"cannot take {count} distinct frames from {num_frames}")
    return [int((i + 0.5) * num_frames / count) for i in range(count)]


# What to do with a video that has fewer frames than a sample needs.
SHORT_VIDEO_POLICIES = ("skip", "repeat_last", "loop", "raise")


def check_short_video_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`SHORT_VIDEO_POLICIES`, else ``ValueError``."""
    if policy not in SHORT_VIDEO_POLICIES:
        raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {policy!r}")
    return policy


def pad_indices(indices: Sequence[int], num_frames: int, policy: str) -> list[int]:
    """Bring indices past the end of a ``num_frames``-frame video back inside it.

    ``"repeat_last"`` replaces each of them by the last frame; ``"loop"``
    wraps around to the start (index modulo ``num_frames``). Indices already
    inside are kept. Other policies raise ``ValueError`` if any index is out.
    """
    if num_frames <= 0:
        raise ValueError("a video without frames cannot be padded")
    if policy == "repeat_last":
        return [min(int(i), num_frames - 1) for i in indices]
    if policy == "loop":
        return [int(i) % num_frames for i in indices]
    if any(i >= num_frames for i in indices):
        raise ValueError(f"index beyond {num_frames} frames and policy {policy!r} does not pad")
    return [int(i) for i in indices]


def clip_indices(num_frames: int, count: int, policy: str = "raise") -> list[int]:
    """``count`` frames spread over the whole video, padded by ``policy`` when it is short.

    With ``num_frames >= count`` this is :func:`uniform_indices`. A shorter
    video gives every frame once, in order, then pads the remaining places:
    ``"repeat_last"`` -> ``[0, 1, 2, 2, 2]``, ``"loop"`` -> ``[0, 1, 2, 0, 1]``
    (3 frames, 5 wanted). ``"skip"`` and ``"raise"`` raise ``ValueError``:
    the caller decides which videos to leave out before asking.
    """
    if num_frames >= count:
        return uniform_indices(num_frames, count)
    if policy not in ("repeat_last", "loop"):
        raise ValueError(f"cannot take {count} frames from {num_frames} with policy {policy!r}")
    return pad_indices(range(count), num_frames, policy)


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (12.5 -> 13, unlike ``round``)."""
    return math.floor(value + 0.5)


def window_span(
    count: int, num_frames: int, fps: float | None = None, sequence_time: float | None = None
) -> int:
    """How many consecutive frames one sliding window covers.

    With ``sequence_time`` (seconds) the window covers ``sequence_time * fps``
    frames (rounded half up), never fewer than ``count``. Without, the frames of a window
    are ``num_frames // (2 * count)`` apart (at least 1), so a window covers
    about half the video and slides over the other half: keras-video-generators'
    documented example (60 frames, 6 wanted -> ``[0, 5, ..., 25]``, ``[1, 6,
    ..., 26]``, ...).
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if sequence_time is not None:
        if not fps or fps <= 0:
            raise ValueError("sequence_time needs the video's frame rate")
        if sequence_time <= 0:
            raise ValueError(f"sequence_time must be positive, got {sequence_time}")
        return max(count, round_half_up(sequence_time * fps))
    step = max(1, num_frames // (2 * count))
    return step * (count - 1) + 1


def window_indices(start: int, span: int, count: int) -> list[int]:
    """``count`` frames spread evenly over ``span`` frames from ``start``, both ends included.

    A single frame (``count == 1``) is the middle of the window.
    """
    if count <= 0 or span < 1:
        raise ValueError(f"need count > 0 and span >= 1, got count={count}, span={span}")
    if count == 1:
        return [int(start + (span - 1) // 2)]  # one frame: the middle of the window
    return [int(start + (k * (span - 1)) // (count - 1)) for k in range(count)]


def window_count(num_frames: int, span: int, stride: int = 1) -> int:
    """How many windows of ``span`` frames fit in the video, starting every ``stride`` frames."""
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    if num_frames < span:
        return 0
    return (num_frames - span) // stride + 1


def sliding_windows(num_frames: int, count: int, span: int, stride: int = 1) -> list[list[int]]:
    """Every window: ``count`` frames over ``span``, window ``k`` starting at ``k * stride``."""
    starts = range(0, window_count(num_frames, span, stride) * stride, stride)
    return [window_indices(start, span, count) for start in starts]


def random_window(
    num_frames: int, count: int, span: int, rng: np.random.Generator | int | None = None
) -> list[int]:
    """One window of ``count`` frames over ``span`` at a random start (a random clip)."""
    n = window_count(num_frames, span)
    if n == 0:
        raise ValueError(f"a window of {span} frames does not fit in {num_frames}")
    start = int(np.random.default_rng(rng).integers(n))
    return window_indices(start, span, count)

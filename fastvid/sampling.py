"""Which frames a sample takes: pure functions of frame counts and samplers built on them.

No file is opened here. A :class:`Sampler` says, for a video of known length
and frame rate, how many samples it gives and which frame indices each takes;
:data:`SAMPLERS` names them (``"uniform"``, ``"sliding"``, ``"random_clip"``),
and :data:`SHORT_VIDEO_POLICIES` says what happens to a video shorter than a
sample needs. Adding a sampler is one class and one entry in :data:`SAMPLERS`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from fastvid import _checks
from fastvid.errors import VideoError

log = logging.getLogger(__name__)


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


def check_short_video_policy(policy: str) -> str:
    """``policy`` if it names one of :data:`SHORT_VIDEO_POLICIES`, else ``ValueError``."""
    return short_video_policy(policy).name


def pad_indices(indices: Sequence[int], num_frames: int, policy: str) -> list[int]:
    """Bring indices past the end of a ``num_frames``-frame video back inside it.

    ``"repeat_last"`` replaces each of them by the last frame; ``"loop"``
    wraps around to the start (index modulo ``num_frames``). Indices already
    inside are kept. Other policies raise ``ValueError`` if any index is out.
    """
    if num_frames <= 0:
        raise ValueError("a video without frames cannot be padded")
    pad = short_video_policy(policy).pad
    if pad is not None:
        return pad(indices, num_frames)
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
    if short_video_policy(policy).pad is None:
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


# ---------------------------------------------------------------------- policies


@dataclass(frozen=True)
class ShortVideoPolicy:
    """What to do with a video that has fewer frames than a sample needs.

    ``keep``: the video stays in the dataset, its samples padded by ``pad``;
    otherwise it is left out up front (``"skip"``, with one warning and a
    count) or the loader raises (``fail``: ``"raise"``). Unreadable files
    follow the same rule: left out, unless the policy fails.
    """

    name: str
    keep: bool
    fail: bool = False
    pad: Callable[[Sequence[int], int], list[int]] | None = None


def _repeat_last(indices: Sequence[int], num_frames: int) -> list[int]:
    return [min(int(i), num_frames - 1) for i in indices]


def _loop(indices: Sequence[int], num_frames: int) -> list[int]:
    return [int(i) % num_frames for i in indices]


SHORT_VIDEO_POLICIES: dict[str, ShortVideoPolicy] = {
    "skip": ShortVideoPolicy("skip", keep=False),
    "repeat_last": ShortVideoPolicy("repeat_last", keep=True, pad=_repeat_last),
    "loop": ShortVideoPolicy("loop", keep=True, pad=_loop),
    "raise": ShortVideoPolicy("raise", keep=False, fail=True),
}


def short_video_policy(policy: str | ShortVideoPolicy) -> ShortVideoPolicy:
    """The :class:`ShortVideoPolicy` named ``policy`` (or ``policy`` itself)."""
    if isinstance(policy, ShortVideoPolicy):
        return policy
    found = SHORT_VIDEO_POLICIES.get(policy) if isinstance(policy, str) else None
    if found is None:
        raise ValueError(
            f"short_video must be one of {list(SHORT_VIDEO_POLICIES)}. Received: {policy!r}"
        )
    return found


# ---------------------------------------------------------------------- samplers


@dataclass(frozen=True)
class VideoInfo:
    """What a sampler knows of a video: its length in frames and its frame rate."""

    num_frames: int
    fps: float = 0.0
    path: str = ""


class Sampler(Protocol):
    """Which frames the samples of a video take.

    Attributes:
        name: the sampler's name in :data:`SAMPLERS`.
        count: frames per sample.
        random: samples are drawn anew every epoch (from the ``rng`` given).
    """

    name: ClassVar[str]
    count: int
    random: bool

    def span(self, video: VideoInfo) -> int:
        """Consecutive frames one sample covers; a shorter video is *short*."""

    def num_samples(self, video: VideoInfo) -> int:
        """Samples the video gives (1 for a short video that is padded)."""

    def indices(
        self, video: VideoInfo, sample: int, rng: np.random.Generator | None = None
    ) -> list[int]:
        """Frame indices of ``sample``; for a short video they may pass its end (the
        short-video policy then brings them back inside)."""


@dataclass
class UniformSampler:
    """One sample per video: ``count`` frames spread over the whole video
    (:func:`uniform_indices`); a short video gives every frame, in order, then padding."""

    count: int
    name: ClassVar[str] = "uniform"
    random: ClassVar[bool] = False

    def span(self, video: VideoInfo) -> int:
        return self.count

    def num_samples(self, video: VideoInfo) -> int:
        return 1

    def indices(
        self, video: VideoInfo, sample: int, rng: np.random.Generator | None = None
    ) -> list[int]:
        if video.num_frames >= self.count:
            return uniform_indices(video.num_frames, self.count)
        return list(range(self.count))


@dataclass
class SlidingSampler:
    """Many samples per video: windows that slide ``stride`` frames at a time.

    With ``sequence_time`` (seconds) a window covers that much time at the
    file's frame rate (:func:`window_span`), and its ``count`` frames are
    spread over it, first and last included; without, the picked frames are
    ``num_frames // (2 * count)`` apart (keras-video-generators' rule).
    """

    count: int
    sequence_time: float | None = None
    stride: int = 1
    name: ClassVar[str] = "sliding"
    random: ClassVar[bool] = False
    _warned: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sequence_time is not None and self.sequence_time <= 0:
            raise ValueError(f"sequence_time must be positive, got {self.sequence_time}")
        _checks.positive_int(self.stride, "stride")

    def span(self, video: VideoInfo) -> int:
        if self.sequence_time is not None and video.fps <= 0:
            raise VideoError(video.path, "no frame rate, cannot honour sequence_time")
        span = window_span(self.count, video.num_frames, video.fps, self.sequence_time)
        wanted = round_half_up(self.sequence_time * video.fps) if self.sequence_time else span
        if wanted < self.count and not self._warned:
            self._warned = True
            log.warning(
                "sequence_time=%ss is %d frames at %.3g fps, fewer than nb_frames=%d: "
                "windows take %d consecutive frames",
                self.sequence_time,
                wanted,
                video.fps,
                self.count,
                self.count,
            )
        return span

    def num_samples(self, video: VideoInfo) -> int:
        return max(1, window_count(video.num_frames, self.span(video), self.stride))

    def indices(
        self, video: VideoInfo, sample: int, rng: np.random.Generator | None = None
    ) -> list[int]:
        return window_indices(sample * self.stride, self.span(video), self.count)


@dataclass
class RandomClipSampler:
    """One sample per video: ``count`` consecutive frames (``frame_step`` apart) from a
    random start, drawn anew every epoch; a short video starts at its first frame."""

    count: int
    frame_step: int = 1
    name: ClassVar[str] = "random_clip"
    random: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _checks.positive_int(self.frame_step, "frame_step")

    def span(self, video: VideoInfo) -> int:
        return (self.count - 1) * self.frame_step + 1

    def num_samples(self, video: VideoInfo) -> int:
        return 1

    def indices(
        self, video: VideoInfo, sample: int, rng: np.random.Generator | None = None
    ) -> list[int]:
        starts = window_count(video.num_frames, self.span(video))
        start = int((rng or np.random.default_rng()).integers(starts)) if starts > 1 else 0
        return [start + k * self.frame_step for k in range(self.count)]


SAMPLERS: dict[str, Callable[..., Any]] = {
    "uniform": UniformSampler,
    "sliding": SlidingSampler,
    "random_clip": RandomClipSampler,
}


def make_sampler(sampler: str | Sampler, count: int, **options: Any) -> Sampler:
    """A :class:`Sampler` from its name in :data:`SAMPLERS` (with ``count`` and the
    options it takes) or ``sampler`` itself (whose own ``count`` then wins)."""
    if not isinstance(sampler, str):
        for attr in ("count", "random", "span", "num_samples", "indices"):
            if not hasattr(sampler, attr):
                raise TypeError(
                    f"sampler must be a name in {sorted(SAMPLERS)} or a Sampler (with "
                    f"count, random, span, num_samples and indices); "
                    f"{type(sampler).__name__} has no {attr}"
                )
        return sampler
    _checks.one_of(sampler, "sampler", SAMPLERS)
    factory = SAMPLERS[sampler]
    accepted = {k: v for k, v in options.items() if v is not None}
    try:
        return factory(count, **accepted)
    except TypeError:
        names = ", ".join(sorted(accepted))
        raise TypeError(f"sampler={sampler!r} does not take {names}") from None

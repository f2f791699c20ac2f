"""Decoded pictures -> the arrays a reader returns: size, colour, upright.

One swscale pass converts a picture's colour and resizes it (area averaging
when shrinking, bilinear otherwise), at the size of the picture as coded; the
result is then turned upright (:mod:`fastvid._orientation`), so a requested
``(height, width)`` is that of the frame as it is shown.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from fastvid import _checks
from fastvid._orientation import swaps_axes, upright
from fastvid.errors import CorruptVideoError

COLORS = ("rgb", "bgr", "gray", "yuv420p")
_SWS_FORMAT = {"rgb": "rgb24", "bgr": "bgr24", "gray": "gray", "yuv420p": "yuv420p"}


@dataclass(frozen=True)
class Output:
    """What frames a call returns: their shown width and height, and colour."""

    width: int
    height: int
    color: str

    @property
    def shape(self) -> tuple[int, ...]:
        if self.color == "yuv420p":
            return (self.height * 3 // 2, self.width)
        return (self.height, self.width, 1 if self.color == "gray" else 3)


def output_spec(size: Any, color: str, shown: tuple[int, int]) -> Output:
    """The :class:`Output` of a request; ``shown`` is the stream's own ``(width, height)``."""
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}, got {color!r}")
    if size is None:
        width, height = shown
    else:
        height, width = _checks.size_hw(size, "size")
    if color == "yuv420p" and (width % 2 or height % 2):
        raise ValueError(
            f"yuv420p output needs an even width and height, got {width}x{height}; pass size="
        )
    return Output(width, height, color)


class Converter:
    """Converts a reader's pictures; ``turns``/``mirrored`` show them upright.

    Thread-safe: each thread converts with its own swscale context (a reader's
    parallel decoders convert their pictures as they come).
    """

    def __init__(self, path: str, turns: int = 0, mirrored: bool = False) -> None:
        self.path, self.turns, self.mirrored = path, turns, mirrored
        self._local = threading.local()

    @property
    def _reformatter(self) -> VideoReformatter:
        found = getattr(self._local, "reformatter", None)
        if found is None:
            found = self._local.reformatter = VideoReformatter()
        return found

    def convert(self, frame: Any, spec: Output) -> np.ndarray:
        width, height = spec.width, spec.height
        if swaps_axes(self.turns):
            width, height = height, width  # the coded picture lies on its side
        shrink = width < frame.width and height < frame.height
        try:
            converted = self._reformatter.reformat(
                frame,
                width=width,
                height=height,
                format=_SWS_FORMAT[spec.color],
                interpolation="AREA" if shrink else "BILINEAR",
                threads=1,  # parallelism comes from decoding threads and read_clips' pool
            )
            arr = converted.to_ndarray()
        except av.error.FFmpegError as exc:
            raise CorruptVideoError(self.path, f"cannot convert a decoded picture: {exc}") from exc
        if spec.color == "gray":
            arr = arr[..., None]
        return upright(arr, self.turns, self.mirrored, spec.color)

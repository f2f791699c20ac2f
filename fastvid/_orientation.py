"""Frames upright: the display matrix a stream carries, as quarter turns and a mirror.

Phones and some cameras store pictures as the sensor saw them and tell players,
in the stream's display matrix, how to show them: a rotation by a multiple of
90 degrees, possibly mirrored. Every such orientation is ``k`` quarter turns
counter-clockwise (``np.rot90(frame, k)``) followed, or not, by a left-right
mirror. :func:`orientation` reads that pair from a decoded picture;
:func:`upright` applies it to converted frames (RGB, gray or I420 planes).
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# signs of the display matrix's linear part (a, b, c, d) -> (quarter turns, mirror)
_ORIENTATIONS: dict[tuple[int, int, int, int], tuple[int, bool]] = {
    (1, 0, 0, 1): (0, False),
    (-1, 0, 0, 1): (0, True),
    (-1, 0, 0, -1): (2, False),
    (1, 0, 0, -1): (2, True),
    (0, -1, 1, 0): (1, False),
    (0, -1, -1, 0): (1, True),
    (0, 1, -1, 0): (3, False),
    (0, 1, 1, 0): (3, True),
}


def orientation(frame: Any) -> tuple[int, bool]:
    """(quarter turns counter-clockwise, mirrored) that show ``frame`` upright."""
    matrix = None
    for data in getattr(frame, "side_data", ()):
        if "DISPLAYMATRIX" in str(getattr(data, "type", "")):
            matrix = struct.unpack("<9i", bytes(data)[:36])
    if matrix is None:
        return 0, False
    signs = tuple(int(np.sign(round(matrix[i] / 65536))) for i in (0, 1, 3, 4))
    found = _ORIENTATIONS.get(signs)  # type: ignore[arg-type]
    if found is None:  # a rotation that is no multiple of 90 degrees: the nearest one
        turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
        log.info("display matrix %s is no quarter turn; showing %d quarter turns", matrix, turns)
        return turns, False
    return found


def swaps_axes(turns: int) -> bool:
    """True when ``turns`` quarter turns exchange width and height."""
    return turns % 2 == 1


def upright(frame: np.ndarray, turns: int, mirrored: bool, color: str) -> np.ndarray:
    """A converted frame (``(H, W, C)``, or I420 ``(H*3//2, W)``) turned and mirrored."""
    if not turns and not mirrored:
        return frame
    if color == "yuv420p":
        return _upright_i420(frame, turns, mirrored)
    out = np.rot90(frame, turns) if turns else frame
    return out[:, ::-1] if mirrored else out


def _upright_i420(frame: np.ndarray, turns: int, mirrored: bool) -> np.ndarray:
    h, w = frame.shape[0] * 2 // 3, frame.shape[1]
    chroma = frame[h:].reshape(2, h // 2, w // 2)  # U then V, at half resolution
    turned = [upright(p, turns, mirrored, "gray") for p in (frame[:h], chroma[0], chroma[1])]
    out_h, out_w = turned[0].shape
    return np.concatenate([turned[0].ravel(), turned[1].ravel(), turned[2].ravel()]).reshape(
        out_h * 3 // 2, out_w
    )

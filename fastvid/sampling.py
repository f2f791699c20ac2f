"""Which frames a sample takes: pure functions of frame counts, no I/O."""

from __future__ import annotations

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

"""Host arrays laid out for a zero-copy hand-off: 64-byte aligned, C-contiguous.

TensorFlow aborts the process on a misaligned DLPack tensor, so every float
batch fastvid builds on the CPU is allocated here, aligned, and can be handed
to any Keras backend without a copy (:mod:`fastvid.bridge`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ALIGNMENT = 64  # bytes: what TensorFlow requires of host buffers it takes over


def empty_aligned(
    shape: tuple[int, ...], dtype: Any = np.float32, align: int = ALIGNMENT
) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def is_aligned(array: np.ndarray, align: int = ALIGNMENT) -> bool:
    """True when ``array``'s data pointer is a multiple of ``align``."""
    return array.ctypes.data % align == 0


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, aligned copy of ``array``."""
    out = empty_aligned(array.shape, array.dtype)
    np.copyto(out, array)
    return out

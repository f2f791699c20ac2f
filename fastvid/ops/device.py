"""Can the CUDA backend run here? Answered without initialising CUDA in this process.

(What happens when it can is :mod:`fastvid.ops.cuda`; which backend runs is
:mod:`fastvid.ops._backend`.)
"""

from __future__ import annotations

import logging
from functools import cache

log = logging.getLogger(__name__)

_INSTALL_HINT = "install the CUDA extra with `pip install fastvid[cuda]`"

__all__ = ["cuda_unavailable", "is_cupy_array"]


@cache
def cuda_unavailable() -> str | None:
    """None when CuPy imports and sees a device, else the reason it cannot be used."""
    try:
        import cupy  # noqa: PLC0415 (lazy: CuPy is optional and slow to import)
    except Exception as exc:  # ImportError, or a broken CUDA install raising something else
        return f"CuPy is not importable ({exc.__class__.__name__}: {exc}); {_INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver: cudaErrorNoDevice / InsufficientDriver
        return f"CuPy is installed but finds no CUDA device ({exc})"
    if count <= 0:
        return "CuPy is installed but finds no CUDA device"
    return None


def is_cupy_array(x: object) -> bool:
    """True for a CuPy array, without importing CuPy."""
    return type(x).__module__.split(".")[0] == "cupy"

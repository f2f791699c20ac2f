"""Which backend runs the ops: ``"cpu"`` (OpenCV/NumPy) or ``"cuda"`` (CuPy)."""

from __future__ import annotations

import logging
from functools import lru_cache

from fastvid.errors import DeviceUnavailableError

log = logging.getLogger(__name__)

_INSTALL_HINT = "install the CUDA extra with `pip install fastvid[cuda]`"

__all__ = ["DeviceUnavailableError", "is_cupy_array", "resolve_device"]


@lru_cache(maxsize=1)
def _cuda_status() -> str | None:
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


@lru_cache(maxsize=1)
def _auto_device() -> str:
    reason = _cuda_status()
    if reason is None:
        log.info("fastvid.ops: device='auto' -> cuda (CuPy sees a device)")
        return "cuda"
    log.info("fastvid.ops: device='auto' -> cpu (%s)", reason)
    return "cpu"


def resolve_device(device: str = "auto") -> str:
    """Resolve ``"auto"``, ``"cpu"`` or ``"cuda"`` to ``"cpu"`` or ``"cuda"``.

    ``"auto"`` picks CUDA when CuPy imports and sees a device, else the CPU; the
    choice is logged once. ``"cuda"`` without CuPy or a device raises
    :class:`DeviceUnavailableError` saying which is missing.
    """
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return _auto_device()
    if device in ("cuda", "gpu"):
        reason = _cuda_status()
        if reason is not None:
            raise DeviceUnavailableError(f"device='cuda' is not available: {reason}")
        return "cuda"
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def is_cupy_array(x: object) -> bool:
    """True for a CuPy array, without importing CuPy."""
    return type(x).__module__.split(".")[0] == "cupy"

"""Compute backends behind one protocol, and the table that names them.

A backend is a module that exposes ``BACKEND``, an object with the methods of
:class:`ComputeBackend`. The table :data:`BACKENDS` maps a device name to that
module and to a probe that says, without importing it, whether the backend can
run here. ``device="auto"`` takes the first of :data:`AUTO_ORDER` that can.
Adding a backend is one module plus one entry here.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np

from fastvid import _runtime
from fastvid.errors import DeviceUnavailableError
from fastvid.ops._methods import MotionMethod

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
InputFormat = Literal["rgb", "yuv420p"]


class ComputeBackend(Protocol):
    """What :func:`fastvid.ops.prepare` and :func:`fastvid.ops.motion` run on.

    Arguments reach a backend validated; matrices are drawn by
    :mod:`fastvid.ops.affine`, so every backend sees the same draws.
    """

    name: str

    def input_format(self, height: int, width: int) -> InputFormat:
        """What the decoder should deliver for frames of this size (fewest bytes to move)."""

    def prepare(
        self,
        clips: Sequence[Any],
        *,
        height: int,
        width: int,
        color: str,
        rescale: float,
        matrices: np.ndarray,
        input_format: InputFormat,
        zero_outside: bool,
    ) -> Any:
        """uint8 clips -> float32 ``(N, F, height, width, C)`` in one sampling pass; with
        ``zero_outside``, output pixels sampled outside the source picture are 0."""

    def motion(
        self,
        frames: Any,
        method: MotionMethod,
        *,
        levels: int,
        winsize: int,
        iterations: int,
        flow: str,
    ) -> Any:
        """``(N, F+1, H, W, C)`` -> ``(N, F, H, W, C')`` (see :mod:`fastvid.ops._methods`)."""

    def scale(self, x: Any, factor: float) -> Any:
        """``x * factor``, in place where the array allows it."""

    def to_host(self, x: Any) -> np.ndarray:
        """A NumPy array of ``x`` (``x`` itself when it is one)."""

    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's device."""

    def hand_off(self, x: Any) -> Any:
        """``x`` as the active Keras backend takes it (a device tensor stays on the device)."""


def _cuda_unavailable() -> str | None:
    # fork-safe: the probe makes no CUDA call in this process (fastvid.ops.device)
    from fastvid.ops.device import cuda_unavailable  # noqa: PLC0415

    return cuda_unavailable()


def _cuda_expected() -> bool:
    """Whether a user here meant to use CUDA (CuPy is installed): then a fallback warns."""
    from fastvid.ops.device import cupy_missing  # noqa: PLC0415

    return cupy_missing() is None


@dataclass(frozen=True)
class BackendSpec:
    """A row of :data:`BACKENDS`: the module that holds ``BACKEND`` and its probe."""

    module: str
    unavailable: Callable[[], str | None]  # why the backend cannot run here; None: it can
    expected: Callable[[], bool] = lambda: False  # a fallback from it deserves a warning


BACKENDS: dict[str, BackendSpec] = {
    "cpu": BackendSpec("fastvid.ops.cpu", lambda: None),
    "cuda": BackendSpec("fastvid.ops.cuda", _cuda_unavailable, _cuda_expected),
}
AUTO_ORDER = ("cuda", "cpu")
_ALIASES = {"gpu": "cuda"}


@cache
def _auto() -> str:
    """The first backend of :data:`AUTO_ORDER` that can run, each reason logged once per
    process (a warning when the user evidently meant to use it: CuPy is installed)."""
    for name in AUTO_ORDER:
        spec = BACKENDS[name]
        reason = spec.unavailable()
        if reason is None:
            log.info("fastvid.ops: device='auto' -> %s", name)
            return name
        level = logging.WARNING if spec.expected() else logging.INFO
        log.log(level, "fastvid.ops: device='auto' does not use %s: %s", name, reason)
    raise DeviceUnavailableError("no compute backend can run on this machine")


# a forked child decides again (CUDA may not work there even when it did in the parent)
_runtime.reset_after_fork(_auto.cache_clear)


def resolve_device(device: str = "auto") -> str:
    """``"auto"``, ``"cpu"`` or ``"cuda"`` -> the backend name that will run.

    ``"auto"`` picks the first backend of :data:`AUTO_ORDER` that can run here
    (CUDA when a probe subprocess has compiled and launched a kernel with CuPy),
    logging the choice and the reasons once. Naming a backend that cannot run
    raises :class:`fastvid.DeviceUnavailableError` with the reason. Neither makes a
    CUDA call in this process, so a process may fork after it.
    """
    name = _ALIASES.get(device, device)
    if name == "auto":
        return _auto()
    spec = BACKENDS.get(name)
    if spec is None:
        raise ValueError(f"device must be 'auto' or one of {sorted(BACKENDS)}, got {device!r}")
    reason = spec.unavailable()
    if reason is not None:
        raise DeviceUnavailableError(f"device={device!r} is not available: {reason}")
    return name


def get_backend(device: str = "auto") -> ComputeBackend:
    """The :class:`ComputeBackend` for a device name (see :func:`resolve_device`)."""
    return _load(resolve_device(device))


@cache
def _load(name: str) -> ComputeBackend:
    return importlib.import_module(BACKENDS[name].module).BACKEND


def backend_of(x: Any) -> ComputeBackend | None:
    """The loaded backend whose device holds ``x``, or None (a NumPy array: the CPU's)."""
    if isinstance(x, np.ndarray):
        return None
    for name in BACKENDS:
        if name == "cpu":
            continue
        module = sys.modules.get(BACKENDS[name].module)
        if module is not None and module.BACKEND.owns(x):
            return module.BACKEND
    return None

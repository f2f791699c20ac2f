"""Frame processing: uint8 decoded frames -> the float32 batch a model eats.

Two operations, two backends, one API:

* :func:`prepare`: colour, resize and a per-sequence affine augmentation in one
  sampling pass, then ``rescale``; ``(N, F, H, W, C)`` float32.
* :func:`motion`: differences, masks and optical flow between consecutive frames,
  with keras-video-generators' ``OpticalFlowGenerator`` semantics.

``device="cpu"`` runs OpenCV/NumPy (:mod:`fastvid.ops.cpu`, threaded), ``"cuda"``
runs CuPy kernels (:mod:`fastvid.ops.cuda`, imported only when used), ``"auto"``
picks CUDA when CuPy sees a device.

Backend interface (both :mod:`fastvid.ops.cpu` and :mod:`fastvid.ops.cuda`)::

    prepare(clips: list[array], *, size: (W, H), color: "rgb"|"gray", rescale: float,
            matrices: float64 (N, 2, 3) numpy, input_format: "rgb"|"yuv420p") -> (N,F,H,W,C)
    motion(frames: (N, F+1, H, W, C) float32 or uint8, method: int | "flow_raw", *,
           levels: int, winsize: int, iterations: int, flow: "farneback"|"dis") -> (N,F,H,W,C')

This module validates arguments, draws the matrices (:mod:`fastvid.ops.affine`, so
both backends see the same draws) and dispatches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastvid.ops.affine import AugmentParams, batch_matrices, make_rng
from fastvid.ops.device import DeviceUnavailableError, is_cupy_array, resolve_device

log = logging.getLogger(__name__)

# keras-video-generators' OpticalFlowGenerator constants (same values)
METHOD_OPTICAL_FLOW = 1
METHOD_FLOW_MASK = 2
METHOD_DIFF_MASK = 3
METHOD_ABS_DIFF = 4
METHOD_FLOW_RAW = "flow_raw"

METHODS: dict[Any, int | str] = {
    METHOD_OPTICAL_FLOW: METHOD_OPTICAL_FLOW,
    METHOD_FLOW_MASK: METHOD_FLOW_MASK,
    METHOD_DIFF_MASK: METHOD_DIFF_MASK,
    METHOD_ABS_DIFF: METHOD_ABS_DIFF,
    METHOD_FLOW_RAW: METHOD_FLOW_RAW,
    "optical_flow": METHOD_OPTICAL_FLOW,
    "flow_mask": METHOD_FLOW_MASK,
    "diff_mask": METHOD_DIFF_MASK,
    "abs_diff": METHOD_ABS_DIFF,
}
FLOW_ALGORITHMS = ("farneback", "dis")

__all__ = [
    "METHOD_ABS_DIFF",
    "METHOD_DIFF_MASK",
    "METHOD_FLOW_MASK",
    "METHOD_FLOW_RAW",
    "METHOD_OPTICAL_FLOW",
    "AugmentParams",
    "DeviceUnavailableError",
    "motion",
    "normalize_method",
    "prepare",
    "resolve_device",
    "set_num_threads",
    "source_size",
]


def set_num_threads(n: int | None) -> None:
    """Threads of the CPU backend (default: the usable cores, or ``FASTVID_THREADS``).

    ``None`` restores the default; 1 runs everything in the calling thread. OpenCV's
    own thread count (``cv2.setNumThreads``) is left alone: at these image sizes its
    resize/warp run single-threaded inside each of our tasks anyway.
    """
    from fastvid.ops import cpu  # noqa: PLC0415

    cpu.set_num_threads(n)


def _backend(device: str):
    if device == "cuda":
        from fastvid.ops import cuda  # noqa: PLC0415 (CuPy only when asked for)

        return cuda
    from fastvid.ops import cpu  # noqa: PLC0415

    return cpu


def normalize_method(method: int | str) -> int | str:
    """The canonical method (an int constant or ``"flow_raw"``) for a constant or name."""
    key = method.lower() if isinstance(method, str) else method
    try:
        return METHODS[key]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown motion method {method!r}: use METHOD_ABS_DIFF (4), METHOD_DIFF_MASK (3), "
            "METHOD_OPTICAL_FLOW (1), METHOD_FLOW_MASK (2) or 'flow_raw'"
        ) from None


def source_size(clip_shape: Sequence[int], input_format: str) -> tuple[int, int]:
    """Source ``(w, h)`` of a clip of shape ``(F, h, w, 3)`` or I420 ``(F, h*3//2, w)``."""
    if input_format == "yuv420p":
        if len(clip_shape) != 3 or clip_shape[1] % 3:
            raise ValueError(f"an I420 clip has shape (F, h*3//2, w), got {tuple(clip_shape)}")
        return int(clip_shape[2]), int(clip_shape[1]) * 2 // 3
    if input_format == "rgb":
        if len(clip_shape) != 4 or clip_shape[3] != 3:
            raise ValueError(f"an RGB clip has shape (F, h, w, 3), got {tuple(clip_shape)}")
        return int(clip_shape[2]), int(clip_shape[1])
    raise ValueError(f"input_format must be 'rgb' or 'yuv420p', got {input_format!r}")


def prepare(
    clips: Sequence[Any] | Any,
    *,
    size: tuple[int, int],
    color: str = "rgb",
    rescale: float = 1 / 255,
    augment: AugmentParams | None = None,
    seed: int | np.random.Generator | None = None,
    input_format: str = "rgb",
    device: str = "auto",
) -> Any:
    """uint8 clips -> float32 batch ``(N, F, H, W, C)``, one sampling pass per frame.

    Args:
        clips: N uint8 clips, each ``(F, h, w, 3)`` RGB, or ``(F, h*3//2, w)`` I420 when
            ``input_format="yuv420p"``; a 5-D array ``(N, F, h, w, 3)`` works too.
            Clips may differ in ``h, w`` but share ``F``.
        size: output ``(width, height)``.
        color: ``"rgb"`` (C=3) or ``"gray"`` (C=1, 0.299 R + 0.587 G + 0.114 B).
        rescale: the float result is multiplied by this (default 1/255 -> [0, 1]).
        augment: random flip/rotation/zoom/shift, drawn once per clip and applied to
            all its frames; None for a plain resize.
        seed: int, ``np.random.Generator`` (advanced in place) or None; the same seed
            gives the same augmentation on every backend.
        input_format: ``"rgb"`` or ``"yuv420p"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        float32 ``(N, F, H, W, C)``: a NumPy array on the CPU, a CuPy array on CUDA.

    Raises:
        ValueError: bad shapes, dtypes or options.
        DeviceUnavailableError: ``device="cuda"`` without CuPy or a device.
    """
    if color not in ("rgb", "gray"):
        raise ValueError(f"color must be 'rgb' or 'gray', got {color!r}")
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive (width, height), got {size!r}")
    clip_list = list(clips)
    if not clip_list:
        raise ValueError("prepare needs at least one clip")
    frames = None
    src_sizes = []
    for i, clip in enumerate(clip_list):
        if clip.dtype != np.uint8:
            raise ValueError(f"clip {i} has dtype {clip.dtype}, expected uint8")
        src_sizes.append(source_size(clip.shape, input_format))
        if frames is None:
            frames = clip.shape[0]
        elif clip.shape[0] != frames:
            raise ValueError(f"clips must share the frame count: {frames} vs {clip.shape[0]}")
    matrices = batch_matrices(src_sizes, (width, height), augment, make_rng(seed))
    dev = resolve_device(device)
    if dev == "cpu" and any(is_cupy_array(c) for c in clip_list):
        clip_list = [c.get() if is_cupy_array(c) else c for c in clip_list]
    return _backend(dev).prepare(
        clip_list,
        size=(width, height),
        color=color,
        rescale=float(rescale),
        matrices=matrices,
        input_format=input_format,
    )


def motion(
    frames: Any,
    method: int | str,
    *,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    flow: str = "farneback",
    device: str = "auto",
) -> Any:
    """Motion between consecutive frames: ``(N, F+1, H, W, C)`` -> ``(N, F, H, W, C')``.

    Args:
        frames: float32 in [0, 1] (prepared with ``rescale=1/255``) or uint8, RGB (C=3)
            or gray (C=1); a 4-D ``(F+1, H, W, C)`` array is taken as one sequence.
        method: ``METHOD_ABS_DIFF`` |a - b|; ``METHOD_DIFF_MASK`` the absolute difference
            blurred (15x15 Gaussian) times the mean of the two frames;
            ``METHOD_OPTICAL_FLOW`` dense flow rendered HSV -> RGB (angle as hue,
            normalised magnitude as value); ``METHOD_FLOW_MASK`` that rendering blurred
            (15x15 Gaussian) times the mean of the two frames; ``"flow_raw"`` the flow
            itself, 2 channels (dx, dy) in pixels, float32 (exact formulas:
            :func:`fastvid.ops.cpu.motion`).
        levels, winsize, iterations: Farneback parameters (pyr_scale 0.5, poly_n 5,
            poly_sigma 1.1 fixed).
        flow: ``"farneback"`` or ``"dis"`` (``cv2.DISOpticalFlow``, medium preset:
            about 1.8x faster than Farneback on one core, as accurate on smooth motion).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; a CuPy input stays on CUDA.

    Returns:
        ``(N, F, H, W, C)`` in the input's scale and dtype family (float32 for float
        input; float32 for uint8 input, on the 0..255 scale); ``C = 2`` for ``"flow_raw"``
        (always pixels).
    """
    canonical = normalize_method(method)
    if flow not in FLOW_ALGORITHMS:
        raise ValueError(f"flow must be 'farneback' or 'dis', got {flow!r}")
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be (N, F+1, H, W, C) with C 1 or 3, got {frames.shape}")
    if frames.shape[1] < 2:
        raise ValueError("motion needs at least two frames per sequence")
    if frames.dtype not in (np.uint8, np.float32):
        raise ValueError(f"frames must be uint8 or float32, got {frames.dtype}")
    if device == "auto" and is_cupy_array(frames):
        dev = "cuda"
    else:
        dev = resolve_device(device)
    if dev == "cpu" and is_cupy_array(frames):
        frames = frames.get()
    return _backend(dev).motion(
        frames,
        canonical,
        levels=int(levels),
        winsize=int(winsize),
        iterations=int(iterations),
        flow=flow,
    )

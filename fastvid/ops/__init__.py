"""Frame processing: uint8 decoded frames -> the float32 batch a model eats.

Two operations, one API, any compute backend:

* :func:`prepare`: colour, resize and a per-sequence affine augmentation in one
  sampling pass, then ``rescale``; ``(N, F, H, W, C)`` float32.
* :func:`motion`: differences, masks and optical flow between consecutive
  frames, with keras-video-generators' ``OpticalFlowGenerator`` semantics (the
  methods are the table of :mod:`fastvid.ops._methods`).

``device="cpu"`` runs OpenCV/NumPy (:mod:`fastvid.ops.cpu`, threaded),
``"cuda"`` CuPy kernels (:mod:`fastvid.ops.cuda`, imported only when used),
``"auto"`` the first that can run here (:mod:`fastvid.ops._backend`). This
module validates arguments, draws the augmentation matrices
(:mod:`fastvid.ops.affine`, so every backend sees the same draws) and
dispatches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from fastvid import _checks
from fastvid.errors import DeviceUnavailableError
from fastvid.ops._backend import (
    BACKENDS,
    ComputeBackend,
    Device,
    InputFormat,
    backend_of,
    get_backend,
    resolve_device,
)
from fastvid.ops._methods import (
    METHOD_ABS_DIFF,
    METHOD_DIFF_MASK,
    METHOD_FLOW_MASK,
    METHOD_FLOW_RAW,
    METHOD_OPTICAL_FLOW,
    MOTION_METHODS,
    MotionMethod,
    motion_method,
)
from fastvid.ops.affine import ASPECTS, AugmentParams, batch_matrices, make_rng

log = logging.getLogger(__name__)

FLOW_ALGORITHMS = ("farneback", "dis")

__all__ = [
    "BACKENDS",
    "FLOW_ALGORITHMS",
    "METHOD_ABS_DIFF",
    "METHOD_DIFF_MASK",
    "METHOD_FLOW_MASK",
    "METHOD_FLOW_RAW",
    "METHOD_OPTICAL_FLOW",
    "MOTION_METHODS",
    "AugmentParams",
    "ComputeBackend",
    "DeviceUnavailableError",
    "MotionMethod",
    "get_backend",
    "motion",
    "motion_method",
    "prepare",
    "resolve_device",
    "set_num_threads",
    "source_size",
]


def set_num_threads(n: int | None) -> None:
    """Threads of the CPU backend (default: ``FASTVID_THREADS`` or the usable cores).

    ``None`` restores the default; 1 runs everything in the calling thread.
    OpenCV's own thread count (``cv2.setNumThreads``) is left alone: at these
    image sizes its resize/warp run single-threaded inside each of our tasks.
    """
    from fastvid.ops import cpu  # noqa: PLC0415

    cpu.set_num_threads(n)


def source_size(clip_shape: Sequence[int], input_format: str) -> tuple[int, int]:
    """Source ``(height, width)`` of a clip of shape ``(F, h, w, 3)`` or I420 ``(F, h*3//2, w)``."""
    if input_format == "yuv420p":
        if len(clip_shape) != 3 or clip_shape[1] % 3:
            raise ValueError(f"an I420 clip has shape (F, h*3//2, w), got {tuple(clip_shape)}")
        return int(clip_shape[1]) * 2 // 3, int(clip_shape[2])
    if input_format == "rgb":
        if len(clip_shape) != 4 or clip_shape[3] != 3:
            raise ValueError(f"an RGB clip has shape (F, h, w, 3), got {tuple(clip_shape)}")
        return int(clip_shape[1]), int(clip_shape[2])
    raise ValueError(f"input_format must be 'rgb' or 'yuv420p', got {input_format!r}")


def prepare(
    clips: Sequence[Any] | Any,
    *,
    size: tuple[int, int],
    color: Literal["rgb", "gray"] = "rgb",
    rescale: float = 1 / 255,
    augment: AugmentParams | None = None,
    seed: int | np.random.Generator | None = None,
    input_format: InputFormat = "rgb",
    aspect: Literal["stretch", "crop", "pad"] = "stretch",
    device: Device = "auto",
) -> Any:
    """uint8 clips -> float32 batch ``(N, F, H, W, C)``, one sampling pass per frame.

    Args:
        clips: N uint8 clips, each ``(F, h, w, 3)`` RGB, or ``(F, h*3//2, w)`` I420 when
            ``input_format="yuv420p"``; a 5-D array ``(N, F, h, w, 3)`` works too.
            Clips may differ in ``h, w`` but share ``F``.
        size: output ``(height, width)``.
        color: ``"rgb"`` (C=3) or ``"gray"`` (C=1, 0.299 R + 0.587 G + 0.114 B).
        rescale: the float result is multiplied by this (default 1/255 -> [0, 1]).
        augment: random flip/rotation/zoom/shift, drawn once per clip and applied to
            all its frames; None for a plain resize.
        seed: int, ``np.random.Generator`` (advanced in place) or None; the same seed
            gives the same augmentation on every backend.
        input_format: ``"rgb"`` or ``"yuv420p"``.
        aspect: ``"stretch"`` (each axis scaled to fit), ``"crop"`` (the largest centred
            window of the output's shape, no distortion) or ``"pad"`` (the whole picture,
            centred, no distortion, zeros around): Keras's ``crop_to_aspect_ratio`` and
            ``pad_to_aspect_ratio``, in the same sampling pass.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        float32 ``(N, F, H, W, C)``: a NumPy array on the CPU, a CuPy array on CUDA.

    Raises:
        ValueError: bad shapes, dtypes or options.
        DeviceUnavailableError: ``device="cuda"`` without CuPy or a device.
    """
    _checks.one_of(color, "color", ("rgb", "gray"))
    height, width = _checks.size_hw(size, "size")
    clip_list = list(clips)
    if not clip_list:
        raise ValueError("prepare needs at least one clip")
    frames = None
    sources = []
    for i, clip in enumerate(clip_list):
        if clip.dtype != np.uint8:
            raise ValueError(f"clip {i} has dtype {clip.dtype}, expected uint8")
        h, w = source_size(clip.shape, input_format)
        sources.append((w, h))  # the affine maths, like OpenCV, goes (x, y)
        if frames is None:
            frames = clip.shape[0]
        elif clip.shape[0] != frames:
            raise ValueError(f"clips must share the frame count: {frames} vs {clip.shape[0]}")
    _checks.one_of(aspect, "aspect", ASPECTS)
    matrices = batch_matrices(sources, (width, height), augment, make_rng(seed), aspect)
    backend = get_backend(device)
    clip_list = [_on(backend, c) for c in clip_list]
    return backend.prepare(
        clip_list,
        height=height,
        width=width,
        color=color,
        rescale=float(rescale),
        matrices=matrices,
        input_format=input_format,
        zero_outside=aspect == "pad",
    )


def _on(backend: ComputeBackend, x: Any) -> Any:
    """``x`` where ``backend`` can read it: a device array of another backend comes home."""
    owner = backend_of(x)
    return owner.to_host(x) if owner is not None and owner is not backend else x


def motion(
    frames: Any,
    method: int | str | MotionMethod,
    *,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    flow: Literal["farneback", "dis"] = "farneback",
    device: Device = "auto",
) -> Any:
    """Motion between consecutive frames: ``(N, F+1, H, W, C)`` -> ``(N, F, H, W, C')``.

    Args:
        frames: float32 in [0, 1] (prepared with ``rescale=1/255``) or uint8, RGB (C=3)
            or gray (C=1); a 4-D ``(F+1, H, W, C)`` array is taken as one sequence.
        method: a :data:`MOTION_METHODS` constant or name. ``METHOD_ABS_DIFF``
            |a - b|; ``METHOD_DIFF_MASK`` the absolute difference blurred (15x15
            Gaussian) times the mean of the two frames; ``METHOD_OPTICAL_FLOW`` dense
            flow rendered HSV -> RGB (angle as hue, normalised magnitude as value);
            ``METHOD_FLOW_MASK`` that rendering blurred times the mean of the two
            frames; ``"flow_raw"`` the flow itself, 2 channels (dx, dy) in pixels
            (exact formulas: :func:`fastvid.ops.cpu.motion`).
        levels, winsize, iterations: Farneback parameters (pyr_scale 0.5, poly_n 5,
            poly_sigma 1.1 fixed).
        flow: ``"farneback"`` or ``"dis"`` (``cv2.DISOpticalFlow``, medium preset).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; a device array stays on its device
            with ``"auto"``.

    Returns:
        ``(N, F, H, W, C)`` float32 in the input's scale (0..255 for uint8 input);
        ``C = 2`` for ``"flow_raw"`` (always pixels).
    """
    chosen = motion_method(method)
    _checks.one_of(flow, "flow", FLOW_ALGORITHMS)
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be (N, F+1, H, W, C) with C 1 or 3, got {frames.shape}")
    if frames.shape[1] < 2:
        raise ValueError("motion needs at least two frames per sequence")
    if frames.dtype not in (np.uint8, np.float32):
        raise ValueError(f"frames must be uint8 or float32, got {frames.dtype}")
    owner = backend_of(frames)
    backend = owner if device == "auto" and owner is not None else get_backend(device)
    return backend.motion(
        _on(backend, frames),
        chosen,
        levels=int(levels),
        winsize=int(winsize),
        iterations=int(iterations),
        flow=flow,
    )

"""Dense optical flow (Farneback, DIS) and its HSV rendering, shared by both backends.

Flow runs on uint8 gray frames. Farneback uses keras-video-generators' parameters
(pyr_scale 0.5, poly_n 5, poly_sigma 1.1; ``levels``, ``winsize``, ``iterations``
exposed). On the CPU the frame pairs are spread over a thread pool (OpenCV's flow
releases the GIL and is mostly single-threaded inside), so flow scales with cores.
When asked for (the CUDA backend), Farneback runs on ``cv2.cuda`` if OpenCV was built
with CUDA and sees a device; the PyPI wheels are not, so it falls back to the CPU and
says so once.

Rendering (:func:`render_flow`), the rule the CUDA kernel follows too: with
``mag = hypot(dx, dy)`` and ``ang = atan2(dy, dx)`` in degrees in [0, 360),
``V = (mag - min mag) / (max mag - min mag)`` over the frame (0 when the frame's
magnitude is constant), ``S = 1``, ``H = ang``; then HSV -> RGB as OpenCV's float
conversion: ``h = H / 60``, ``i = floor(h)``, ``f = h - i``, and (r, g, b) =
(V, Vf, 0), (V(1-f), V, 0), (0, V, Vf), (0, V(1-f), V), (Vf, 0, V), (V, 0, V(1-f))
for i = 0..5. keras-video-generators rendered hue in 2-degree uint8 steps with
``cv2.cartToPolar`` (about 0.3 degree error) and labelled BGR output as RGB; fastvid
renders exactly, in float, as RGB.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import cv2
import numpy as np

from fastvid import _runtime
from fastvid._arrays import empty_aligned

log = logging.getLogger(__name__)

PYR_SCALE = 0.5
POLY_N = 5
POLY_SIGMA = 1.1
DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM

_local = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    # a DIS object keeps per-call state: one per thread
    inst = getattr(_local, "dis", None)
    if inst is None:
        inst = cv2.DISOpticalFlow_create(DIS_PRESET)
        _local.dis = inst
    return inst


def flow_pair(
    prev: np.ndarray,
    nxt: np.ndarray,
    *,
    algorithm: str = "farneback",
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
) -> np.ndarray:
    """Flow (H, W, 2) float32 from ``prev`` to ``nxt`` (uint8 gray (H, W)), on the CPU."""
    if algorithm == "farneback":
        return cv2.calcOpticalFlowFarneback(
            prev, nxt, None, PYR_SCALE, levels, winsize, iterations, POLY_N, POLY_SIGMA, 0
        )
    if algorithm == "dis":
        return _dis().calc(prev, nxt, None)
    raise ValueError(f"flow must be 'farneback' or 'dis', got {algorithm!r}")


@lru_cache(maxsize=1)
def cuda_flow_available() -> bool:
    """True when OpenCV has CUDA and sees a device (never with the PyPI wheels)."""
    try:
        return cv2.cuda.getCudaEnabledDeviceCount() > 0
    except (AttributeError, cv2.error):
        return False


@lru_cache(maxsize=2)
def _warn_cpu_flow(algorithm: str) -> None:
    if algorithm == "dis":
        reason = "OpenCV has no CUDA DIS flow"
    else:
        reason = "this OpenCV build has no CUDA support or sees no device"
    log.info("fastvid.ops: %s optical flow runs on the CPU (%s)", algorithm, reason)


def _cuda_farneback(gray: np.ndarray, out: np.ndarray, levels: int, winsize: int, its: int):
    # the binding's spelling differs between OpenCV versions
    create = getattr(cv2.cuda, "FarnebackOpticalFlow_create", None)
    if create is None:
        create = cv2.cuda_FarnebackOpticalFlow.create
    algo = create(
        numLevels=levels,
        pyrScale=PYR_SCALE,
        fastPyramids=False,
        winSize=winsize,
        numIters=its,
        polyN=POLY_N,
        polySigma=POLY_SIGMA,
        flags=0,
    )
    prev_gpu, next_gpu = cv2.cuda.GpuMat(), cv2.cuda.GpuMat()
    for i in range(gray.shape[0]):
        prev_gpu.upload(gray[i, 0])
        for j in range(gray.shape[1] - 1):
            next_gpu.upload(gray[i, j + 1])
            out[i, j] = algo.calc(prev_gpu, next_gpu, None).download()
            prev_gpu, next_gpu = next_gpu, prev_gpu


def compute_flows(
    gray: np.ndarray,
    *,
    algorithm: str = "farneback",
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    use_cuda: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Flow between consecutive frames: uint8 ``(N, F+1, H, W)`` -> float32 ``(N, F, H, W, 2)``.

    Args:
        gray: uint8 gray frames, C-contiguous.
        algorithm: ``"farneback"`` or ``"dis"`` (``cv2.DISOpticalFlow``, medium preset).
        levels, winsize, iterations: Farneback parameters.
        use_cuda: try ``cv2.cuda`` Farneback first (falls back to the CPU, logged once).
        threads: CPU threads (default: ``FASTVID_THREADS`` or the cores).
    """
    if gray.dtype != np.uint8 or gray.ndim != 4:
        raise ValueError(
            f"flow needs uint8 (N, F+1, H, W) gray frames, got {gray.dtype} {gray.shape}"
        )
    gray = np.ascontiguousarray(gray)
    n, f1, h, w = gray.shape
    out = empty_aligned((n, f1 - 1, h, w, 2), np.float32)
    if use_cuda:
        if algorithm == "farneback" and cuda_flow_available():
            _cuda_farneback(gray, out, levels, winsize, iterations)
            return out
        _warn_cpu_flow(algorithm)

    def task(i: int, j: int) -> None:
        out[i, j] = flow_pair(
            gray[i, j],
            gray[i, j + 1],
            algorithm=algorithm,
            levels=levels,
            winsize=winsize,
            iterations=iterations,
        )

    pairs = [(i, j) for i in range(n) for j in range(f1 - 1)]
    _runtime.run_tasks(task, pairs, _runtime.default_threads() if threads is None else threads)
    return out


def render_flow(flow: np.ndarray) -> np.ndarray:
    """HSV rendering of one flow field (H, W, 2) -> RGB float32 (H, W, 3) in [0, 1]."""
    dx, dy = cv2.split(np.ascontiguousarray(flow, dtype=np.float32))
    # exact atan2 (cv2.cartToPolar's is good to ~0.3 degree only), in degrees, [0, 360)
    hue = np.arctan2(dy, dx)
    hue *= np.float32(180.0 / np.pi)
    np.add(hue, np.float32(360.0), out=hue, where=hue < 0)
    hue[hue >= 360.0] = 0.0  # -tiny + 360 rounds to 360 in float32
    mag = cv2.magnitude(dx, dy)
    lo, hi = float(mag.min()), float(mag.max())
    if hi - lo > np.finfo(np.float64).eps:
        value = (mag - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    else:  # constant magnitude: black, as cv2.normalize's NORM_MINMAX
        value = np.zeros_like(mag)
    hsv = cv2.merge([hue, np.ones_like(mag), value])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def render_flows(flows: np.ndarray) -> np.ndarray:
    """:func:`render_flow` over ``(..., H, W, 2)`` -> ``(..., H, W, 3)`` float32 in [0, 1]."""
    lead = flows.shape[:-3]
    flat = flows.reshape((-1,) + flows.shape[-3:])
    out = np.empty(flat.shape[:-1] + (3,), np.float32)
    for k in range(flat.shape[0]):
        out[k] = render_flow(flat[k])
    return out.reshape(lead + out.shape[1:])

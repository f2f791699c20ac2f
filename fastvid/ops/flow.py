"""Dense optical flow (Farneback, DIS) and its HSV rendering, shared by both backends.

Flow runs on uint8 gray frames. Farneback uses keras-video-generators' parameters
(pyr_scale 0.5, poly_n 5, poly_sigma 1.1; ``levels``, ``winsize``, ``iterations``
exposed). On the CPU the frame pairs are spread over a thread pool (OpenCV's flow
releases the GIL and is mostly single-threaded inside), so flow scales with cores.
When asked for (the CUDA backend), Farneback runs on ``cv2.cuda`` if OpenCV was built
with CUDA, its optical-flow module and device-memory wrappers (OpenCV 4.8+), and sees
a device: on the CUDA backend's own memory and stream, one reused Farneback object per
thread (:class:`CudaFarneback`). The PyPI wheels have no CUDA, so flow then falls back
to the CPU and says why, once. CUDA Farneback is not the CPU one: its flows differ
by design (a GPU and the CPU agree on gray input, not on the flow).

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
from typing import Any

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


# ------------------------------------------------------------------------------ cv2.cuda
#
# Only OpenCV built with CUDA (never the PyPI wheels) runs Farneback on the GPU. Every
# cv2.cuda call below is guarded by cuda_flow_unavailable(): on a build without CUDA
# some of them (wrapStream) abort the process instead of raising.


def _farneback_factory() -> Any:
    """``cv2.cuda.FarnebackOpticalFlow.create`` under whichever name this OpenCV binds it."""
    cuda = getattr(cv2, "cuda", None)
    for owner, name in (
        (getattr(cuda, "FarnebackOpticalFlow", None), "create"),
        (cuda, "FarnebackOpticalFlow_create"),
        (getattr(cv2, "cuda_FarnebackOpticalFlow", None), "create"),
    ):
        found = getattr(owner, name, None) if owner is not None else None
        if found is not None:
            return found
    return None


@lru_cache(maxsize=1)
def _cuda_farneback_unavailable() -> str | None:
    cuda = getattr(cv2, "cuda", None)
    if cuda is None:
        return "this OpenCV has no cv2.cuda module"
    try:
        count = cuda.getCudaEnabledDeviceCount()
    except (AttributeError, cv2.error) as exc:
        return f"this OpenCV cannot count CUDA devices ({exc})"
    if count <= 0:
        return "this OpenCV build has no CUDA support (the PyPI wheels have none) or sees no device"
    if _farneback_factory() is None:
        return "this OpenCV has CUDA but not its optical-flow module (cudaoptflow)"
    for name in ("GpuMat", "createGpuMatFromCudaMemory", "wrapStream"):
        if not hasattr(cuda, name):
            return f"this OpenCV's cv2.cuda has no {name} (OpenCV 4.8 or later has it)"
    return None


def cuda_flow_unavailable(algorithm: str = "farneback") -> str | None:
    """Why ``algorithm`` cannot run on ``cv2.cuda`` here, or None when it can."""
    if algorithm != "farneback":
        return f"OpenCV has no CUDA {algorithm} flow"
    return _cuda_farneback_unavailable()


def cuda_flow_available() -> bool:
    """True when OpenCV has CUDA Farneback and sees a device (never with the PyPI wheels)."""
    return _cuda_farneback_unavailable() is None


@lru_cache(maxsize=4)
def _warn_cpu_flow(algorithm: str, reason: str | None = None) -> None:
    reason = reason or cuda_flow_unavailable(algorithm) or "cv2.cuda is not used here"
    log.info("fastvid.ops: %s optical flow runs on the CPU (%s)", algorithm, reason)


class CudaFarneback:
    """One ``cv2.cuda`` Farneback object, reused for every pair (it keeps its pyramids and
    buffers between calls); not thread-safe, so :func:`cuda_farneback` keeps one per thread
    and parameter set."""

    def __init__(self, levels: int, winsize: int, iterations: int) -> None:
        self.algo = _farneback_factory()(
            numLevels=levels,
            pyrScale=PYR_SCALE,
            fastPyramids=False,
            winSize=winsize,
            numIters=iterations,
            polyN=POLY_N,
            polySigma=POLY_SIGMA,
            flags=0,
        )

    def calc_device(
        self, gray_ptr: int, flow_ptr: int, shape: tuple[int, int, int, int], stream_ptr: int
    ) -> None:
        """Flows of ``(N, F+1, H, W)`` uint8 device frames at ``gray_ptr`` into the
        ``(N, F, H, W, 2)`` float32 device array at ``flow_ptr``, on the CUDA stream
        ``stream_ptr``: OpenCV reads and writes that memory in place (no host copy)."""
        n, f1, h, w = shape
        stream = cv2.cuda.wrapStream(stream_ptr)
        wrap = cv2.cuda.createGpuMatFromCudaMemory
        frame, pair = h * w, h * w * 8
        for i in range(n):
            for j in range(f1 - 1):
                prev = wrap(h, w, cv2.CV_8UC1, gray_ptr + (i * f1 + j) * frame, w)
                nxt = wrap(h, w, cv2.CV_8UC1, gray_ptr + (i * f1 + j + 1) * frame, w)
                target = flow_ptr + (i * (f1 - 1) + j) * pair
                out = wrap(h, w, cv2.CV_32FC2, target, w * 8)
                got = self.algo.calc(prev, nxt, out, stream=stream)
                if got is not None and got.cudaPtr() != target:  # OpenCV reallocated it
                    got.copyTo(out, stream=stream)

    def calc_host(self, gray: np.ndarray, out: np.ndarray) -> None:
        """The same for host arrays (uploads each frame once, downloads each flow)."""
        stream = cv2.cuda.Stream()
        frames = [cv2.cuda.GpuMat(), cv2.cuda.GpuMat()]
        flow_gpu = cv2.cuda.GpuMat(gray.shape[2], gray.shape[3], cv2.CV_32FC2)
        for i in range(gray.shape[0]):
            frames[0].upload(gray[i, 0], stream=stream)
            for j in range(gray.shape[1] - 1):
                frames[1].upload(gray[i, j + 1], stream=stream)
                flow_gpu = self.algo.calc(frames[0], frames[1], flow_gpu, stream=stream)
                flow_gpu.download(stream=stream, dst=out[i, j])
                frames.reverse()
        stream.waitForCompletion()


def cuda_farneback(levels: int, winsize: int, iterations: int) -> CudaFarneback:
    """This thread's :class:`CudaFarneback` for these parameters (made on first use)."""
    cache = getattr(_local, "farneback", None)
    if cache is None:
        cache = _local.farneback = {}
    key = (levels, winsize, iterations)
    found = cache.get(key)
    if found is None:
        found = cache[key] = CudaFarneback(levels, winsize, iterations)
    return found


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
        use_cuda: try ``cv2.cuda`` Farneback first (falls back to the CPU, logged once with
            the reason). Device arrays go through :meth:`CudaFarneback.calc_device`.
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
        reason = cuda_flow_unavailable(algorithm)
        if reason is None:
            cuda_farneback(levels, winsize, iterations).calc_host(gray, out)
            return out
        _warn_cpu_flow(algorithm, reason)

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

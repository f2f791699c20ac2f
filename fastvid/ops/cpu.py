"""CPU backend of :mod:`fastvid.ops`: OpenCV and NumPy, threaded over frames.

OpenCV and large NumPy operations release the GIL, so a plain thread pool spreads
the per-frame work over the cores. Each task takes a run of frames of one sequence;
per frame, one ``cv2.resize``/``cv2.warpAffine`` into a small per-thread uint8 scratch
(cache-hot, reused) and one NumPy multiply from it straight into the preallocated,
64-byte-aligned float32 output. Sampling uint8 then converting the (smaller) output
costs the same as converting the source first at 320x240 -> 224x224 and less when
shrinking further; it also keeps ``cv2.resize``'s exact uint8 result. OpenCV's own
thread count is left alone: at these sizes resize/warp/Farneback run serially
inside each task, and DIS's inner parallel loop runs serially when the OpenCV pool
is busy, so the two pools do not oversubscribe the cores.

Numbers (shared with the GPU backend, see :mod:`fastvid.ops.affine`):

* sampling is bilinear at the points of the sequence's matrix, border replicate;
  OpenCV rounds the sampled value to uint8 (at most 0.5 level from exact bilinear
  for ``warpAffine``, 0.76 for ``resize``'s fixed-point weights);
* gray from RGB is ``0.299 R + 0.587 G + 0.114 B`` in float32, applied after sampling
  (the operations commute), so it is not rounded twice;
* I420 input: ``cv2.COLOR_YUV2RGB_I420`` at full resolution (BT.601 limited range,
  nearest chroma, rounded to uint8), then sampling; gray from I420 is
  ``clamp(round(255/219 * (Y - 16)))`` on the luma plane, then sampling.

Motion methods (``motion``) follow keras-video-generators' ``OpticalFlowGenerator``;
the formulas are in :func:`motion`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import cv2
import numpy as np

from fastvid import _runtime
from fastvid._arrays import empty_aligned
from fastvid.ops import flow as flowmod
from fastvid.ops._methods import BLUR_KSIZE, GRAY_WEIGHTS, MotionMethod
from fastvid.ops.affine import is_plain_resize, outside_source

log = logging.getLogger(__name__)

_num_threads: int | None = None  # set_num_threads; None: the process default
_POOL = "ops"


def default_threads() -> int:
    """Threads the CPU backend uses: ``set_num_threads``, ``FASTVID_THREADS`` or the cores."""
    return _num_threads if _num_threads is not None else _runtime.default_threads()


def set_num_threads(n: int | None) -> None:
    """Set the CPU backend's thread count (None: back to the default); 1 runs inline."""
    global _num_threads
    _num_threads = None if n is None else max(1, int(n))
    _runtime.shutdown_pools(_POOL)


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple], threads: int | None = None) -> None:
    """Run ``fn(*task)`` for every task on the backend's pool (see :func:`_runtime.run_tasks`)."""
    _runtime.run_tasks(fn, tasks, default_threads() if threads is None else threads, _POOL)


def _chunks(num_seq: int, num_frames: int, threads: int) -> list[tuple[int, int, int]]:
    """(sequence, first frame, end frame) runs: whole sequences unless that starves threads."""
    per_seq = max(1, -(-threads * 2 // max(num_seq, 1)))  # ceil(2 * threads / N) runs each
    step = max(1, -(-num_frames // per_seq))
    return [
        (n, f, min(f + step, num_frames))
        for n in range(num_seq)
        for f in range(0, num_frames, step)
    ]


_tls = threading.local()


def _scratch(shape: tuple[int, ...], key: str = "sample") -> np.ndarray:
    """A uint8 buffer of ``shape`` private to this thread, reused across calls."""
    cache = getattr(_tls, "buffers", None)
    if cache is None:
        cache = _tls.buffers = {}
    buf = cache.get(key)
    if buf is None or buf.shape != shape:
        buf = cache[key] = np.empty(shape, np.uint8)
    return buf


_Y_TO_GRAY = np.clip(np.round((np.arange(256) - 16) * (255.0 / 219.0)), 0, 255).astype(np.uint8)


def prepare(
    clips: Sequence[np.ndarray],
    *,
    height: int,
    width: int,
    color: str,
    rescale: float,
    matrices: np.ndarray,
    input_format: str,
    zero_outside: bool = False,
) -> np.ndarray:
    """Backend entry of :func:`fastvid.ops.prepare` (arguments already validated)."""
    num_frames = clips[0].shape[0]
    channels = 3 if color == "rgb" else 1
    # aligned, so that to_backend(..., zero_copy=True) hands it to TensorFlow without a copy
    out = empty_aligned((len(clips), num_frames, height, width, channels), np.float32)
    yuv = input_format == "yuv420p"
    # channels sampled: gray from RGB is taken after sampling, gray from I420 before
    sampled_c = 1 if (yuv and color == "gray") else 3
    scale = np.float32(rescale)
    gray_w = np.array(GRAY_WEIGHTS, np.float32) * scale
    plain, outside = [], []
    for clip, m in zip(clips, matrices, strict=True):
        w = clip.shape[2]
        h = clip.shape[1] * 2 // 3 if yuv else clip.shape[1]
        plain.append(is_plain_resize(m, (w, h), (width, height)))
        outside.append(outside_source(m, (w, h), (width, height)) if zero_outside else None)
    if color == "rgb" and not yuv and all(plain):
        if all(c.shape[1:3] == (height, width) for c in clips):
            # frames already at the output size (decoded or cached so): resampling would only
            # copy them; one vectorised multiply gives the same numbers without a thread
            # hand-off per frame (what makes cached epochs fast)
            np.multiply(np.stack(clips), scale, out=out)
            return out

    def task(n: int, f0: int, f1: int) -> None:
        clip, m = clips[n], matrices[n]
        # one small scratch per thread, reused: it stays in cache between the sampling and
        # the float conversion, and costs no page faults
        scratch = _scratch((height, width, 3) if sampled_c == 3 else (height, width))
        for f in range(f0, f1):
            src = clip[f]
            if yuv:
                if color == "gray":
                    src = cv2.LUT(src[: src.shape[0] * 2 // 3], _Y_TO_GRAY)
                else:
                    rgb_shape = (src.shape[0] * 2 // 3, src.shape[1], 3)
                    src = cv2.cvtColor(src, cv2.COLOR_YUV2RGB_I420, dst=_scratch(rgb_shape, "yuv"))
            if plain[n]:
                dst = cv2.resize(src, (width, height), dst=scratch, interpolation=cv2.INTER_LINEAR)
            else:
                dst = cv2.warpAffine(
                    src,
                    m,
                    (width, height),
                    dst=scratch,
                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                    borderMode=cv2.BORDER_REPLICATE,
                )
            if outside[n] is not None:
                dst[outside[n]] = 0  # padding: what lies beyond the picture is black
            target = out[n, f]
            if sampled_c == 1:
                np.multiply(dst, scale, out=target[..., 0])
            elif channels == 3:
                np.multiply(dst, scale, out=target)
            else:  # RGB sampled, gray wanted: weights (times rescale) in float32
                g = target[..., 0]
                np.multiply(dst[..., 0], gray_w[0], out=g)
                g += dst[..., 1] * gray_w[1]
                g += dst[..., 2] * gray_w[2]

    threads = default_threads()
    run_tasks(task, _chunks(len(clips), num_frames, threads), threads)
    return out


def to_gray(frames: np.ndarray, threads: int | None = None) -> np.ndarray:
    """float32 gray ``(..., H, W)`` of ``(..., H, W, C)`` frames, in the input's units.

    ``0.299 R + 0.587 G + 0.114 B`` in float32 (OpenCV's float RGB2GRAY), one
    ``cv2.cvtColor`` per frame on the thread pool; C=1 is returned as float32.
    """
    if frames.shape[-1] == 1:
        return frames[..., 0].astype(np.float32)
    lead = frames.shape[:-3]
    flat = frames.reshape((-1,) + frames.shape[-3:])
    out = np.empty(flat.shape[:-1], np.float32)

    def task(k: int) -> None:
        src = flat[k] if flat.dtype == np.float32 else flat[k].astype(np.float32)
        cv2.cvtColor(src, cv2.COLOR_RGB2GRAY, dst=out[k])

    run_tasks(task, [(k,) for k in range(flat.shape[0])], threads)
    return out.reshape(lead + out.shape[1:])


def gray_u8(gray01: np.ndarray) -> np.ndarray:
    """uint8 gray for the flow algorithms from float gray in [0, 1]: round(255 * g), clamped."""
    g = np.multiply(gray01, np.float32(255.0))
    np.clip(g, 0, 255, out=g)
    return np.rint(g).astype(np.uint8)


def blur(img: np.ndarray) -> np.ndarray:
    """keras-video-generators' mask blur: 15x15 Gaussian, sigma from the size (2.6)."""
    return cv2.GaussianBlur(img, (BLUR_KSIZE, BLUR_KSIZE), 0)


def _spread(single: np.ndarray, channels: int, dst: np.ndarray) -> None:
    """Write a (H, W) float32 plane into every channel of ``dst`` (H, W, C)."""
    if channels == 3:
        cv2.cvtColor(single, cv2.COLOR_GRAY2RGB, dst=dst)
    else:
        dst[..., 0] = single


def motion(
    frames: np.ndarray,
    method: MotionMethod,
    *,
    levels: int,
    winsize: int,
    iterations: int,
    flow: str,
    use_cuda_flow: bool = False,
) -> np.ndarray:
    """Backend entry of :func:`fastvid.ops.motion` (arguments already validated).

    With ``a, b`` two consecutive frames in [0, 1] units (uint8 input is divided by 255
    and the result multiplied back by 255), ``gray`` the float weights of
    :data:`GRAY_WEIGHTS` (identity for C=1), ``blur`` :func:`blur` and ``rgb(flow)`` the
    HSV rendering of :func:`fastvid.ops.flow.render_flow` (gray-weighted when C=1):

    * ``METHOD_ABS_DIFF``: ``|gray(a) - gray(b)|`` in every channel;
    * ``METHOD_DIFF_MASK``: ``(a + b) / 2 * blur(|gray(a) - gray(b)|)``;
    * ``METHOD_OPTICAL_FLOW``: ``rgb(flow(a, b))``;
    * ``METHOD_FLOW_MASK``: ``(a + b) / 2 * blur(rgb(flow(a, b)))``;
    * ``"flow_raw"``: ``flow(a, b)`` in pixels, (dx, dy).

    Flow runs on ``round(255 * gray)`` as uint8. Work is spread over frame pairs.
    """
    is_u8 = frames.dtype == np.uint8
    unit = np.float32(255.0) if is_u8 else np.float32(1.0)
    threads = default_threads()
    gray = to_gray(frames, threads)  # (N, F+1, H, W) float32, input units
    if method.source == "diff":
        return _diff_motion(frames, gray, method, unit, threads)
    flows = flowmod.compute_flows(
        gray_u8(gray / unit if is_u8 else gray),
        algorithm=flow,
        levels=levels,
        winsize=winsize,
        iterations=iterations,
        use_cuda=use_cuda_flow,
        threads=threads,
    )
    if method.source == "flow_raw":
        return flows
    return _flow_motion(frames, flows, method, unit, threads)


def _mean_of(frames: np.ndarray, i: int, j: int) -> np.ndarray:
    """(a + b) / 2 of frames j and j + 1 of sequence i, in the input's units, float32."""
    return cv2.addWeighted(frames[i, j], 0.5, frames[i, j + 1], 0.5, 0.0, dtype=cv2.CV_32F)


def _diff_motion(
    frames: np.ndarray, gray: np.ndarray, method: MotionMethod, unit: np.float32, threads: int
) -> np.ndarray:
    n, f1, h, w, c = frames.shape
    out = empty_aligned((n, f1 - 1, h, w, c), np.float32)

    def task(i: int, j: int) -> None:
        d = cv2.absdiff(gray[i, j + 1], gray[i, j])
        if not method.masked:
            _spread(d, c, out[i, j])
            return
        mask = blur(d)
        mask = cv2.cvtColor(mask, cv2.COLOR_GRAY2RGB) if c == 3 else mask[..., None]
        # (a + b) / 2 in [0, 1] units times the mask, back in the input's units
        cv2.multiply(_mean_of(frames, i, j), mask, dst=out[i, j], scale=1.0 / float(unit))

    run_tasks(task, [(i, j) for i in range(n) for j in range(f1 - 1)], threads)
    return out


def _flow_motion(
    frames: np.ndarray, flows: np.ndarray, method: MotionMethod, unit: np.float32, threads: int
) -> np.ndarray:
    n, f1, h, w, c = frames.shape
    out = empty_aligned((n, f1 - 1, h, w, c), np.float32)

    def task(i: int, j: int) -> None:
        rgb = flowmod.render_flow(flows[i, j])  # (H, W, 3) in [0, 1]
        if c == 1:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
        if not method.masked:
            np.multiply(rgb, unit, out=out[i, j])
            return
        mask = blur(rgb)
        if mask.ndim == 2:  # cv2 drops a single channel
            mask = mask[..., None]
        cv2.multiply(_mean_of(frames, i, j), mask, dst=out[i, j])

    run_tasks(task, [(i, j) for i in range(n) for j in range(f1 - 1)], threads)
    return out


class CpuBackend:
    """The CPU :class:`fastvid.ops._backend.ComputeBackend`: this module's functions."""

    name = "cpu"

    def input_format(self, height: int, width: int) -> str:
        return "rgb"  # the decoder's own converter is the fastest route to RGB on a CPU

    def prepare(self, clips: Sequence[Any], **kwargs: Any) -> np.ndarray:
        return prepare(clips, **kwargs)  # zero_outside included

    def motion(self, frames: Any, method: MotionMethod, **kwargs: Any) -> np.ndarray:
        return motion(frames, method, **kwargs)

    def scale(self, x: np.ndarray, factor: float) -> np.ndarray:
        if abs(factor - 1.0) > 1e-12:
            x *= np.float32(factor)
        return x

    def to_host(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def owns(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def hand_off(self, x: Any) -> Any:
        return x  # every Keras backend takes NumPy batches


BACKEND = CpuBackend()

"""CUDA backend of :mod:`fastvid.ops`: CuPy over the kernels in ``cuda_kernels/``.

Imported only when ``device="cuda"`` (or ``"auto"`` finds a device): importing this
module imports CuPy. What the GPU computes, launch by launch, is in
:mod:`fastvid.ops.kernels` (shared with the host emulation that tests it without a
GPU); this module supplies the CuPy side:

* the kernels are compiled once per process with NVRTC (``cupy.RawModule``, cached
  by CuPy on disk as well) on first use;
* host data goes up through pinned (page-locked) memory with asynchronous copies on
  a stream, one clip at a time, so copying clip ``i + 1`` into the pinned buffer
  overlaps the transfer of clip ``i``; I420 planes are half the bytes of RGB;
* results stay on the device (CuPy arrays); the stream is synchronised before
  returning, so a consumer on any stream (DLPack hand-off to TensorFlow, JAX or
  PyTorch: :func:`fastvid.bridge.to_backend`) sees finished data;
* optical flow: ``cv2.cuda`` Farneback when OpenCV was built with CUDA, else the
  CPU (:mod:`fastvid.ops.flow`), logged once; rendering and masks run here.

Each host thread gets its own stream and pinned buffer (``keras.utils.PyDataset``
workers are threads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import cupy
import numpy as np

from fastvid.ops import kernels
from fastvid.ops._methods import METHOD_ABS_DIFF, METHOD_DIFF_MASK, MotionMethod

log = logging.getLogger(__name__)

__all__ = ["BACKEND", "CupyDevice", "benchmark", "device", "motion", "prepare"]


@cache
def _module(source_file: str) -> cupy.RawModule:
    log.debug("fastvid.ops.cuda: compiling %s with NVRTC", source_file)
    return cupy.RawModule(code=kernels.kernel_source(source_file), options=kernels.NVRTC_OPTIONS)


def _kernel(name: str) -> Any:
    source_file, _ = kernels.signatures()[name]
    return _module(source_file).get_function(name)


class CupyDevice:
    """:class:`fastvid.ops.kernels.Device` on the current CUDA device, for one thread."""

    xp = cupy
    use_cuda_flow = True

    def __init__(self) -> None:
        self.stream = cupy.cuda.Stream(non_blocking=False)
        self._pinned: Any = None  # cupy PinnedMemoryPointer
        self._pinned_size = 0

    # -- Device interface
    def empty(self, shape: tuple[int, ...], dtype: Any) -> cupy.ndarray:
        with self.stream:
            return cupy.empty(shape, dtype)

    def launch(self, name: str, total: int, args: Sequence[Any]) -> None:
        args = kernels.kernel_args(name, args)
        if total <= 0:
            return
        blocks, threads = kernels.launch_config(total)
        with self.stream:
            _kernel(name)((blocks,), (threads,), tuple(args))

    def upload(self, arrays: Sequence[Any], offsets: np.ndarray, nbytes: int) -> cupy.ndarray:
        with self.stream:
            buf = cupy.empty(nbytes, np.uint8)
        host = self._pinned_view(nbytes)
        for a, off in zip(arrays, offsets, strict=True):
            off, size = int(off), int(a.nbytes)
            if isinstance(a, cupy.ndarray):
                with self.stream:
                    buf[off : off + size] = cupy.ascontiguousarray(a).reshape(-1).view(np.uint8)
                continue
            # copy into pinned memory (any strides), then DMA while the next one copies
            np.copyto(host[off : off + size].view(a.dtype).reshape(a.shape), a, casting="no")
            dst = buf.data + off
            dst.copy_from_host_async(host.ctypes.data + off, size, self.stream)
        return buf

    def to_device(self, array: np.ndarray) -> cupy.ndarray:
        with self.stream:
            return cupy.asarray(np.ascontiguousarray(array))

    def to_host(self, array: cupy.ndarray) -> np.ndarray:
        return cupy.asnumpy(array, stream=self.stream)

    # -- helpers
    def _pinned_view(self, nbytes: int) -> np.ndarray:
        # The previous call synchronised its stream before returning, so the buffer
        # is free; grow it geometrically (pinned allocations are slow).
        if nbytes > self._pinned_size:
            size = max(nbytes, int(self._pinned_size * 1.5), 1 << 20)
            self._pinned = cupy.cuda.alloc_pinned_memory(size)
            self._pinned_size = size
        return np.frombuffer(self._pinned, np.uint8, self._pinned_size)

    def finish(self) -> None:
        """Wait for everything queued on this thread's stream."""
        self.stream.synchronize()


_local = threading.local()


def device() -> CupyDevice:
    """This thread's :class:`CupyDevice` (created on first use)."""
    dev = getattr(_local, "device", None)
    if dev is None:
        dev = _local.device = CupyDevice()
    return dev


def prepare(
    clips: Sequence[Any],
    *,
    height: int,
    width: int,
    color: str,
    rescale: float,
    matrices: np.ndarray,
    input_format: str,
    zero_outside: bool = False,
) -> cupy.ndarray:
    """Backend entry of :func:`fastvid.ops.prepare` (arguments already validated).

    ``clips`` are NumPy (uploaded through pinned memory) or CuPy arrays; returns a CuPy
    float32 ``(N, F, H, W, C)`` array.
    """
    dev = device()
    # every launch and CuPy op of the batch on this thread's stream; always wait for it
    # (also on error: the pinned buffer must not be reused under an async copy)
    try:
        with dev.stream:
            return kernels.prepare_batch(
                dev,
                clips,
                height=height,
                width=width,
                color=color,
                rescale=rescale,
                matrices=matrices,
                input_format=input_format,
                zero_outside=zero_outside,
            )
    finally:
        dev.finish()


def motion(
    frames: Any,
    method: MotionMethod,
    *,
    levels: int,
    winsize: int,
    iterations: int,
    flow: str,
) -> cupy.ndarray:
    """Backend entry of :func:`fastvid.ops.motion` (arguments already validated).

    ``frames`` is NumPy (uploaded through pinned memory) or CuPy; returns CuPy float32.
    """
    dev = device()
    try:
        with dev.stream:
            if not isinstance(frames, cupy.ndarray):
                raw = dev.upload([frames], np.zeros(1, np.int64), frames.nbytes)
                frames = raw.view(frames.dtype).reshape(frames.shape)
            return kernels.motion_batch(
                dev,
                frames,
                method,
                levels=levels,
                winsize=winsize,
                iterations=iterations,
                flow=flow,
            )
    finally:
        dev.finish()


# --------------------------------------------------------------------------- benchmark


def _time_gpu(fn: Any, repeats: int, warmup: int) -> list[float]:
    """Wall seconds per call (each call ends synchronised, so wall time is GPU time too)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def benchmark(
    *,
    sizes: Sequence[tuple[int, int]] = ((112, 112), (224, 224)),
    batch: int = 8,
    frames: int = 16,
    source: tuple[int, int] = (320, 240),
    repeats: int = 5,
    warmup: int = 2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Frames per second of the GPU ops on synthetic uint8 clips, from host memory.

    Rows: ``{"op", "size", "input", "median_s", "best_s", "frames", "frames_per_s"}``
    for prepare (RGB and I420 input, with and without augmentation; host -> device
    upload included) and for the motion methods that run on the GPU end to end
    (abs diff, diff mask, on a prepared device batch). Farneback's cost is the CPU's
    unless OpenCV has CUDA, so it is measured by the CPU suite.
    """
    from fastvid.ops import AugmentParams  # noqa: PLC0415
    from fastvid.ops import motion as ops_motion  # noqa: PLC0415
    from fastvid.ops import prepare as ops_prepare  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    w, h = source
    rgb = [rng.integers(0, 256, (frames, h, w, 3), np.uint8) for _ in range(batch)]
    yuv = [rng.integers(0, 256, (frames, h * 3 // 2, w), np.uint8) for _ in range(batch)]
    augment = AugmentParams(flip=0.5, rotation=10, zoom=0.1, shift=0.1)
    rows = []
    n_frames = batch * frames
    for size in sizes:
        cases = [
            ("prepare", "rgb", rgb, None),
            ("prepare+augment", "rgb", rgb, augment),
            ("prepare", "yuv420p", yuv, None),
            ("prepare+augment", "yuv420p", yuv, augment),
        ]
        for op, fmt, clips, aug in cases:

            def run(clips=clips, fmt=fmt, aug=aug, size=size) -> Any:
                return ops_prepare(
                    clips, size=size, augment=aug, seed=1, input_format=fmt, device="cuda"
                )

            times = _time_gpu(run, repeats, warmup)
            rows.append(_row(op, size, fmt, times, n_frames))
        prepared = ops_prepare(rgb, size=size, device="cuda")
        for name, method in (("abs_diff", METHOD_ABS_DIFF), ("diff_mask", METHOD_DIFF_MASK)):

            def run_motion(method=method, prepared=prepared) -> Any:
                return ops_motion(prepared, method, device="cuda")

            times = _time_gpu(run_motion, repeats, warmup)
            rows.append(_row(name, size, "device float32", times, batch * (frames - 1)))
    return rows


def _row(op: str, size: tuple[int, int], fmt: str, times: list[float], n: int) -> dict[str, Any]:
    median = float(np.median(times))
    return {
        "op": op,
        "size": f"{size[0]}x{size[1]}",
        "input": fmt,
        "median_s": median,
        "best_s": min(times),
        "frames": n,
        "frames_per_s": n / median,
    }


class CudaBackend:
    """The CUDA :class:`fastvid.ops._backend.ComputeBackend`: CuPy and ``cuda_kernels/``."""

    name = "cuda"

    def input_format(self, height: int, width: int) -> str:
        # I420 planes are half the bytes of RGB to upload; the kernel converts them
        return "yuv420p" if height % 2 == 0 and width % 2 == 0 else "rgb"

    def prepare(self, clips: Sequence[Any], **kwargs: Any) -> cupy.ndarray:
        return prepare(clips, **kwargs)

    def motion(self, frames: Any, method: MotionMethod, **kwargs: Any) -> cupy.ndarray:
        return motion(frames, method, **kwargs)

    def scale(self, x: Any, factor: float) -> Any:
        if abs(factor - 1.0) > 1e-12:
            with device().stream:
                x *= np.float32(factor)
            device().finish()
        return x

    def to_host(self, x: Any) -> np.ndarray:
        return device().to_host(x) if isinstance(x, cupy.ndarray) else np.asarray(x)

    def owns(self, x: Any) -> bool:
        return isinstance(x, cupy.ndarray)

    def hand_off(self, x: Any) -> Any:
        from fastvid.bridge import to_backend  # noqa: PLC0415

        return to_backend(x)


BACKEND = CudaBackend()

"""CUDA backend of :mod:`fastvid.ops`: CuPy over the kernels in ``cuda_kernels/``.

Imported only when ``device="cuda"`` (or ``"auto"`` finds a device): importing this
module imports CuPy, which does not initialise CUDA; the first operation does. What
the GPU computes, launch by launch, is in :mod:`fastvid.ops.kernels` (shared with
the host emulation that tests it without a GPU); this module supplies the CuPy side.

Devices. Work runs on CuPy's current device of the calling thread
(``with cupy.cuda.Device(1): ...``), each device with its own compiled kernels
(NVRTC, once per process and device; CuPy caches the binaries on disk too), kernel
handles (looked up once) and memory pool.

Streams. Each host thread gets, per device, its own **non-blocking** stream (so it
never serialises with the legacy default stream PyTorch computes on) and its own
pinned (page-locked) upload buffer. An operation

* waits for the caller's current stream first when it is given device arrays (they
  may still be being written there);
* uploads host clips through the pinned buffer with asynchronous copies, and records
  an event after them: the next upload waits on that event, not on the whole stream,
  before it rewrites the buffer;
* returns without waiting on the host: the caller's current stream waits for the
  operation's last event, so any work queued there afterwards (an in-place rescale,
  a DLPack export) sees finished data.

Hand-off (:meth:`CudaBackend.hand_off`, :mod:`fastvid.bridge`): PyTorch and JAX
receive the array through ``__dlpack__(stream=...)``, which makes their stream wait
for the caller's; TensorFlow (no stream in its API) after a host synchronisation. A
handed-off array is kept alive (:class:`HandOffs`) until its consumer has dropped it
*and* an event recorded on the consumer's stream after that has completed, so its
memory never returns to the pool while the consumer's queued reads may still run.

Memory. fastvid allocates from its own CuPy pool per device, bounded to
``FASTVID_CUDA_MEMORY_FRACTION`` of the device (default 0.25). On loading, this
module sets ``TF_FORCE_GPU_ALLOW_GROWTH=true`` and
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless they are set, so that a TensorFlow or
JAX started afterwards leaves memory for it (both take most of it by default). Pinned
buffers are freed when their thread ends (or by :func:`release_memory`).

Optical flow: ``cv2.cuda`` Farneback on this module's memory and stream when OpenCV
was built with CUDA (:mod:`fastvid.ops.flow`), else the CPU, logged once; rendering
and masks run here.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import cupy
import numpy as np

from fastvid import _runtime
from fastvid.ops import device as probe
from fastvid.ops import kernels
from fastvid.ops._methods import METHOD_ABS_DIFF, METHOD_DIFF_MASK, MotionMethod

log = logging.getLogger(__name__)

__all__ = [
    "BACKEND",
    "ENV_MEMORY_FRACTION",
    "FRAMEWORK_MEMORY_SETTINGS",
    "CupyDevice",
    "HandOffs",
    "benchmark",
    "device",
    "motion",
    "prepare",
    "release_memory",
]

ENV_MEMORY_FRACTION = "FASTVID_CUDA_MEMORY_FRACTION"
DEFAULT_MEMORY_FRACTION = 0.25
# what TensorFlow and JAX need to be told before they start, to leave GPU memory to others
FRAMEWORK_MEMORY_SETTINGS = {
    "TF_FORCE_GPU_ALLOW_GROWTH": ("true", "tensorflow"),
    "XLA_PYTHON_CLIENT_PREALLOCATE": ("false", "jax"),
}
PINNED_MIN_BYTES = 1 << 20


# --------------------------------------------------------------------------- memory


def share_gpu_memory() -> dict[str, str]:
    """Set the frameworks' memory-growth variables unless set; returns those it set.

    They only act on a framework that has not started on the GPU yet: set them in the
    environment before TensorFlow or JAX starts to be sure (the README's GPU section).
    """
    changed = {}
    for name, (value, framework) in FRAMEWORK_MEMORY_SETTINGS.items():
        if name in os.environ:
            continue
        os.environ[name] = value
        changed[name] = value
        if framework in sys.modules:
            log.info(
                "fastvid.ops.cuda: %s was imported before fastvid chose CUDA; if it has "
                "started on the GPU already it keeps the memory it took: set %s=%s "
                "before it starts",
                framework,
                name,
                value,
            )
    if changed:
        log.info(
            "fastvid.ops.cuda: set %s so that TensorFlow and JAX leave GPU memory to fastvid",
            ", ".join(f"{k}={v}" for k, v in changed.items()),
        )
    return changed


def memory_fraction() -> float:
    """``FASTVID_CUDA_MEMORY_FRACTION``: the share of a device fastvid's pool may hold."""
    text = os.environ.get(ENV_MEMORY_FRACTION, "").strip()
    if not text:
        return DEFAULT_MEMORY_FRACTION
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"environment variable {ENV_MEMORY_FRACTION} must be a fraction in (0, 1], got {text!r}"
        )
    return value


def _oom_message(exc: BaseException, state: _DeviceState) -> str:
    limit = state.pool.get_limit()
    return (
        f"fastvid's CUDA memory pool on device {state.id} is full ({exc}); it may hold "
        f"{limit / 2**30:.2f} GiB ({ENV_MEMORY_FRACTION}={memory_fraction()}). If "
        f"TensorFlow or JAX share the GPU, start them with TF_FORCE_GPU_ALLOW_GROWTH=true "
        f"or XLA_PYTHON_CLIENT_PREALLOCATE=false; or use smaller batches"
    )


class _DeviceState:
    """What one CUDA device holds for the whole process: compiled kernels, their handles,
    fastvid's bounded memory pool."""

    def __init__(self, device_id: int) -> None:
        self.id = device_id
        self.pool = cupy.cuda.MemoryPool()
        with cupy.cuda.Device(device_id):
            self.pool.set_limit(fraction=memory_fraction())
        self._modules: dict[str, Any] = {}
        self._functions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def function(self, name: str) -> Any:
        """The kernel ``name`` on this device (compiled and looked up on first use only)."""
        found = self._functions.get(name)
        if found is not None:
            return found
        source_file, _ = kernels.signatures()[name]
        with self._lock, cupy.cuda.Device(self.id):
            module = self._modules.get(source_file)
            if module is None:
                log.debug(
                    "fastvid.ops.cuda: compiling %s with NVRTC for device %d", source_file, self.id
                )
                module = self._modules[source_file] = cupy.RawModule(
                    code=kernels.kernel_source(source_file), options=kernels.NVRTC_OPTIONS
                )
            found = self._functions[name] = module.get_function(name)
        return found


_states: dict[int, _DeviceState] = {}
_states_lock = threading.Lock()


def _state(device_id: int) -> _DeviceState:
    found = _states.get(device_id)
    if found is None:
        with _states_lock:
            found = _states.get(device_id)
            if found is None:
                probe.mark_cuda_initialised()  # from here on a fork cannot use CUDA
                found = _states[device_id] = _DeviceState(device_id)
    return found


# --------------------------------------------------------------------------- hand-off


class _Held:
    __slots__ = ("array", "event", "stream")

    def __init__(self, array: Any, stream: int | None) -> None:
        self.array, self.stream, self.event = array, stream, None


class _Export:
    """What a DLPack consumer is given for a CuPy array: the array's own ``__dlpack__``,
    noting the consumer's stream (the protocol's ``stream=``) in :data:`HANDOFFS`."""

    def __init__(self, array: Any, handoffs: HandOffs) -> None:
        self._array, self._handoffs = array, handoffs

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._array.__dlpack_device__()

    def __dlpack__(self, *, stream: int | None = None, **kwargs: Any) -> Any:
        capsule = self._array.__dlpack__(stream=stream, **kwargs)
        self._handoffs.keep(self._array, stream)
        return capsule

    def get(self) -> np.ndarray:
        """A host copy (for a consumer that cannot take device memory)."""
        return self._array.get()

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape


class HandOffs:
    """Arrays handed to DLPack consumers, each kept alive until its consumer is done.

    A consumer (PyTorch, JAX, TensorFlow) releases its tensor when Python drops it,
    while reads it queued on its stream may still be running; if the array's memory went
    back to the pool then, fastvid's next batch could overwrite it under those reads. So
    each exported array is held here; :meth:`collect` (called by every operation) notices
    when the consumer no longer references it, records an event on the consumer's stream
    (the one it passed to ``__dlpack__``; the legacy default stream when it passed none),
    and lets the array go once that event has completed.
    """

    def __init__(self) -> None:
        self._held: list[_Held] = []
        self._lock = threading.Lock()

    def export(self, array: Any) -> _Export:
        """A DLPack producer for ``array`` that registers its consumer here."""
        return _Export(array, self)

    def keep(self, array: Any, stream: int | None) -> None:
        with self._lock:
            self._held.append(_Held(array, stream))

    def __len__(self) -> int:
        return len(self._held)

    def collect(self) -> int:
        """Let go of the arrays their consumers are done with; returns how many are held."""
        with self._lock:
            kept = []
            for item in self._held:
                if item.event is None:
                    # only this entry (and getrefcount's own argument) refer to it: the
                    # consumer has dropped its tensor, so its reads are all queued now
                    if sys.getrefcount(item.array) > 2:
                        kept.append(item)
                        continue
                    item.event = _record_on(item.stream)
                if not item.event.done:
                    kept.append(item)
            self._held = kept
            return len(kept)

    def reset(self) -> None:
        """Forget everything (a forked child: the parent's arrays are not usable here)."""
        self._held = []
        self._lock = threading.Lock()


def _record_on(stream: int | None) -> Any:
    """An event recorded now on the DLPack stream value ``stream`` (None/-1/0: legacy)."""
    ptr = stream if stream is not None and stream > 0 else cupy.cuda.runtime.streamLegacy
    event = cupy.cuda.Event(disable_timing=True)
    event.record(cupy.cuda.ExternalStream(int(ptr)))
    return event


HANDOFFS = HandOffs()


# --------------------------------------------------------------------------- per thread


class _Pinned:
    """A page-locked host buffer and the event after the last copy out of it."""

    def __init__(self) -> None:
        self.memory: Any = None
        self.size = 0
        self.free: Any = None  # cupy.cuda.Event: the copies reading it have finished

    def wait(self) -> None:
        if self.free is not None:
            self.free.synchronize()
            self.free = None

    def release(self) -> None:
        self.wait()
        self.memory, self.size = None, 0


class CupyDevice:
    """:class:`fastvid.ops.kernels.Device` on one CUDA device, for one host thread."""

    xp = cupy
    use_cuda_flow = True

    def __init__(self, state: _DeviceState) -> None:
        self.state = state
        with cupy.cuda.Device(state.id):
            self.stream = cupy.cuda.Stream(non_blocking=True)
        self._pinned = _Pinned()
        # the thread's pinned buffer goes when the thread (its CupyDevice) goes
        weakref.finalize(self, self._pinned.release)

    # -- Device interface
    def empty(self, shape: tuple[int, ...], dtype: Any) -> cupy.ndarray:
        with cupy.cuda.using_allocator(self.state.pool.malloc), self.stream:
            return cupy.empty(shape, dtype)

    def launch(self, name: str, total: int, args: Sequence[Any]) -> None:
        args = kernels.kernel_args(name, args)
        if total <= 0:
            return
        blocks, threads = kernels.launch_config(total)
        with self.stream:
            self.state.function(name)((blocks,), (threads,), tuple(args))

    def upload(self, arrays: Sequence[Any], offsets: np.ndarray, nbytes: int) -> cupy.ndarray:
        buf = self.empty((nbytes,), np.uint8)
        host = None
        try:
            for a, off in zip(arrays, offsets, strict=True):
                off, size = int(off), int(a.nbytes)
                if isinstance(a, cupy.ndarray):
                    with a.device:
                        a = cupy.ascontiguousarray(a)
                    # device to device (another device too: CUDA copies between them)
                    (buf.data + off).copy_from_device_async(a.data, size, self.stream)
                    continue
                if host is None:
                    host = self.pinned_view(nbytes)
                # into pinned memory (any strides), then DMA while the next one copies
                np.copyto(host[off : off + size].view(a.dtype).reshape(a.shape), a, casting="no")
                (buf.data + off).copy_from_host_async(host.ctypes.data + off, size, self.stream)
        finally:
            if host is not None:  # also after an error: copies already queued read it
                self._pinned.free = self.stream.record()
        return buf

    def to_device(self, array: np.ndarray) -> cupy.ndarray:
        with cupy.cuda.using_allocator(self.state.pool.malloc), self.stream:
            return cupy.asarray(np.ascontiguousarray(array))

    def to_host(self, array: cupy.ndarray) -> np.ndarray:
        return cupy.asnumpy(array, stream=self.stream)

    def flows(
        self, g8: cupy.ndarray, *, algorithm: str, levels: int, winsize: int, iterations: int
    ) -> cupy.ndarray | None:
        """Optical flow with ``cv2.cuda`` on this device's memory and stream, or None when
        OpenCV cannot (the caller falls back to the CPU)."""
        from fastvid.ops import flow as flowmod  # noqa: PLC0415

        reason = flowmod.cuda_flow_unavailable(algorithm)
        if reason is not None:
            flowmod._warn_cpu_flow(algorithm, reason)
            return None
        g8 = cupy.ascontiguousarray(g8)
        n, f1, h, w = (int(v) for v in g8.shape)
        out = self.empty((n, f1 - 1, h, w, 2), np.float32)
        with cupy.cuda.Device(self.state.id):
            flowmod.cuda_farneback(levels, winsize, iterations).calc_device(
                g8.data.ptr, out.data.ptr, (n, f1, h, w), self.stream.ptr
            )
        return out

    # -- helpers
    def pinned_view(self, nbytes: int) -> np.ndarray:
        """The thread's pinned buffer as uint8, at least ``nbytes`` long, free to write:
        waits for the copies still reading it, grows it geometrically (pinned
        allocations are slow)."""
        pinned = self._pinned
        pinned.wait()
        if nbytes > pinned.size:
            size = max(nbytes, int(pinned.size * 1.5), PINNED_MIN_BYTES)
            pinned.memory = None  # free the old one first
            pinned.memory = cupy.cuda.PinnedMemoryPointer(cupy.cuda.PinnedMemory(size), 0)
            pinned.size = size
        return np.frombuffer(pinned.memory, np.uint8, pinned.size)

    @property
    def pinned_size(self) -> int:
        """Bytes of this thread's pinned buffer (0 before the first host upload)."""
        return self._pinned.size

    def finish(self) -> None:
        """Wait on the host for everything queued on this thread's stream."""
        self.stream.synchronize()


_local = threading.local()


def device() -> CupyDevice:
    """This thread's :class:`CupyDevice` on CuPy's current device (created on first use)."""
    device_id = cupy.cuda.runtime.getDevice()
    per_device = getattr(_local, "devices", None)
    if per_device is None:
        per_device = _local.devices = {}
    found = per_device.get(device_id)
    if found is None:
        found = per_device[device_id] = CupyDevice(_state(device_id))
    return found


def release_memory() -> None:
    """Free this thread's pinned buffers and the cached blocks of fastvid's pools."""
    for dev in getattr(_local, "devices", {}).values():
        dev._pinned.release()
    HANDOFFS.collect()
    for state in list(_states.values()):
        state.pool.free_all_blocks()


def _after_fork() -> None:
    # the parent's streams, kernels and pools mean nothing in a child (and when the parent
    # had initialised CUDA, CUDA does not work here at all: fastvid.ops.device says why)
    global _local, _states_lock
    _local = threading.local()
    _states.clear()
    _states_lock = threading.Lock()
    HANDOFFS.reset()


_runtime.reset_after_fork(_after_fork)


def _run(fn: Callable[[CupyDevice], Any], device_inputs: bool) -> Any:
    """``fn(dev)`` on this thread's stream and pool, ordered after the caller's stream
    (when it reads device inputs) and before it (always), without a host wait."""
    dev = device()
    HANDOFFS.collect()
    caller = cupy.cuda.get_current_stream()
    same = caller.ptr == dev.stream.ptr
    try:
        with ExitStack() as stack:
            stack.enter_context(cupy.cuda.Device(dev.state.id))
            stack.enter_context(cupy.cuda.using_allocator(dev.state.pool.malloc))
            stack.enter_context(dev.stream)
            if device_inputs and not same:
                dev.stream.wait_event(caller.record())
            out = fn(dev)
            done = dev.stream.record()
    except cupy.cuda.memory.OutOfMemoryError as exc:
        raise MemoryError(_oom_message(exc, dev.state)) from exc
    if not same:
        caller.wait_event(done)
    return out


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
    float32 ``(N, F, H, W, C)`` array, ready on the caller's current stream.
    """

    def run(dev: CupyDevice) -> cupy.ndarray:
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

    return _run(run, any(isinstance(c, cupy.ndarray) for c in clips))


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

    ``frames`` is NumPy (uploaded through pinned memory) or CuPy; returns CuPy float32,
    ready on the caller's current stream.
    """

    def run(dev: CupyDevice) -> cupy.ndarray:
        x = frames
        if not isinstance(x, cupy.ndarray):
            raw = dev.upload([x], np.zeros(1, np.int64), x.nbytes)
            x = raw.view(x.dtype).reshape(x.shape)
        return kernels.motion_batch(
            dev, x, method, levels=levels, winsize=winsize, iterations=iterations, flow=flow
        )

    return _run(run, isinstance(frames, cupy.ndarray))


# --------------------------------------------------------------------------- benchmark


def _time_gpu(fn: Any, repeats: int, warmup: int) -> list[float]:
    """Wall seconds per call, each call waited for on the host (so wall time is GPU time)."""

    def call() -> None:
        fn()
        cupy.cuda.get_current_stream().synchronize()

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
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


# --------------------------------------------------------------------------- backend


class CudaBackend:
    """The CUDA :class:`fastvid.ops._backend.ComputeBackend`: CuPy and ``cuda_kernels/``."""

    name = "cuda"

    def input_format(self, height: int, width: int) -> str:
        """RGB, as on the CPU: the decoder's swscale converts the colours for both backends,
        so a model sees the same numbers on either device.

        (The I420 kernel converts as ``cv2.COLOR_YUV2RGB_I420``, BT.601 limited range with
        nearest chroma; swscale follows the stream's colour matrix and interpolates chroma,
        levels apart on real footage. Uploading RGB costs twice the bytes of I420, a small
        part of a batch's time next to decoding it.)
        """
        return "rgb"

    def prepare(self, clips: Sequence[Any], **kwargs: Any) -> cupy.ndarray:
        return prepare(clips, **kwargs)

    def motion(self, frames: Any, method: MotionMethod, **kwargs: Any) -> cupy.ndarray:
        return motion(frames, method, **kwargs)

    def scale(self, x: Any, factor: float) -> Any:
        if abs(factor - 1.0) > 1e-12:

            def run(dev: CupyDevice) -> Any:
                x.__imul__(np.float32(factor))  # on this thread's stream, after the caller's
                return x

            _run(run, True)
        return x

    def to_host(self, x: Any) -> np.ndarray:
        # on the caller's stream: after whatever it queued on x (it waits for our work)
        return cupy.asnumpy(x) if isinstance(x, cupy.ndarray) else np.asarray(x)

    def owns(self, x: Any) -> bool:
        return isinstance(x, cupy.ndarray)

    def hand_off(self, x: Any) -> Any:
        """``x`` as a tensor of the active Keras backend sharing its memory (a NumPy copy
        for one that sees no GPU), kept alive until that consumer is done with it."""
        from fastvid import bridge  # noqa: PLC0415

        name = bridge.active_backend()
        if name == "tensorflow":  # it takes no stream: finish the caller's queued work
            cupy.cuda.get_current_stream().synchronize()
        HANDOFFS.collect()
        return bridge.to_backend(HANDOFFS.export(x), backend=name)


share_gpu_memory()
BACKEND = CudaBackend()

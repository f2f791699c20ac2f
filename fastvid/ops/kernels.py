"""The CUDA kernels of the GPU backend: their sources, signatures, and the launches
each operation makes.

The kernels are plain CUDA C in the repository's top-level ``cuda_kernels/`` folder
(``prepare.cu``, ``motion.cu``). CuPy compiles them at run time (NVRTC) on a GPU;
the test suite compiles them with ``nvcc`` and, for the host, with g++ under
``cuda_kernels/host_emulation.h``, and runs them without a GPU.

So that the emulated run exercises the very code the GPU runs, the sequence of
launches of :func:`prepare_batch` and :func:`motion_batch` is written once here,
against a small :class:`Device` interface (array module, allocation, kernel launch,
transfers). :mod:`fastvid.ops.cuda` implements it with CuPy; the tests implement it
with NumPy and the emulated kernels. Nothing here imports CuPy.

Source lookup order: ``$FASTVID_CUDA_KERNELS``; the ``fastvid/_cuda_kernels``
package data of an installed wheel; the checkout's ``cuda_kernels/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from fastvid.ops._methods import BLUR_KSIZE, MotionMethod

KERNEL_FILES = ("prepare.cu", "motion.cu")
ENV_VAR = "FASTVID_CUDA_KERNELS"

# NVRTC options (CuPy adds the architecture); no fast-math: it would change the numbers
NVRTC_OPTIONS = ("--std=c++14",)
BLOCK = 256  # threads per block
MAX_BLOCKS = 65535  # the kernels are grid-stride loops: any grid covers any size

# C parameter types of the kernels -> NumPy dtypes (scalars, and pointer targets)
_C_TYPES = {
    "unsigned char": np.dtype(np.uint8),
    "int": np.dtype(np.int32),
    "long long": np.dtype(np.int64),
    "float": np.dtype(np.float32),
}
_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


# --------------------------------------------------------------------------- sources


def kernel_dir() -> Path:
    """The folder holding the ``.cu`` sources.

    Raises:
        FileNotFoundError: none of the places holds them.
    """
    candidates = []
    env = os.environ.get(ENV_VAR)
    if env:
        candidates.append(Path(env))
    here = Path(__file__).resolve().parent  # fastvid/ops
    candidates.append(here.parent / "_cuda_kernels")  # installed wheel (package data)
    candidates.append(here.parents[1] / "cuda_kernels")  # checkout / editable install
    for folder in candidates:
        if all((folder / name).is_file() for name in KERNEL_FILES):
            return folder
    raise FileNotFoundError(
        "fastvid's CUDA kernel sources ("
        + ", ".join(KERNEL_FILES)
        + ") are in none of: "
        + ", ".join(str(c) for c in candidates)
        + f"; set {ENV_VAR} to the folder holding them"
    )


def kernel_source(name: str) -> str:
    """The text of one source file, e.g. ``kernel_source("prepare.cu")``."""
    if name not in KERNEL_FILES:
        raise ValueError(f"unknown kernel source {name!r}; known: {KERNEL_FILES}")
    return (kernel_dir() / name).read_text(encoding="utf-8")


class Param(NamedTuple):
    """One kernel parameter: its name, NumPy dtype, and whether it is a pointer."""

    name: str
    dtype: np.dtype
    pointer: bool


def parse_signatures(source: str) -> dict[str, tuple[Param, ...]]:
    """``extern "C" __global__`` kernels of a source -> their parameters, in order."""
    kernels = {}
    for name, params in _KERNEL_RE.findall(source):
        parsed = []
        for raw in params.split(","):
            words = raw.replace("*", " * ").replace("__restrict__", " ").split()
            words = [w for w in words if w != "const"]
            pointer = "*" in words
            words = [w for w in words if w != "*"]
            ctype = " ".join(words[:-1])
            if ctype not in _C_TYPES:
                raise ValueError(f"kernel {name}: unsupported parameter type {raw.strip()!r}")
            parsed.append(Param(words[-1], _C_TYPES[ctype], pointer))
        kernels[name] = tuple(parsed)
    return kernels


@lru_cache(maxsize=1)
def signatures() -> dict[str, tuple[str, tuple[Param, ...]]]:
    """Every kernel name -> (source file, parameters)."""
    out = {}
    for file in KERNEL_FILES:
        for name, params in parse_signatures(kernel_source(file)).items():
            out[name] = (file, params)
    return out


def kernel_args(name: str, args: Sequence[Any]) -> list[Any]:
    """Check and convert launch arguments against the kernel's C signature.

    Scalars become NumPy scalars of the parameter's exact type (CuPy would pass a
    Python int as ``long long`` and a float as ``double``); arrays must have the
    pointer's element type and be C-contiguous.
    """
    _, params = signatures()[name]
    if len(args) != len(params):
        raise TypeError(f"{name} takes {len(params)} arguments, got {len(args)}")
    out = []
    for p, a in zip(params, args, strict=True):
        if p.pointer:
            if getattr(a, "dtype", None) != p.dtype:
                raise TypeError(f"{name}({p.name}): needs a {p.dtype} array, got {a!r:.80}")
            if not a.flags.c_contiguous:
                raise TypeError(f"{name}({p.name}): array must be C-contiguous")
            out.append(a)
        else:
            out.append(p.dtype.type(a))
    return out


def launch_config(total: int, block: int = BLOCK, max_blocks: int = MAX_BLOCKS) -> tuple[int, int]:
    """(blocks, threads per block) for ``total`` work items (grid-stride kernels)."""
    return max(1, min(max_blocks, -(-total // block))), block


# --------------------------------------------------------------------------- device


class Device(Protocol):
    """What the launch sequences need from a device (CuPy, or the host emulation)."""

    xp: Any  # the array module: cupy, or numpy
    use_cuda_flow: bool  # try dev.flows (cv2.cuda Farneback) when the device has it

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised C-contiguous device array."""

    def launch(self, name: str, total: int, args: Sequence[Any]) -> None:
        """Run kernel ``name`` over ``total`` work items (args as in :func:`kernel_args`)."""

    def upload(self, arrays: Sequence[np.ndarray], offsets: np.ndarray, nbytes: int) -> Any:
        """uint8 device buffer of ``nbytes`` holding the raw bytes of each array (host or
        device, any dtype and strides; C order) at its byte offset."""

    def to_device(self, array: np.ndarray) -> Any:
        """A device copy of a (small) host array."""

    def to_host(self, array: Any) -> np.ndarray:
        """A host copy of a device array (waits for it)."""

    # optional: flows(g8, *, algorithm, levels, winsize, iterations) -> device flows, or
    # None to fall back to the CPU (see device_flows)


def clip_layout(clips: Sequence[Any], input_format: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Where each clip goes in one concatenated byte buffer.

    Returns ``(offsets int64 (N,), sizes int32 (N, 2) as (w, h), total bytes)``.
    """
    offsets = np.empty(len(clips), np.int64)
    sizes = np.empty((len(clips), 2), np.int32)
    total = 0
    for i, clip in enumerate(clips):
        if input_format == "yuv420p":
            h, w = clip.shape[1] * 2 // 3, clip.shape[2]
            if h % 2 or w % 2:
                raise ValueError(f"I420 frames need an even width and height, got {w}x{h}")
        else:
            h, w = clip.shape[1], clip.shape[2]
        offsets[i] = total
        sizes[i] = (w, h)
        total += int(clip.size)
    return offsets, sizes, total


# --------------------------------------------------------------------------- operations


def prepare_batch(
    dev: Device,
    clips: Sequence[Any],
    *,
    height: int,
    width: int,
    color: str,
    rescale: float,
    matrices: np.ndarray,
    input_format: str,
    zero_outside: bool = False,
) -> Any:
    """The GPU ``prepare`` (backend interface of :mod:`fastvid.ops`): one upload of all
    clips' bytes, one launch. Returns a device array ``(N, F, H, W, C)`` float32."""
    channels = 3 if color == "rgb" else 1
    num_frames = int(clips[0].shape[0])
    offsets, sizes, nbytes = clip_layout(clips, input_format)
    src = dev.upload(clips, offsets, nbytes)
    mats = np.ascontiguousarray(np.asarray(matrices, np.float64).reshape(-1, 6), np.float32)
    out = dev.empty((len(clips), num_frames, height, width, channels), np.float32)
    kernel = "prepare_i420" if input_format == "yuv420p" else "prepare_rgb"
    args = [src, dev.to_device(offsets), dev.to_device(sizes), dev.to_device(mats)]
    args += [len(clips), num_frames, width, height, channels, int(zero_outside), rescale, out]
    dev.launch(kernel, out.size, args)
    return out


@lru_cache(maxsize=1)
def blur_weights() -> np.ndarray:
    """The 15 taps of keras-video-generators' mask blur (cv2's sigma for size 15: 2.6)."""
    import cv2  # noqa: PLC0415 (OpenCV is a dependency; keep the import local)

    return cv2.getGaussianKernel(BLUR_KSIZE, 0, ktype=cv2.CV_32F).ravel().copy()


def _blur(dev: Device, img: Any, planes: int, h: int, w: int, c: int) -> Any:
    """Separable 15x15 Gaussian (reflect-101) of ``planes`` images (h, w, c)."""
    weights = dev.to_device(blur_weights())
    tmp = dev.empty(img.shape, np.float32)
    out = dev.empty(img.shape, np.float32)
    r = BLUR_KSIZE // 2
    dev.launch("blur_rows", img.size, [img, planes, h, w, c, weights, r, tmp])
    dev.launch("blur_cols", img.size, [tmp, planes, h, w, c, weights, r, out])
    return out


def device_flows(
    dev: Device, g8: Any, *, algorithm: str, levels: int, winsize: int, iterations: int
) -> Any:
    """Flows ``(N, F, H, W, 2)`` float32 on the device from uint8 gray ``(N, F+1, H, W)``.

    A device that computes flow itself (``dev.flows``: the CUDA backend with an OpenCV
    that has CUDA) does so in place; otherwise the frames go to the host, through
    :func:`fastvid.ops.flow.compute_flows` (CPU threads), and back.
    """
    from fastvid.ops import flow as flowmod  # noqa: PLC0415 (imports OpenCV)

    on_device = getattr(dev, "flows", None) if dev.use_cuda_flow else None
    if on_device is not None:
        found = on_device(
            g8, algorithm=algorithm, levels=levels, winsize=winsize, iterations=iterations
        )
        if found is not None:
            return found
    flows_host = flowmod.compute_flows(
        dev.to_host(g8),
        algorithm=algorithm,
        levels=levels,
        winsize=winsize,
        iterations=iterations,
    )
    return dev.to_device(flows_host)


def motion_batch(
    dev: Device,
    frames: Any,
    method: MotionMethod,
    *,
    levels: int,
    winsize: int,
    iterations: int,
    flow: str,
) -> Any:
    """The GPU ``motion`` (backend interface of :mod:`fastvid.ops`) on a device array
    ``(N, F+1, H, W, C)``: float32 in [0, 1], or uint8 (then computed on the 0..255
    scale), with the formulas of :func:`fastvid.ops.cpu.motion`. The optical flow
    itself runs in :func:`device_flows` (cv2.cuda on the device, or the CPU).
    Returns a device array ``(N, F, H, W, C)`` float32 (``C = 2`` for ``"flow_raw"``).
    """
    xp = dev.xp
    unit32 = np.float32(255.0 if frames.dtype == np.uint8 else 1.0)
    frames = xp.ascontiguousarray(frames, dtype=np.float32)
    n, f1, h, w, c = (int(v) for v in frames.shape)
    f = f1 - 1
    hw = h * w
    gray = dev.empty((n, f1, h, w), np.float32)
    dev.launch("rgb_to_gray", gray.size, [frames, gray.size, c, gray])

    if method.source == "diff" and not method.masked:
        out = dev.empty((n, f, h, w, c), np.float32)
        dev.launch("abs_diff", out.size, [gray, n, f, hw, c, out])
        return out

    if method.source == "diff":
        diff = dev.empty((n, f, h, w), np.float32)
        dev.launch("abs_diff", diff.size, [gray, n, f, hw, 1, diff])
        mask = _blur(dev, diff, n * f, h, w, 1)
        out = dev.empty((n, f, h, w, c), np.float32)
        scale = np.float32(0.5) / unit32  # (a + b) / 2 in [0, 1] units, times the mask
        dev.launch("blend_mask", out.size, [frames, mask, n, f, hw, c, 1, scale, out])
        return out

    g8 = dev.empty((n, f1, h, w), np.uint8)
    dev.launch("gray_to_u8", g8.size, [gray, g8.size, unit32, g8])
    flows = device_flows(
        dev, g8, algorithm=flow, levels=levels, winsize=winsize, iterations=iterations
    )
    if method.source == "flow_raw":
        return flows

    nf = n * f
    mag = dev.empty((nf, hw), np.float32)
    dev.launch("flow_magnitude", mag.size, [flows, mag.size, mag])
    lo = mag.min(axis=1)
    span = mag.max(axis=1).astype(np.float64) - lo.astype(np.float64)
    flat = span > np.finfo(np.float64).eps  # else the frame's magnitude is constant: V = 0
    inv = xp.where(flat, 1.0 / xp.where(flat, span, 1.0), 0.0).astype(np.float32)
    lo = xp.ascontiguousarray(lo)
    rendered = dev.empty((n, f, h, w, c), np.float32)
    render_unit = np.float32(1.0) if method.masked else unit32
    dev.launch(
        "flow_to_rgb", rendered.size, [flows, mag, lo, inv, nf, hw, c, render_unit, rendered]
    )
    if not method.masked:
        return rendered
    # a masked flow: (a + b) / 2 times the blurred rendering
    mask = _blur(dev, rendered, nf, h, w, c)
    out = dev.empty((n, f, h, w, c), np.float32)
    dev.launch("blend_mask", out.size, [frames, mask, n, f, hw, c, c, np.float32(0.5), out])
    return out

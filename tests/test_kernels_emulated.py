"""The CUDA kernels, run without a GPU: the same .cu sources compiled for the host.

g++ builds ``cuda_kernels/host_launcher.cpp`` (which includes the .cu files under
``host_emulation.h``) into a shared library once per session; ``EmulatedDevice``
launches its kernels through ctypes, one thread after the other, and implements
:class:`fastvid.ops.kernels.Device` with NumPy, so :func:`kernels.prepare_batch`
and :func:`kernels.motion_batch` -- the launch sequences the CuPy backend runs --
run here end to end.

Every buffer the device allocates is poisoned (NaN, or a byte sentinel) and checked
to be fully written. Results are compared with (a) a NumPy float reference of the
same math (1e-5 of full scale; exactly for the integer and bit-for-bit float steps)
and (b) the CPU backend (1/255 of full scale after rescale, 1e-5 for motion).
Inputs are random, never zero, with odd sizes; launches use a small grid so every
kernel's grid-stride loop goes round many times, and an exact cover as well. (The
harness is tests/emulation.py; fastvid.ops.cuda itself, over a stand-in CuPy, is
tests/test_gpu_path.py.)
"""

from __future__ import annotations

import ctypes

import cv2
import numpy as np
import pytest
from emulation import LAUNCHES, EmulatedDevice, build_emulated_lib
from helpers import smooth_clip

import fastvid.ops as ops
from fastvid.ops import cpu, kernels
from fastvid.ops import flow as flowmod
from fastvid.ops.affine import AugmentParams, batch_matrices, make_rng, sequence_matrices

AUGMENT = AugmentParams(flip=0.5, rotation=25.0, zoom=0.25, shift=0.2)

# --------------------------------------------------------------------------- harness


@pytest.fixture(scope="session")
def emu_lib(tmp_path_factory):
    """The kernels compiled for the host, loaded with ctypes."""
    return build_emulated_lib(tmp_path_factory.mktemp("emulated_kernels"))


def random_clip(rng, frames, h, w, *, i420=False):
    """uint8 noise in [1, 255] (never zero): RGB (F, h, w, 3) or I420 (F, h*3/2, w)."""
    shape = (frames, h * 3 // 2, w) if i420 else (frames, h, w, 3)
    return rng.integers(1, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- reference


def ref_colour(frame, color, i420):
    """Source picture (h, w, C) as float64 in [0, 255], the conversion the kernel makes.

    I420 is converted as cv2 converts it (the kernel is bit-exact with it, see
    test_i420_conversion_is_cv2), gray from I420 is round(255/219 (Y - 16)) clamped.
    """
    if i420:
        h = frame.shape[0] * 2 // 3
        if color == "gray":
            y = frame[:h].astype(np.float64)
            return np.clip(np.round(255.0 / 219.0 * (y - 16)), 0, 255)[..., None]
        return cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420).astype(np.float64)
    rgb = frame.astype(np.float64)
    if color == "gray":
        return (rgb @ np.array(cpu.GRAY_WEIGHTS))[..., None]
    return rgb


def ref_prepare(clips, mats, size, color, rescale, i420):
    """Bilinear sampling with clamped (replicate) coordinates, in float64.

    The sample points are computed in float32 from float32 matrices, as the kernel
    computes them, so the comparison tests the sampling, not float32 coordinates.
    """
    width, height = size
    m = np.asarray(mats, np.float32).reshape(-1, 6)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for clip, mm in zip(clips, m, strict=True):
        frames = []
        for frame in clip:
            src = ref_colour(frame, color, i420)
            h, w = src.shape[:2]
            sx = (mm[0] * xs + mm[1] * ys) + mm[2]
            sy = (mm[3] * xs + mm[4] * ys) + mm[5]
            sx = np.clip(sx, 0, w - 1).astype(np.float64)
            sy = np.clip(sy, 0, h - 1).astype(np.float64)
            x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
            x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
            ax, ay = (sx - x0)[..., None], (sy - y0)[..., None]
            top = src[y0, x0] * (1 - ax) + src[y0, x1] * ax
            bottom = src[y1, x0] * (1 - ax) + src[y1, x1] * ax
            frames.append((top * (1 - ay) + bottom * ay) * rescale)
        out.append(frames)
    return np.array(out)


# --------------------------------------------------------------------------- the library


def test_launcher_knows_every_kernel(emu_lib):
    names = []
    while (name := emu_lib.fv_kernel_name(len(names))) is not None:
        names.append(name.decode())
    assert sorted(names) == sorted(kernels.signatures())
    assert (
        emu_lib.fv_launch(
            b"no_such_kernel", (ctypes.c_uint * 3)(1, 1, 1), (ctypes.c_uint * 3)(1, 1, 1), None
        )
        == -1
    )


def test_kernel_args_checks_types(emu_lib):
    dev = EmulatedDevice(emu_lib)
    out = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="float32"):
        dev.launch("rgb_to_gray", 4, [np.zeros(4, np.float64), 4, 1, out])
    with pytest.raises(TypeError, match="takes 4"):
        dev.launch("rgb_to_gray", 4, [out, 4, out])
    with pytest.raises(TypeError, match="contiguous"):
        dev.launch("rgb_to_gray", 4, [np.zeros(8, np.float32)[::2], 4, 1, out])


# --------------------------------------------------------------------------- prepare


PREPARE_CASES = [
    # (input_format, color, source sizes (w, h) of the clips in one batch, output (W, H))
    ("rgb", "rgb", [(37, 23), (29, 31)], (19, 13)),
    ("rgb", "gray", [(37, 23), (29, 31)], (19, 13)),
    ("yuv420p", "rgb", [(38, 24), (30, 32)], (19, 13)),
    ("yuv420p", "gray", [(38, 24), (30, 32)], (19, 13)),
    ("rgb", "rgb", [(11, 7)], (19, 13)),  # upsampling: most points clamp or interpolate
    ("yuv420p", "rgb", [(12, 8)], (19, 13)),
]


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
@pytest.mark.parametrize("augment", [None, AUGMENT], ids=["resize", "augment"])
@pytest.mark.parametrize(("fmt", "color", "sources", "size"), PREPARE_CASES)
def test_prepare_kernel_matches_float_reference(
    emu_lib, fmt, color, sources, size, augment, launch
):
    rng = np.random.default_rng(7)
    i420 = fmt == "yuv420p"
    clips = [random_clip(rng, 3, h, w, i420=i420) for w, h in sources]
    if len(sources) == 1:
        mats = sequence_matrices(sources[0], size, augment, make_rng(3), 1)
    else:
        mats = batch_matrices(sources, size, augment, make_rng(3))
    dev = EmulatedDevice(emu_lib, launch)
    got = kernels.prepare_batch(
        dev,
        clips,
        height=size[1],
        width=size[0],
        color=color,
        rescale=1 / 255,
        matrices=mats,
        input_format=fmt,
    )
    dev.assert_all_written()
    assert dev.launched == ["prepare_i420" if i420 else "prepare_rgb"]  # one launch per batch
    channels = 3 if color == "rgb" else 1
    assert got.shape == (len(clips), 3, size[1], size[0], channels)
    assert got.dtype == np.float32
    want = ref_prepare(clips, mats, size, color, 1 / 255, i420)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert got.std() > 0.05  # noise in, noise out: not a constant picture


def test_prepare_kernel_rescale_and_identity_map(emu_lib):
    """Output size = source size, plain resize: the kernel samples pixel centres exactly."""
    rng = np.random.default_rng(1)
    clip = random_clip(rng, 2, 23, 37)
    mats = sequence_matrices((37, 23), (37, 23), None, None, 1)
    dev = EmulatedDevice(emu_lib)
    got = kernels.prepare_batch(
        dev,
        [clip],
        height=23,
        width=37,
        color="rgb",
        rescale=1.0,
        matrices=mats,
        input_format="rgb",
    )
    np.testing.assert_array_equal(got[0], clip.astype(np.float32))


def all_yuv_triples_frame():
    """One I420 frame holding every (U, V) pair, each 2x2 block with four Y values,
    the Y values cycling so that every Y meets many chroma pairs."""
    bw, bh = 256, 256  # blocks: U along x, V along y
    u, v = np.meshgrid(np.arange(256), np.arange(256))
    y = (np.arange(4 * bh * bw).reshape(2 * bh, 2 * bw) * 37) % 256
    frame = np.empty((2 * bh * 3 // 2, 2 * bw), np.uint8)
    frame[: 2 * bh] = y
    frame[2 * bh :] = np.concatenate([u.ravel(), v.ravel()]).reshape(-1, 2 * bw)
    return frame


def test_i420_conversion_is_cv2(emu_lib):
    """Sampled at pixel centres, the kernel's I420 -> RGB is cv2.COLOR_YUV2RGB_I420, byte
    for byte, over every (U, V) pair and every Y; gray is the CPU backend's luma LUT."""
    frame = all_yuv_triples_frame()
    h, w = frame.shape[0] * 2 // 3, frame.shape[1]
    mats = sequence_matrices((w, h), (w, h), None, None, 1)  # identity map
    dev = EmulatedDevice(emu_lib, "exact")
    kwargs = dict(rescale=1.0, matrices=mats, input_format="yuv420p", height=h, width=w)
    got = kernels.prepare_batch(dev, [frame[None]], color="rgb", **kwargs)
    np.testing.assert_array_equal(got[0, 0], cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420))
    gray = kernels.prepare_batch(dev, [frame[None]], color="gray", **kwargs)
    np.testing.assert_array_equal(gray[0, 0, ..., 0], cv2.LUT(frame[:h], cpu._Y_TO_GRAY))
    # the plain-float formula (coefficients 1.164, 1.596, -0.813, -0.391, 2.018 and
    # the Y floor at 16) is within 0.5 of it: cv2 rounds, nothing else differs
    y = frame[:h].astype(np.float64)
    uv = frame[h:].reshape(2, h // 2, w // 2).astype(np.float64) - 128
    u, v = (p.repeat(2, 0).repeat(2, 1) for p in uv)
    yy = 1.164 * np.maximum(y - 16, 0)
    rgb = np.clip(
        np.stack([yy + 1.596 * v, yy - 0.813 * v - 0.391 * u, yy + 2.018 * u], -1), 0, 255
    )
    assert np.abs(got[0, 0] - rgb).max() <= 0.5 + 1e-9


# The CPU backend rounds each sampled value to uint8, so it is within 1/255 of the
# exact bilinear result (cv2's 1/32-pixel sample grid adds a little on steep
# gradients, hence smooth pictures); the kernel computes the exact result.
CPU_TOL = 1 / 255 + 1e-6


@pytest.mark.parametrize("augment", [None, AUGMENT], ids=["resize", "augment"])
@pytest.mark.parametrize(("fmt", "color", "sources", "size"), PREPARE_CASES[:4])
def test_prepare_matches_cpu_backend(emu_lib, fmt, color, sources, size, augment):
    rng = np.random.default_rng(11)
    i420 = fmt == "yuv420p"
    clips = [smooth_clip(rng, 3, h, w, i420=i420) for w, h in sources]
    seed = 1234
    want = ops.prepare(  # sizes here are (w, h), as the affine maths writes them
        clips,
        size=size[::-1],
        color=color,
        augment=augment,
        seed=seed,
        input_format=fmt,
        device="cpu",
    )
    # the same draw as fastvid.ops.prepare makes for any backend
    mats = batch_matrices(sources, size, augment, make_rng(seed))
    dev = EmulatedDevice(emu_lib)
    got = kernels.prepare_batch(
        dev,
        clips,
        height=size[1],
        width=size[0],
        color=color,
        rescale=1 / 255,
        matrices=mats,
        input_format=fmt,
    )
    dev.assert_all_written()
    assert got.shape == want.shape and got.dtype == want.dtype
    err = np.abs(got - want).max()
    assert err <= CPU_TOL, f"max |gpu - cpu| = {err * 255:.3f} levels"


# --------------------------------------------------------------------------- motion

N, F1, H, W = 2, 4, 13, 19  # two sequences of four frames (three pairs), 19x13


def motion_input(rng, c, dtype):
    u8 = rng.integers(1, 256, (N, F1, H, W, c), dtype=np.uint8)
    return u8 if dtype == np.uint8 else (u8 / np.float32(255)).astype(np.float32)


def cv2_gray_is_fused() -> bool:
    """Whether this OpenCV's float RGB2GRAY (the CPU backend's gray) rounds as
    fma(B, 0.114, fma(R, 0.299, G * 0.587)) -- its AVX2 and NEON code does -- which
    the kernel reproduces bit for bit. (Probe in float64: exact products, one
    rounding per fma.)"""
    x = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    r, g, b = (x[..., k].astype(np.float64) for k in range(3))
    wr, wg, wb = (np.float64(np.float32(v)) for v in cpu.GRAY_WEIGHTS)
    inner = (r * wr + (g * wg).astype(np.float32)).astype(np.float32)
    fused = (b * wb + inner).astype(np.float32)
    return bool(np.array_equal(fused, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)))


def require_fused_gray():
    if not cv2_gray_is_fused():
        pytest.skip("this OpenCV's float RGB2GRAY is not fused: CPU gray differs in the last bit")


@pytest.mark.parametrize("c", [3, 1])
def test_gray_and_abs_diff_are_bit_exact(emu_lib, c):
    rng = np.random.default_rng(2)
    frames = motion_input(rng, c, np.float32)
    dev = EmulatedDevice(emu_lib)
    got = kernels.motion_batch(
        dev,
        frames,
        ops.motion_method(ops.METHOD_ABS_DIFF),
        levels=3,
        winsize=15,
        iterations=3,
        flow="farneback",
    )
    dev.assert_all_written()
    assert dev.launched == ["rgb_to_gray", "abs_diff"]
    if c == 3:
        require_fused_gray()
    np.testing.assert_array_equal(dev.allocated[0], cpu.to_gray(frames))
    want = ops.motion(frames, ops.METHOD_ABS_DIFF, device="cpu")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("poison", [0x00, 0xFF])
def test_gray_to_u8_is_exact(emu_lib, poison):
    rng = np.random.default_rng(4)
    gray = rng.uniform(-0.05, 1.05, 37 * 23).astype(np.float32)  # past both ends: clamps
    gray[:3] = [0.5 / 255, 1.5 / 255, 254.5 / 255]  # ties: round half to even, like np.rint
    dev = EmulatedDevice(emu_lib, byte_poison=poison)
    out = dev.empty(gray.shape, np.uint8)
    dev.launch("gray_to_u8", gray.size, [gray, gray.size, 1.0, out])
    np.testing.assert_array_equal(out, cpu.gray_u8(gray))
    scaled = (gray * np.float32(255)).astype(np.float32)  # uint8-scale input, unit 255
    dev.launch("gray_to_u8", gray.size, [scaled, gray.size, 255.0, out])
    np.testing.assert_array_equal(out, cpu.gray_u8(scaled / np.float32(255)))


@pytest.mark.parametrize(("h", "w", "c"), [(13, 19, 1), (23, 37, 3), (5, 3, 1), (1, 9, 3)])
def test_blur_matches_cv2(emu_lib, h, w, c):
    """15x15 Gaussian, reflect-101, also on pictures smaller than the kernel."""
    rng = np.random.default_rng(6)
    planes = 2
    img = rng.uniform(0.01, 1.0, (planes, h, w, c)).astype(np.float32)
    dev = EmulatedDevice(emu_lib)
    got = kernels._blur(dev, img, planes, h, w, c)
    dev.assert_all_written()
    for p in range(planes):
        want = cpu.blur(img[p])
        np.testing.assert_allclose(got[p], want.reshape(h, w, c), rtol=1e-5, atol=1e-6)


def test_flow_rendering_matches_cpu(emu_lib):
    rng = np.random.default_rng(8)
    flows = rng.normal(0, 2, (3, H, W, 2)).astype(np.float32)
    flows[0, :4, :4] = 0  # zero flow: angle 0
    flows[0, 5, :3, 0] = -1.0  # angle exactly 180 degrees
    flows[0, 5, 3:6, 1] = 0.0
    flows[0, 5, 3:6, 0] = -0.0  # negative zero: atan2 gives +-0 / pi
    flows[2] = 1.5  # constant magnitude: value 0 everywhere
    dev = EmulatedDevice(emu_lib)
    nf, hw = flows.shape[0], H * W
    mag = dev.empty((nf, hw), np.float32)
    dev.launch("flow_magnitude", mag.size, [flows, mag.size, mag])
    np.testing.assert_allclose(
        mag, np.hypot(flows[..., 0], flows[..., 1]).reshape(nf, hw), rtol=1e-6
    )
    lo = np.ascontiguousarray(mag.min(axis=1))
    span = mag.max(axis=1).astype(np.float64) - lo
    inv = np.where(span > np.finfo(np.float64).eps, 1 / np.maximum(span, 1e-300), 0)
    inv = inv.astype(np.float32)
    want = flowmod.render_flows(flows)
    for c in (3, 1):
        out = dev.empty((nf, H, W, c), np.float32)
        dev.launch("flow_to_rgb", out.size, [flows, mag, lo, inv, nf, hw, c, 1.0, out])
        expect = want if c == 3 else (want @ np.array(cpu.GRAY_WEIGHTS, np.float32))[..., None]
        np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-6)
    dev.assert_all_written()
    assert np.all(out[2] == 0)


MOTION_METHODS = [
    ops.METHOD_ABS_DIFF,
    ops.METHOD_DIFF_MASK,
    ops.METHOD_OPTICAL_FLOW,
    ops.METHOD_FLOW_MASK,
    "flow_raw",
]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8], ids=["float", "uint8"])
@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize("method", MOTION_METHODS)
def test_motion_matches_cpu_backend(emu_lib, method, c, dtype):
    if c == 3 and method != ops.METHOD_ABS_DIFF and method != ops.METHOD_DIFF_MASK:
        require_fused_gray()  # else round(255 * gray), the flow's input, may differ at ties
    rng = np.random.default_rng(9)
    # flow wants structure to track: a smooth picture moving by a pixel per frame
    base = smooth_clip(rng, 1, H + 8, W + 8)[0]
    seq = np.stack([base[k : k + H, 2 * k : 2 * k + W] for k in range(F1)])
    u8 = np.stack([seq, np.roll(seq, 1, axis=2)])  # (N, F+1, H, W, 3)
    u8 = u8 if c == 3 else u8[..., :1].copy()
    frames = u8 if dtype == np.uint8 else (u8 / np.float32(255)).astype(np.float32)
    dev = EmulatedDevice(emu_lib)
    got = kernels.motion_batch(
        dev,
        frames,
        ops.motion_method(method),
        levels=2,
        winsize=9,
        iterations=2,
        flow="farneback",
    )
    dev.assert_all_written()
    want = ops.motion(frames, method, levels=2, winsize=9, iterations=2, device="cpu")
    assert got.shape == want.shape and got.dtype == np.float32
    full_scale = 255.0 if dtype == np.uint8 else 1.0
    if method == "flow_raw":  # same uint8 gray in (bit-exact), the same CPU flow out
        np.testing.assert_array_equal(got, want)
        return
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * full_scale)
    assert np.abs(want).max() > 0.01 * full_scale  # something moved


@pytest.mark.parametrize("aspect", ["crop", "pad"])
@pytest.mark.parametrize("fmt", ["rgb", "yuv420p"])
def test_aspect_ratio_kernel_matches_cpu_backend(emu_lib, fmt, aspect):
    """crop/pad to the output's aspect ratio: the same sampling pass, the same numbers."""
    rng = np.random.default_rng(21)
    i420 = fmt == "yuv420p"
    sources = [(40, 20), (16, 30)]  # (w, h): one wide, one tall, into a square output
    clips = [smooth_clip(rng, 2, h, w, i420=i420) for w, h in sources]
    want = ops.prepare(
        clips, size=(18, 18), augment=AUGMENT, seed=3, input_format=fmt, aspect=aspect, device="cpu"
    )
    mats = batch_matrices(sources, (18, 18), AUGMENT, make_rng(3), aspect)
    dev = EmulatedDevice(emu_lib)
    got = kernels.prepare_batch(
        dev,
        clips,
        height=18,
        width=18,
        color="rgb",
        rescale=1 / 255,
        matrices=mats,
        input_format=fmt,
        zero_outside=aspect == "pad",
    )
    dev.assert_all_written()
    assert np.abs(got - want).max() <= CPU_TOL
    if aspect == "pad":  # black where the picture is not, on both
        from fastvid.ops.affine import outside_source

        for k, (m, src) in enumerate(zip(mats, sources, strict=True)):
            bars = outside_source(m, src, (18, 18))
            assert bars.any() and not bars.all()
            assert not got[k][:, bars].any() and not want[k][:, bars].any()

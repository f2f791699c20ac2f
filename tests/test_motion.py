"""fastvid.ops.motion on the CPU: keras-video-generators' four methods, raw flow, DIS."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

import fastvid.ops as ops
from fastvid.ops import cpu, flow

GRAY_W = np.array([0.299, 0.587, 0.114])


def random_frames(n=2, f1=3, h=23, w=31, c=3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, f1, h, w, c), dtype=np.float32)


def ref_gray(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x[..., 0] if x.shape[-1] == 1 else x @ GRAY_W


def ref_blur(img: np.ndarray) -> np.ndarray:
    """15x15 Gaussian (sigma 0.3 * ((15 - 1) / 2 - 1) + 0.8 = 2.6), reflect-101 borders."""
    r = np.arange(15) - 7
    k = np.exp(-(r**2) / (2 * 2.6**2))
    k /= k.sum()
    img = img.astype(np.float64)
    extra = img.ndim - 2
    p = np.pad(img, [(7, 7), (7, 7)] + [(0, 0)] * extra, mode="reflect")  # = reflect-101
    tmp = sum(k[i] * p[i : i + img.shape[0]] for i in range(15))
    return sum(k[i] * tmp[:, i : i + img.shape[1]] for i in range(15))


def ref_hsv_rgb(flow_xy: np.ndarray) -> np.ndarray:
    """The rendering rule written out: hue = angle, value = min-max normalised magnitude."""
    dx, dy = flow_xy[..., 0].astype(np.float64), flow_xy[..., 1].astype(np.float64)
    h = np.degrees(np.arctan2(dy, dx)) % 360.0 / 60.0
    mag = np.hypot(dx, dy)
    v = (mag - mag.min()) / (mag.max() - mag.min())
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    z = np.zeros_like(v)
    table = [
        (v, v * f, z),
        (v * (1 - f), v, z),
        (z, v, v * f),
        (z, v * (1 - f), v),
        (v * f, z, v),
        (v, z, v * (1 - f)),
    ]
    out = np.zeros(v.shape + (3,))
    for s, (r, g, b) in enumerate(table):
        sel = i == s
        out[sel] = np.stack([r[sel], g[sel], b[sel]], axis=-1)
    return out


def textured(h=64, w=80, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h, w), np.uint8)
    img = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def translate(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float64([[1, 0, dx], [0, 1, dy]])
    h, w = img.shape
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    cpu.set_num_threads(request.param)
    yield request.param
    cpu.set_num_threads(None)


@pytest.mark.parametrize("c", [3, 1])
def test_abs_diff(c, threads):
    x = random_frames(c=c)
    out = ops.motion(x, ops.METHOD_ABS_DIFF, device="cpu")
    assert out.shape == (2, 2, 23, 31, c) and out.dtype == np.float32
    g = ref_gray(x)
    want = np.abs(g[:, 1:] - g[:, :-1])
    for ch in range(c):
        np.testing.assert_allclose(out[..., ch], want, atol=1e-5)


@pytest.mark.parametrize("c", [3, 1])
def test_diff_mask(c, threads):
    x = random_frames(c=c, seed=1)
    out = ops.motion(x, ops.METHOD_DIFF_MASK, device="cpu")
    assert out.shape == (2, 2, 23, 31, c) and out.dtype == np.float32
    g = ref_gray(x)
    for n in range(2):
        for f in range(2):
            mask = ref_blur(np.abs(g[n, f + 1] - g[n, f]))
            want = (x[n, f].astype(np.float64) + x[n, f + 1]) / 2 * mask[..., None]
            np.testing.assert_allclose(out[n, f], want, atol=1e-5)


def test_render_flow_matches_the_rule():
    rng = np.random.default_rng(2)
    fl = rng.normal(0, 3, (17, 29, 2)).astype(np.float32)
    fl[0, 0] = (0.0, 0.0)  # angle 0 / magnitude minimum
    fl[0, 1] = (-1.0, -0.0)  # angle 180
    got = flow.render_flow(fl)
    assert got.shape == (17, 29, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_hsv_rgb(fl), atol=1e-5)
    # a constant field renders black (cv2.normalize's rule when max == min)
    assert not flow.render_flow(np.ones((4, 5, 2), np.float32)).any()


@pytest.mark.parametrize("c", [3, 1])
def test_optical_flow_and_flow_mask_follow_raw_flow(c, threads):
    x = random_frames(n=1, f1=3, h=32, w=40, c=c, seed=3)
    raw = ops.motion(x, "flow_raw", device="cpu")
    assert raw.shape == (1, 2, 32, 40, 2) and raw.dtype == np.float32
    rendered = ops.motion(x, ops.METHOD_OPTICAL_FLOW, device="cpu")
    masked = ops.motion(x, ops.METHOD_FLOW_MASK, device="cpu")
    assert rendered.shape == masked.shape == (1, 2, 32, 40, c)
    for f in range(2):
        rgb = ref_hsv_rgb(raw[0, f])
        want = rgb if c == 3 else (rgb @ GRAY_W)[..., None]
        np.testing.assert_allclose(rendered[0, f], want, atol=1e-5)
        mean = (x[0, f].astype(np.float64) + x[0, f + 1]) / 2
        np.testing.assert_allclose(masked[0, f], mean * ref_blur(want), atol=1e-5)


def test_flow_runs_on_rounded_gray():
    x = random_frames(n=1, f1=2, h=32, w=40, seed=4)
    g8 = np.clip(np.rint(ref_gray(x) * 255), 0, 255).astype(np.uint8)
    want = cv2.calcOpticalFlowFarneback(g8[0, 0], g8[0, 1], None, 0.5, 3, 15, 3, 5, 1.1, 0)
    np.testing.assert_array_equal(ops.motion(x, "flow_raw", device="cpu")[0, 0], want)
    want = cv2.calcOpticalFlowFarneback(g8[0, 0], g8[0, 1], None, 0.5, 2, 9, 4, 5, 1.1, 0)
    got = ops.motion(x, "flow_raw", levels=2, winsize=9, iterations=4, device="cpu")
    np.testing.assert_array_equal(got[0, 0], want)


@pytest.mark.parametrize("method", [4, 3, 1, 2, "flow_raw"])
def test_uint8_input_is_scaled_like_float(method):
    rng = np.random.default_rng(5)
    x8 = rng.integers(0, 256, (1, 3, 24, 32, 3), np.uint8)
    xf = x8.astype(np.float32) / 255
    got8 = ops.motion(x8, method, device="cpu")
    gotf = ops.motion(xf, method, device="cpu")
    assert got8.dtype == np.float32
    if method == "flow_raw":  # gray rounding to uint8 may differ by one level: tiny flow change
        np.testing.assert_allclose(got8, gotf, atol=0.02)
    else:
        np.testing.assert_allclose(got8, gotf * 255, atol=0.5)


@pytest.mark.parametrize("algorithm", ["farneback", "dis"])
def test_flow_raw_recovers_a_translation(algorithm):
    base = textured()
    frames = np.stack([base, translate(base, 2.0, 0.0), translate(base, 3.0, -1.0)])
    x = np.repeat(frames[None, ..., None], 3, axis=-1)  # (1, 3, H, W, 3) uint8
    raw = ops.motion(x, "flow_raw", flow=algorithm, device="cpu")
    inner = raw[0, :, 12:-12, 12:-12]  # away from the borders
    assert np.median(inner[0, ..., 0]) == pytest.approx(2.0, abs=0.25)
    assert np.median(inner[0, ..., 1]) == pytest.approx(0.0, abs=0.25)
    assert np.median(inner[1, ..., 0]) == pytest.approx(1.0, abs=0.25)
    assert np.median(inner[1, ..., 1]) == pytest.approx(-1.0, abs=0.25)


def test_dis_renders_too():
    base = textured(seed=1)
    x = np.stack([base, translate(base, 0.0, 2.0)])[None, ..., None].astype(np.float32) / 255
    out = ops.motion(x, ops.METHOD_OPTICAL_FLOW, flow="dis", device="cpu")
    assert out.shape == (1, 1, 64, 80, 1) and np.isfinite(out).all()
    # downward motion: hue 90 degrees (green to cyan), the gray of which is bright
    assert out.max() > 0.3


def test_four_dimensional_input_and_method_names():
    x = random_frames(n=1)[0]
    a = ops.motion(x, "abs_diff", device="cpu")
    b = ops.motion(x[None], ops.METHOD_ABS_DIFF, device="cpu")
    np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    x = random_frames()
    with pytest.raises(ValueError, match="unknown motion method"):
        ops.motion(x, 7, device="cpu")
    with pytest.raises(ValueError, match="flow"):
        ops.motion(x, 1, flow="lk", device="cpu")
    with pytest.raises(ValueError, match="two frames"):
        ops.motion(x[:, :1], 4, device="cpu")
    with pytest.raises(ValueError, match="uint8 or float32"):
        ops.motion(x.astype(np.float64), 4, device="cpu")
    with pytest.raises(ValueError):
        ops.motion(x[..., :2], 4, device="cpu")


def test_cuda_flow_falls_back_to_cpu_once(caplog):
    if flow.cuda_flow_available():
        pytest.skip("OpenCV has CUDA here")
    flow._warn_cpu_flow.cache_clear()
    g = np.stack([textured(32, 40), translate(textured(32, 40), 1, 0)])[None]
    with caplog.at_level(logging.INFO, logger="fastvid.ops.flow"):
        a = flow.compute_flows(g, use_cuda=True)
        flow.compute_flows(g, use_cuda=True)
    np.testing.assert_array_equal(a, flow.compute_flows(g))
    assert sum("runs on the CPU" in r.getMessage() for r in caplog.records) == 1

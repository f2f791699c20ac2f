"""The CuPy backend on a real GPU against the CPU backend (skipped without one).

What runs here is what test_kernels_emulated.py runs without a GPU, plus what only a
GPU has: NVRTC compilation by CuPy, pinned memory and async copies, streams, device
arrays handed on through DLPack.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from helpers import smooth_clip

import fastvid.ops as ops
from fastvid.ops.affine import AugmentParams

cuda = pytest.mark.cuda


def _cupy():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy sees no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"CuPy sees no CUDA device ({exc})")
    return cp


@pytest.fixture(scope="module")
def cp():
    return _cupy()


def test_gpu_bench_says_not_measured_without_a_device():
    from fastvid.bench.process_gpu import gpu_results, gpu_unavailable

    if gpu_unavailable() is None:
        pytest.skip("a GPU is present")
    rows = gpu_results(sizes=((112, 112), (224, 224)))
    assert rows and all(r["skipped"].startswith("not measured") for r in rows)
    assert {r["group"] for r in rows} >= {"gpu prepare 112x112", "gpu diff_mask 224x224"}


AUGMENT = AugmentParams(flip=0.5, rotation=25.0, zoom=0.25, shift=0.2)
TOL = 1 / 255 + 1e-6


@cuda
@pytest.mark.parametrize("augment", [None, AUGMENT], ids=["resize", "augment"])
@pytest.mark.parametrize("color", ["rgb", "gray"])
@pytest.mark.parametrize("fmt", ["rgb", "yuv420p"])
def test_prepare_matches_cpu(cp, fmt, color, augment):
    rng = np.random.default_rng(3)
    sources = [(226, 130), (162, 98)]  # even sizes (I420), different per clip
    clips = [smooth_clip(rng, 5, h, w, i420=fmt == "yuv420p") for w, h in sources]
    kw = dict(size=(65, 111), color=color, augment=augment, seed=42, input_format=fmt)
    got = ops.prepare(clips, device="cuda", **kw)
    want = ops.prepare(clips, device="cpu", **kw)
    assert isinstance(got, cp.ndarray) and got.dtype == cp.float32
    assert got.shape == want.shape
    err = float(cp.abs(got - cp.asarray(want)).max())
    assert err <= TOL, f"max |gpu - cpu| = {err * 255:.3f} levels"


@cuda
def test_prepare_takes_device_clips_and_auto_picks_cuda(cp):
    rng = np.random.default_rng(4)
    clips = [rng.integers(1, 256, (3, 48, 64, 3), dtype=np.uint8) for _ in range(2)]
    host = ops.prepare(clips, size=(24, 32), device="cuda")
    on_device = ops.prepare([cp.asarray(c) for c in clips], size=(24, 32), device="auto")
    assert isinstance(on_device, cp.ndarray)
    cp.testing.assert_array_equal(host, on_device)


@cuda
def test_i420_is_cv2_on_the_gpu(cp):
    rng = np.random.default_rng(5)
    h, w = 64, 96
    clip = rng.integers(0, 256, (2, h * 3 // 2, w), dtype=np.uint8)
    got = ops.prepare([clip], size=(h, w), rescale=1.0, input_format="yuv420p", device="cuda")
    want = np.stack([cv2.cvtColor(f, cv2.COLOR_YUV2RGB_I420) for f in clip])
    np.testing.assert_array_equal(cp.asnumpy(got[0]), want.astype(np.float32))


@cuda
@pytest.mark.parametrize("dtype", [np.float32, np.uint8], ids=["float", "uint8"])
@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize(
    "method",
    [
        ops.METHOD_ABS_DIFF,
        ops.METHOD_DIFF_MASK,
        ops.METHOD_OPTICAL_FLOW,
        ops.METHOD_FLOW_MASK,
        "flow_raw",
    ],
)
def test_motion_matches_cpu(cp, method, c, dtype):
    rng = np.random.default_rng(6)
    base = smooth_clip(rng, 1, 80, 100)[0]
    seq = np.stack([base[k : k + 64, 2 * k : 2 * k + 80] for k in range(4)])
    u8 = np.stack([seq, np.roll(seq, 3, axis=2)])
    u8 = u8 if c == 3 else u8[..., :1].copy()
    frames = u8 if dtype == np.uint8 else (u8 / np.float32(255)).astype(np.float32)
    got = ops.motion(cp.asarray(frames), method, device="cuda")
    want = ops.motion(frames, method, device="cpu")
    assert isinstance(got, cp.ndarray) and got.shape == want.shape
    scale = 255.0 if dtype == np.uint8 else 1.0
    # gray and gray->uint8 are bit-exact, so the flows are the CPU's own
    np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-5, atol=1e-5 * scale)


@cuda
def test_gray_is_bit_exact_on_the_gpu(cp):
    rng = np.random.default_rng(7)
    frames = (rng.integers(1, 256, (2, 3, 33, 47, 3)) / np.float32(255)).astype(np.float32)
    got = ops.motion(frames, ops.METHOD_ABS_DIFF, device="cuda")
    np.testing.assert_array_equal(cp.asnumpy(got), ops.motion(frames, 4, device="cpu"))


@cuda
def test_threads_get_their_own_streams(cp):
    rng = np.random.default_rng(8)
    clips = [rng.integers(1, 256, (4, 60, 80, 3), dtype=np.uint8) for _ in range(3)]
    want = cp.asnumpy(ops.prepare(clips, size=(30, 40), device="cuda"))
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(cp.asnumpy(ops.prepare(clips, size=(30, 40), device="cuda")))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, want)


@cuda
@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_to_backend_shares_device_memory(cp, backend):
    from fastvid.bridge import to_backend

    batch = ops.prepare([np.full((2, 24, 32, 3), 77, np.uint8)], size=(16, 12), device="cuda")
    if backend == "torch":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("torch without CUDA")
        t = to_backend(batch, backend="torch")
        assert t.data_ptr() == batch.data.ptr
    elif backend == "jax":
        jax = pytest.importorskip("jax")
        if not any(d.platform == "gpu" for d in jax.devices()):
            pytest.skip("jax without a GPU")
        x = to_backend(batch, backend="jax")
        assert x.unsafe_buffer_pointer() == batch.data.ptr
    else:
        tf = pytest.importorskip("tensorflow")
        if not tf.config.list_physical_devices("GPU"):
            pytest.skip("TensorFlow without a GPU")
        x = to_backend(batch, backend="tensorflow")
        back = cp.from_dlpack(tf.experimental.dlpack.to_dlpack(x))
        assert back.data.ptr == batch.data.ptr
    assert float(batch.mean()) == pytest.approx(77 / 255, abs=1e-6)


@cuda
def test_gpu_benchmark_runs(cp):
    from fastvid.ops import cuda

    rows = cuda.benchmark(
        sizes=((32, 32),), batch=2, frames=3, source=(64, 48), repeats=1, warmup=1
    )
    assert {r["op"] for r in rows} >= {"prepare", "prepare+augment", "abs_diff", "diff_mask"}
    assert all(r["frames_per_s"] > 0 for r in rows)

"""The CuPy backend on a real GPU against the CPU backend (skipped without one).

What runs here is what test_kernels_emulated.py and test_gpu_path.py run without a GPU,
plus what only a GPU has: NVRTC compilation by CuPy, pinned memory and async copies,
streams, device arrays read by their consumers through DLPack. Each test checks the
claim itself: numbers within the tolerance the CPU itself allows (its gray differs by
instruction set; CUDA Farneback differs from the CPU's by design), the consumer's own
reading of a handed-off tensor, distinct streams, the pinned buffer's growth, a batch
past 2**31 elements. ``bench/gpu_check.sh`` runs this file with ``-m cuda`` and fails
when any of it is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import cv2
import numpy as np
import pytest
from helpers import run_in_threads, smooth_clip

import fastvid.ops as ops
from fastvid.ops import flow as flowmod
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


def _gray_is_fused() -> bool:
    from test_kernels_emulated import cv2_gray_is_fused

    return cv2_gray_is_fused()


@cuda
def test_auto_picks_cuda_and_the_probe_reports_the_toolchain(cp):
    from fastvid.ops.device import probe_cuda

    assert ops.resolve_device("auto") == "cuda"
    details = probe_cuda().details
    assert details["ok"] and details["devices"] >= 1 and details["nvrtc"]


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
    err = float(np.abs(cp.asnumpy(got) - want).max())
    assert err <= TOL, f"max |gpu - cpu| = {err * 255:.3f} levels"


@cuda
@pytest.mark.parametrize("fmt", ["rgb", "yuv420p"])
def test_augmented_sharp_input_matches_the_float_reference(cp, fmt):
    from test_kernels_emulated import random_clip, ref_prepare

    from fastvid.ops.affine import batch_matrices, make_rng

    rng = np.random.default_rng(4)
    sources = [(38, 24), (30, 32)]
    clips = [random_clip(rng, 3, h, w, i420=fmt == "yuv420p") for w, h in sources]
    got = ops.prepare(
        clips, size=(13, 19), augment=AUGMENT, seed=9, input_format=fmt, device="cuda"
    )
    mats = batch_matrices(sources, (19, 13), AUGMENT, make_rng(9))
    want = ref_prepare(clips, mats, (19, 13), "rgb", 1 / 255, fmt == "yuv420p")
    np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-5, atol=1e-5)


@cuda
def test_prepare_takes_device_clips(cp):
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
def test_a_batch_past_2_31_elements(cp):
    """Every index of a > 2**31-element output is computed (64-bit index maths)."""
    from fastvid.ops import cuda as backend

    frames, side = 44, 4096  # 44 * 4096 * 4096 * 3 = 2.2e9 elements (8.9 GB float32)
    need = frames * side * side * 3 * 4
    free, total = cp.cuda.runtime.memGetInfo()
    if free < need * 1.2:
        pytest.skip(f"needs {need * 1.2 / 2**30:.1f} GiB of free GPU memory")
    state = backend.device().state
    state.pool.set_limit(fraction=0.9)
    try:
        clip = np.repeat(np.arange(1, frames + 1, dtype=np.uint8), 8 * 8 * 3)
        out = ops.prepare(
            [clip.reshape(frames, 8, 8, 3)], size=(side, side), rescale=1.0, device="cuda"
        )
        assert out.size > 2**31
        per_frame = out.reshape(frames, -1)
        want = np.arange(1, frames + 1, dtype=np.float32)
        np.testing.assert_array_equal(cp.asnumpy(per_frame.min(axis=1)), want)
        np.testing.assert_array_equal(cp.asnumpy(per_frame.max(axis=1)), want)
        del out, per_frame
    finally:
        state.pool.free_all_blocks()
        state.pool.set_limit(fraction=backend.memory_fraction())


MOTION = [
    ops.METHOD_ABS_DIFF,
    ops.METHOD_DIFF_MASK,
    ops.METHOD_OPTICAL_FLOW,
    ops.METHOD_FLOW_MASK,
    "flow_raw",
]


@cuda
@pytest.mark.parametrize("dtype", [np.float32, np.uint8], ids=["float", "uint8"])
@pytest.mark.parametrize("c", [3, 1])
@pytest.mark.parametrize("method", MOTION)
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
    got = cp.asnumpy(got)
    scale = 255.0 if dtype == np.uint8 else 1.0
    is_flow = ops.motion_method(method).source != "diff"
    if is_flow and flowmod.cuda_flow_available():
        # CUDA Farneback is not the CPU's: the same motion, not the same numbers
        if method == "flow_raw":
            assert np.median(np.abs(got - want)) < 0.25  # pixels
        else:
            assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9
        return
    if is_flow and c == 3 and not _gray_is_fused():
        # this CPU's gray rounds otherwise in the last bit: uint8 ties move a few pixels
        assert np.mean(np.abs(got - want) <= 1e-4 * scale) > 0.99
        return
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


@cuda
def test_gray_matches_the_cpu(cp):
    rng = np.random.default_rng(7)
    frames = (rng.integers(1, 256, (2, 3, 33, 47, 3)) / np.float32(255)).astype(np.float32)
    got = cp.asnumpy(ops.motion(frames, ops.METHOD_ABS_DIFF, device="cuda"))
    want = ops.motion(frames, ops.METHOD_ABS_DIFF, device="cpu")
    if _gray_is_fused():  # the CPU rounds as the kernel does: bit for bit
        np.testing.assert_array_equal(got, want)
    else:  # one rounding apart: an ulp of each gray value
        np.testing.assert_allclose(got, want, rtol=0, atol=2 * np.finfo(np.float32).eps)


@cuda
def test_threads_get_distinct_streams_and_the_same_numbers(cp):
    from fastvid.ops import cuda as backend

    rng = np.random.default_rng(8)
    batches = [
        [rng.integers(1, 256, (4, 40 + 6 * k, 60 + 6 * k, 3), dtype=np.uint8) for _ in range(3)]
        for k in range(6)
    ]

    def run_all():
        out = []
        for clips in batches:
            x = ops.prepare(clips, size=(30, 40), device="cuda")
            out.append((cp.asnumpy(x), cp.asnumpy(ops.motion(x, 2, device="cuda"))))
        return out

    want = run_all()
    results, streams = [], {}

    def work(k):
        # the stream object itself is kept: a finished thread's stream handle may be reused
        streams[k] = backend.device().stream
        results.append(run_all())

    errors = run_in_threads(work, range(8))
    assert not errors, errors[0]
    ptrs = {s.ptr for s in streams.values()}
    assert len(ptrs) == 8 and 0 not in ptrs
    assert all(s.is_non_blocking for s in streams.values())
    for got in results:
        for (gx, gm), (wx, wm) in zip(got, want, strict=True):
            np.testing.assert_array_equal(gx, wx)
            np.testing.assert_array_equal(gm, wm)


@cuda
def test_pinned_buffer_grows_and_stays_right(cp):
    from fastvid.ops import cuda as backend

    def run():
        dev = backend.device()
        sizes = [dev.pinned_size]
        rng = np.random.default_rng(9)
        for frames, side in [(2, 16), (4, 300), (8, 480)]:
            clip = rng.integers(1, 256, (frames, side, side + 2, 3), dtype=np.uint8)
            got = cp.asnumpy(ops.prepare([clip], size=(24, 32), device="cuda"))
            np.testing.assert_allclose(
                got, ops.prepare([clip], size=(24, 32), device="cpu"), atol=TOL
            )
            sizes.append(dev.pinned_size)
        out.extend(sizes)

    out: list[int] = []
    t = threading.Thread(target=run)  # a fresh thread: a fresh pinned buffer
    t.start()
    t.join()
    assert out[0] == 0 and out[1] == backend.PINNED_MIN_BYTES
    assert out[1] < out[2] < out[3] and out[3] >= 8 * 480 * 482 * 3


@cuda
def test_a_consumer_on_a_side_stream_reads_finished_data(cp):
    from fastvid.ops import cuda as backend

    rng = np.random.default_rng(10)
    clips = [smooth_clip(rng, 16, 240, 320) for _ in range(8)]
    want = ops.prepare(clips, size=(224, 224), device="cpu").sum(dtype=np.float64)
    for _ in range(5):
        x = ops.prepare(clips, size=(224, 224), device="cuda")
        side = cp.cuda.Stream(non_blocking=True)
        with side:  # at once, no host wait: ordered by the DLPack protocol alone
            total = float(cp.from_dlpack(backend.HANDOFFS.export(x)).sum(dtype=cp.float64))
        assert total == pytest.approx(want, rel=1e-6)


@cuda
def test_capsule_kinds_of_this_cupy(cp):
    from fastvid.bridge import capsule_name

    x = cp.zeros(4, cp.float32)
    assert capsule_name(x.__dlpack__()) == "dltensor"  # what TensorFlow takes
    assert capsule_name(x.__dlpack__(max_version=(1, 0))) == "dltensor_versioned"


def _batch(cp):
    x = ops.prepare([np.full((2, 24, 32, 3), 77, np.uint8)], size=(16, 12), device="cuda")
    x[0, 1] *= 2  # not constant: a reduction over the wrong bytes shows
    return x, float(x.sum(dtype=cp.float64))


@cuda
def test_to_torch_shares_memory_and_torch_reads_it(cp):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    from fastvid.bridge import to_backend
    from fastvid.ops import cuda as backend

    x, want = _batch(cp)
    t = to_backend(backend.HANDOFFS.export(x), backend="torch")  # what hand_off gives torch
    assert t.data_ptr() == x.data.ptr
    assert float(t.double().sum()) == pytest.approx(want, rel=1e-6)
    del t, x
    torch.cuda.synchronize()
    backend.HANDOFFS.collect()
    assert backend.HANDOFFS.collect() == 0  # released once torch's stream is done


@cuda
def test_to_jax_shares_memory_and_jax_reads_it(cp):
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("jax without a GPU")
    from fastvid.bridge import to_backend

    x, want = _batch(cp)
    t = to_backend(x, backend="jax")
    assert t.unsafe_buffer_pointer() == x.data.ptr
    assert float(jax.numpy.sum(t)) == pytest.approx(want, rel=1e-5)


@cuda
def test_to_tensorflow_shares_memory_and_tensorflow_reads_it(cp):
    tf = pytest.importorskip("tensorflow")
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow without a GPU")
    from fastvid.bridge import to_backend

    x, want = _batch(cp)
    t = to_backend(x, backend="tensorflow")  # CuPy 14's toDlpack() would be refused
    back = cp.from_dlpack(tf.experimental.dlpack.to_dlpack(t))
    assert back.data.ptr == x.data.ptr
    assert float(tf.reduce_sum(tf.cast(t, tf.float64))) == pytest.approx(want, rel=1e-6)


@cuda
def test_a_fork_after_resolving_auto_uses_cuda(cp):
    code = textwrap.dedent("""
        import os, sys
        import numpy as np
        import fastvid.ops as ops
        assert ops.resolve_device("auto") == "cuda" and "cupy" not in sys.modules
        pid = os.fork()
        if pid == 0:
            x = ops.prepare([np.full((2, 8, 8, 3), 51, np.uint8)], size=(4, 4), device="cuda")
            os._exit(0 if abs(float(x.mean()) - 0.2) < 1e-6 else 3)
        print("child", os.waitpid(pid, 0)[1])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert "child 0" in res.stdout, res.stderr[-2000:]


@cuda
def test_hidden_devices_mean_the_cpu(cp):
    res = subprocess.run(
        [sys.executable, "-c", "from fastvid.ops import resolve_device; print(resolve_device())"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert res.stdout.strip().splitlines()[-1] == "cpu", res.stderr[-2000:]


@cuda
def test_gpu_benchmark_runs(cp):
    from fastvid.ops import cuda as backend

    rows = backend.benchmark(
        sizes=((32, 32),), batch=2, frames=3, source=(64, 48), repeats=1, warmup=1
    )
    assert {r["op"] for r in rows} >= {"prepare", "prepare+augment", "abs_diff", "diff_mask"}
    assert all(r["frames_per_s"] > 0 for r in rows)

"""fastvid.ops.prepare on the CPU backend: shapes, sampling convention, colour, augmentation."""

from __future__ import annotations

import importlib.util
import sys
import threading

import cv2
import numpy as np
import pytest

import fastvid.ops as ops
from fastvid.ops import cpu
from fastvid.ops.affine import AugmentParams, make_rng, sequence_matrices
from fastvid.synth import draw_frame, frame_index

AUG = AugmentParams(flip=0.5, rotation=12, zoom=0.15, shift=0.1)
GRAY_W = np.array([0.299, 0.587, 0.114])


def random_clips(n=3, f=4, h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (f, h, w, 3), np.uint8) for _ in range(n)]


def smooth_clip(f=3, h=48, w=64, seed=0):
    """Random but smooth pictures (blurred noise), so that chroma subsampling loses little."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (f, h, w, 3), np.uint8)
    return np.stack([cv2.GaussianBlur(x, (0, 0), 3) for x in noise])


def reference_sample(src: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact bilinear sampling at M @ (x, y, 1), border replicate, float64 (the contract)."""
    h, w = src.shape[:2]
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(int), y0.astype(int)

    def px(yy, xx):
        return src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)

    top = px(y0, x0) * (1 - fx) + px(y0, x0 + 1) * fx
    bottom = px(y0 + 1, x0) * (1 - fx) + px(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    cpu.set_num_threads(request.param)
    yield request.param
    cpu.set_num_threads(None)


def test_shapes_and_dtypes(threads):
    clips = random_clips(n=3, f=5)
    out = ops.prepare(clips, size=(16, 20), device="cpu")
    assert out.shape == (3, 5, 16, 20, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    gray = ops.prepare(clips, size=(15, 21), color="gray", device="cpu")
    assert gray.shape == (3, 5, 15, 21, 1) and gray.dtype == np.float32
    # a 5-D array works as N clips; sequences of different sizes too
    out5 = ops.prepare(np.stack(clips), size=(16, 20), device="cpu")
    np.testing.assert_array_equal(out, out5)
    mixed = [clips[0], random_clips(1, 5, 61, 17)[0]]
    assert ops.prepare(mixed, size=(7, 9), device="cpu").shape == (2, 5, 7, 9, 3)


def test_identity_resize_is_rescale_only(threads):
    clips = random_clips(n=2, f=3, h=24, w=31)
    out = ops.prepare(clips, size=(24, 31), rescale=0.5, device="cpu")
    np.testing.assert_array_equal(out, np.stack(clips).astype(np.float32) * np.float32(0.5))


def test_plain_resize_equals_cv2_resize(threads):
    clips = random_clips(n=2, f=3)
    for size in [(20, 16), (106, 74), (53, 18)]:
        out = ops.prepare(clips, size=size[::-1], rescale=1.0, device="cpu")
        for n, clip in enumerate(clips):
            for f, frame in enumerate(clip):
                want = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
                np.testing.assert_array_equal(out[n, f], want.astype(np.float32))


def test_frames_keep_their_order():
    clip = np.stack([draw_frame(i, 96, 72) for i in (5, 0, 17, 300)])
    out = ops.prepare([clip], size=(48, 64), device="cpu")
    assert [frame_index(fr) for fr in out[0]] == [5, 0, 17, 300]
    gray = ops.prepare([clip], size=(48, 64), color="gray", device="cpu")
    assert [frame_index(fr) for fr in gray[0]] == [5, 0, 17, 300]
    yuv = np.stack([cv2.cvtColor(fr, cv2.COLOR_RGB2YUV_I420) for fr in clip])
    for color in ("rgb", "gray"):
        out = ops.prepare([yuv], size=(40, 48), color=color, input_format="yuv420p")
        assert [frame_index(fr) for fr in out[0]] == [5, 0, 17, 300]


def test_augmented_prepare_matches_exact_bilinear_sampling(threads):
    clips = random_clips(n=4, f=2)
    out = ops.prepare(clips, size=(23, 29), augment=AUG, seed=11, rescale=1.0, device="cpu")
    ms = sequence_matrices((53, 37), (29, 23), AUG, make_rng(11), 4)
    for n in range(4):
        for f in range(2):
            want = reference_sample(clips[n][f], ms[n], (29, 23))
            assert np.abs(out[n, f] - want).max() <= 0.52  # OpenCV rounds to uint8


def test_augmentation_is_per_sequence(threads):
    # every frame of a sequence holds the same picture: the same transform keeps them equal
    pic = smooth_clip(f=1)[0]
    clips = [np.repeat(pic[None], 4, axis=0) for _ in range(5)]
    out = ops.prepare(clips, size=(30, 40), augment=AUG, seed=2, device="cpu")
    for n in range(5):
        for f in range(1, 4):
            np.testing.assert_array_equal(out[n, f], out[n, 0])
    # ... and different sequences get different draws
    for n in range(1, 5):
        assert np.abs(out[n, 0] - out[0, 0]).max() > 0.05


def test_flip_mirrors_every_frame():
    clips = random_clips(n=2, f=3)
    plain = ops.prepare(clips, size=(18, 26), device="cpu")
    flipped = ops.prepare(clips, size=(18, 26), augment=AugmentParams(flip=1.0), device="cpu")
    assert np.abs(flipped - plain[:, :, :, ::-1]).max() <= 1 / 255 + 1e-6


def test_shift_moves_content_of_every_frame():
    # shift by exactly 4 output pixels: the picture moves right by 4 in every frame
    clip = smooth_clip(f=3, h=30, w=40)
    shift = 4 / 40
    draws = ops.prepare(
        [clip],
        size=(30, 40),
        augment=AugmentParams(shift=shift),
        seed=0,
        rescale=1.0,
        device="cpu",
    )[0]
    dx = round((2 * np.random.default_rng(0).random(5)[3] - 1) * shift * 40, 9)
    dy = round((2 * np.random.default_rng(0).random(5)[4] - 1) * shift * 30, 9)
    m = np.float64([[1, 0, -dx], [0, 1, -dy]])
    for f in range(3):
        want = reference_sample(clip[f], m, (40, 30))
        assert np.abs(draws[f] - want).max() <= 0.52


def test_seed_determinism():
    clips = random_clips(n=3, f=2)
    a = ops.prepare(clips, size=(24, 24), augment=AUG, seed=5, device="cpu")
    b = ops.prepare(clips, size=(24, 24), augment=AUG, seed=5, device="cpu")
    c = ops.prepare(clips, size=(24, 24), augment=AUG, seed=6, device="cpu")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g = np.random.default_rng(5)
    np.testing.assert_array_equal(
        ops.prepare(clips, size=(24, 24), augment=AUG, seed=g, device="cpu"), a
    )
    # the generator advanced: the next call draws something else
    assert not np.array_equal(
        ops.prepare(clips, size=(24, 24), augment=AUG, seed=g, device="cpu"), a
    )


def test_gray_is_weighted_rgb(threads):
    clips = random_clips(n=2, f=3)
    for aug in (None, AUG):
        rgb = ops.prepare(clips, size=(20, 30), augment=aug, seed=1, device="cpu")
        gray = ops.prepare(clips, size=(20, 30), color="gray", augment=aug, seed=1, device="cpu")
        np.testing.assert_allclose(gray[..., 0], rgb @ GRAY_W, atol=1e-6)


@pytest.mark.parametrize("aug", [None, AUG], ids=["resize", "augment"])
def test_i420_input_equals_rgb_path(aug, threads):
    # smooth pictures: sharp colour edges (noise, synth frames) leave the RGB gamut after
    # chroma subsampling, and clamping the decoded RGB changes its gray, not the luma's
    rgb_src = [smooth_clip(f=3, h=48, w=64, seed=s) for s in range(3)]
    yuv = [np.stack([cv2.cvtColor(fr, cv2.COLOR_RGB2YUV_I420) for fr in c]) for c in rgb_src]
    decoded = [np.stack([cv2.cvtColor(fr, cv2.COLOR_YUV2RGB_I420) for fr in c]) for c in yuv]
    kw = dict(size=(40, 28), augment=aug, seed=3, device="cpu", rescale=1.0)
    for color in ("rgb", "gray"):
        from_yuv = ops.prepare(yuv, input_format="yuv420p", color=color, **kw)
        from_rgb = ops.prepare(decoded, color=color, **kw)
        assert from_yuv.shape == from_rgb.shape
        tol = 0 if color == "rgb" else 2
        assert np.abs(from_yuv - from_rgb).max() <= tol + 1e-4, color


def test_bad_arguments():
    clips = random_clips(n=2, f=2)
    with pytest.raises(ValueError, match="uint8"):
        ops.prepare([c.astype(np.float32) for c in clips], size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match="frame count"):
        ops.prepare([clips[0], clips[1][:1]], size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match="color"):
        ops.prepare(clips, size=(8, 8), color="bgr", device="cpu")
    with pytest.raises(ValueError, match="RGB clip"):
        ops.prepare([c[..., 0] for c in clips], size=(8, 8), device="cpu")
    with pytest.raises(ValueError, match="I420"):
        ops.prepare(clips, size=(8, 8), input_format="yuv420p", device="cpu")
    with pytest.raises(ValueError, match="size"):
        ops.prepare(clips, size=(8, 0), device="cpu")
    with pytest.raises(ValueError, match="device"):
        ops.prepare(clips, size=(8, 8), device="tpu")
    with pytest.raises(ValueError, match="at least one"):
        ops.prepare([], size=(8, 8), device="cpu")


def _cuda_usable() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.skipif(_cuda_usable(), reason="a CUDA device is present")
def test_cuda_without_device_raises_a_helpful_error():
    with pytest.raises(ops.DeviceUnavailableError, match=r"fastvid\[cuda\]|no CUDA device"):
        ops.resolve_device("cuda")
    assert issubclass(ops.DeviceUnavailableError, RuntimeError)
    assert ops.resolve_device("auto") == "cpu"
    assert ops.resolve_device("cpu") == "cpu"
    out = ops.prepare(random_clips(1, 1), size=(8, 8))  # auto falls back to the CPU
    assert isinstance(out, np.ndarray)


def test_ops_import_is_light():
    # fastvid.ops (CPU parts) must not pull TensorFlow or CuPy in
    code = (
        "import sys, numpy as np, fastvid.ops as o;"
        "o.prepare([np.zeros((1, 4, 4, 3), np.uint8)], size=(2, 2), device='cpu');"
        "o.motion(np.zeros((1, 2, 4, 4, 3), np.float32), o.METHOD_ABS_DIFF, device='cpu');"
        "bad = [m for m in ('tensorflow', 'cupy', 'torch', 'jax') if m in sys.modules];"
        "assert not bad, bad"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_process_bench_smoke():
    import argparse

    from fastvid.bench import common, process

    parser = argparse.ArgumentParser()
    process.add_arguments(parser)
    args = parser.parse_args(
        [
            "--process-sizes",
            "32",
            "--process-batch",
            "2",
            "--process-frames",
            "2",
            "--process-motion",
            "abs_diff,flow_raw",
            "--process-no-keras",
        ]
    )
    args.quick, args.repeats, args.warmup = True, 1, 0
    rows = process.run(args)
    results = [r for r in rows if r.get("kind") == "result"]
    groups = {r["group"] for r in results}
    assert groups == {
        "prepare rgb @32x32",
        "prepare rgb + augment @32x32",
        "motion abs_diff @32x32",
        "motion flow_raw @32x32",
    }
    timed = [r for r in results if r.get("median_s") is not None]
    assert all(r["frames_per_s"] > 0 for r in timed)
    assert any(r["method"] == "fastvid cuda" for r in results)
    targets = [r for r in rows if r.get("kind") == "target"]
    assert len(targets) == 2
    assert "prepare rgb @32x32" in common.render_results(results)


def test_naive_ports_compute_the_same_pictures():
    from fastvid.bench import process

    clips = process.make_clips(2, 3, size=(64, 48))
    naive = process.naive_prepare(clips, (32, 24))[..., ::-1]  # it swaps (BGR input)
    ours = ops.prepare(clips, size=(24, 32), device="cpu")
    np.testing.assert_allclose(naive, ours, atol=1e-6)
    absdiff = process.naive_motion(ours, ops.METHOD_ABS_DIFF)
    np.testing.assert_allclose(
        absdiff, ops.motion(ours, ops.METHOD_ABS_DIFF, device="cpu"), atol=1e-5
    )


def test_pool_survives_fork_and_nesting():
    import multiprocessing as mp

    clips = random_clips(n=2, f=3)
    want = ops.prepare(clips, size=(10, 12), device="cpu")  # the parent's pool is running
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_prepare_in_child, (clips,)).get(timeout=60)
    np.testing.assert_array_equal(got, want)
    # a task on the pool that calls the ops again runs inline instead of deadlocking
    out = []
    cpu.run_tasks(
        lambda k: out.append(ops.prepare(clips, size=(10, 12), device="cpu")),
        [(0,), (1,)],
        threads=2,
    )
    for o in out:
        np.testing.assert_array_equal(o, want)


def _prepare_in_child(clips):
    return ops.prepare(clips, size=(10, 12), device="cpu")


def test_run_tasks_runs_every_task_once_across_threads_and_reraises():
    seen = []
    lock = threading.Lock()

    def record(k):
        with lock:
            seen.append((k, threading.get_ident()))

    cpu.run_tasks(record, [(k,) for k in range(101)], threads=2)
    assert sorted(k for k, _ in seen) == list(range(101))

    def fail_on_7(k):
        if k == 7:
            raise ValueError("task 7")

    with pytest.raises(ValueError, match="task 7"):
        cpu.run_tasks(fail_on_7, [(k,) for k in range(20)], threads=2)

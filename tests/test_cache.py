"""The frame cache: uint8, bounded, least recently used out; and through a generator."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import run_in_threads

from fastvid.cache import FrameCache, default_cache_bytes
from fastvid.synth import frame_indices, make_video


def frame(value: int, size: int = 10) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)  # 300 bytes


def test_bound_is_respected_and_oldest_go_first():
    cache = FrameCache(max_bytes=1000)
    for k in range(10):
        cache.put(k, frame(k))
        assert cache.nbytes <= 1000
    assert len(cache) == 3 and cache.nbytes == 900
    assert [k in cache for k in range(10)] == [False] * 7 + [True] * 3
    assert cache.stats().evictions == 7


def test_get_refreshes_recency():
    cache = FrameCache(max_bytes=900)
    for k in range(3):
        cache.put(k, frame(k))
    assert cache.get(0) is not None  # 0 is now the most recent
    cache.put(3, frame(3))
    assert 0 in cache and 1 not in cache


def test_hit_returns_identical_read_only_data():
    cache = FrameCache(max_bytes=10_000)
    src = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    cache.put("k", src)
    src[:] = 0  # the cache kept its own copy
    got = cache.get("k")
    assert got is cache.get("k")  # no copy on a hit
    assert not got.flags.writeable
    assert got.dtype == np.uint8 and got.any()
    assert cache.get("absent") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 1)


def test_a_view_does_not_keep_its_base_alive():
    cache = FrameCache(max_bytes=10_000)
    clip = np.zeros((100, 10, 10, 3), np.uint8)  # 30 kB
    cache.put("f", clip[5])
    assert cache.get("f").base is None and cache.nbytes == 300


def test_too_large_or_wrong_dtype():
    cache = FrameCache(max_bytes=100)
    assert not cache.put("big", frame(1))
    assert len(cache) == 0
    with pytest.raises(ValueError, match="uint8"):
        cache.put("f", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        FrameCache(-1)


def test_replacing_a_key_keeps_the_count_right():
    cache = FrameCache(max_bytes=1000)
    cache.put("a", frame(1))
    cache.put("a", frame(2))
    assert cache.nbytes == 300 and cache.get("a")[0, 0, 0] == 2
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_threads_never_break_the_bound():
    cache = FrameCache(max_bytes=3000)

    def work(base):
        for k in range(200):
            cache.put((base, k), frame(k % 256))
            cache.get((base, k - 1))

    assert not run_in_threads(work, range(4))
    assert cache.nbytes <= 3000 and cache.nbytes == 300 * len(cache)


def test_pickled_copy_starts_empty():
    cache = FrameCache(max_bytes=1000)
    cache.put("a", frame(1))
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.max_bytes == 1000
    copy.put("b", frame(2))
    assert "b" in copy


def test_default_bound_is_positive():
    assert default_cache_bytes() > 0


# --- through a generator ---


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_ds")
    for cls, motion in (("left", (-2, 0)), ("right", (2, 0))):
        for k in range(4):
            make_video(root / cls / f"{cls}_{k}.avi", 24 + 4 * k, codec="mpeg4", motion=motion)
    return str(root / "{classname}" / "*.avi")


def test_generator_cache_is_bounded_and_hits_are_identical(small_dataset):
    from fastvid import SlidingFrameGenerator, VideoFrameGenerator

    kwargs = dict(
        glob_pattern=small_dataset,
        nb_frames=4,
        batch_size=4,
        target_shape=(24, 32),
        seed=5,
        prefetch=False,
    )
    plain = VideoFrameGenerator(**kwargs)
    cached = VideoFrameGenerator(**kwargs, use_frame_cache=True)
    frame_bytes = 24 * 32 * 3
    assert cached.cache is not None and plain.cache is None
    first = [cached[i] for i in range(len(cached))]
    assert len(cached.cache) == 8 * 4  # every frame once, uint8 at the target size
    assert cached.cache.nbytes == 8 * 4 * frame_bytes
    hits = cached.cache.hits
    again = [cached[i] for i in range(len(cached))]
    assert cached.cache.hits == hits + 8 * 4  # the second pass decodes nothing
    for (xa, ya), (xb, _), (xp, yp) in zip(
        first, again, [plain[i] for i in range(len(plain))], strict=True
    ):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(xa, xp)  # same numbers as without a cache
        np.testing.assert_array_equal(ya, yp)

    # a bound smaller than the data: never exceeded, memory flat across epochs
    bound = 10 * frame_bytes
    small = SlidingFrameGenerator(**kwargs, cache_bytes=bound)
    assert small.use_frame_cache
    sizes = []
    for _epoch in range(3):
        for i in range(len(small)):
            x, _ = small[i]
            assert small.cache.nbytes <= bound
        sizes.append(small.cache.nbytes)
        small.on_epoch_end()
    assert sizes[0] == sizes[1] == sizes[2] <= bound
    # and what comes back is still the right frames
    path, indices = small.sample_indices(int(small.indexes[0]))
    assert frame_indices(small[0][0][0]) == indices

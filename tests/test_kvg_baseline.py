"""The keras-video-generators port returns the frames the original would.

The reference below re-states keras-video-generators 1.0.14's ``_get_frames``
loop (1-based position, header count rounded up to even, step
``floor(total / (nb_frames - 1))``, keep position 1, multiples of the step and
the last frame, stop at ``nb_frames``); the frames that come back are
identified by the index drawn in their pixels.
"""

from __future__ import annotations

from math import floor

import cv2
import numpy as np
import pytest

from fastvid.synth import frame_index, frame_indices, make_video

kvg = pytest.importorskip("fastvid.bench.kvg_baseline")


def original_positions(total: int, nb_frames: int) -> list[int]:
    """0-based indices kept by the original's sequential read of a ``total``-frame video."""
    orig_total = total
    if total % 2 != 0:
        total += 1
    frame_step = max(1, floor(total / (nb_frames - 1)))
    kept, frame_i = [], 0
    for _ in range(orig_total):
        frame_i += 1
        if frame_i == 1 or frame_i % frame_step == 0 or frame_i == orig_total:
            kept.append(frame_i - 1)
        if len(kept) == nb_frames:
            break
    return kept


@pytest.mark.parametrize(
    ("total", "nb", "expected"),
    [
        (48, 5, [0, 11, 23, 35, 47]),
        (30, 6, [0, 5, 11, 17, 23, 29]),
        (31, 6, [0, 5, 11, 17, 23, 29]),  # 31 -> 32, step 6: stops before the last frame
        (47, 5, [0, 11, 23, 35, 46]),  # the last frame is taken by "position == total"
        (10, 16, list(range(10))),  # too short: fewer than asked, the original gives up
    ],
)
def test_selected_indices_worked_examples(total, nb, expected):
    assert kvg.kvg_selected_indices(total, nb) == expected
    assert original_positions(total, nb) == expected


@pytest.mark.parametrize("total", range(20, 160, 7))
@pytest.mark.parametrize("nb", [2, 5, 8, 16])
def test_selected_indices_match_reference(total, nb):
    assert kvg.kvg_selected_indices(total, nb) == original_positions(total, nb)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("kvg")
    return {
        n: make_video(root / f"clip_{n}.avi", n, width=96, height=64, codec="mpeg4", gop=12)
        for n in (31, 48, 75)
    } | {"h264": make_video(root / "b.mp4", 61, width=96, height=64, bframes=2)}


@pytest.mark.parametrize("nb", [3, 5, 8])
@pytest.mark.parametrize("key", [31, 48, 75, "h264"])
def test_read_clip_returns_the_original_frames(clips, key, nb):
    path = str(clips[key])
    total = int(cv2.VideoCapture(path).get(cv2.CAP_PROP_FRAME_COUNT))
    stats = kvg._ReadStats()
    x = kvg.read_clip(path, nb, (40, 30), stats=stats)
    assert x.dtype == np.float32 and x.shape == (nb, 30, 40, 3)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert frame_indices(x) == original_positions(total, nb)
    # it reads sequentially from frame 0 up to the last frame it keeps
    assert stats.frames_read == original_positions(total, nb)[-1] + 1


def test_read_clip_colour_and_gray(clips):
    path = str(clips[48])
    rgb = kvg.read_clip(path, 5, (96, 64), rescale=1.0)
    # the picture's bottom-left pixel is the gradient start: red 40, blue 200 (RGB order)
    r, _, b = rgb[0, -1, 2]
    assert r < b
    gray = kvg.read_clip(path, 5, (48, 32), nb_channel=1)
    assert gray.shape == (5, 32, 48, 1)
    assert frame_indices(gray) == [0, 11, 23, 35, 47]


def test_without_headers_same_frames(clips):
    path = str(clips[75])
    assert frame_indices(kvg.read_clip(path, 6, (32, 32), use_headers=False)) == (
        original_positions(75, 6)
    )


def test_too_short_video_is_dropped(tmp_path, caplog):
    short = make_video(tmp_path / "short.avi", 10, codec="mpeg4")
    stats = kvg._ReadStats()
    assert kvg.read_clip(str(short), 16, (32, 32), stats=stats) is None
    # a read trusting the header, then a full recount and a second read, as the original
    assert stats.frames_read == 30
    assert "short.avi" in caplog.text


def test_generator_batches(dataset_dir):
    pattern = str(dataset_dir / "{classname}" / "*.avi")
    gen = kvg.KvgVideoFrameGenerator(
        glob_pattern=pattern, nb_frames=5, target_shape=(32, 24), batch_size=4, shuffle=False
    )
    assert gen.classes == ["down", "left", "right"]
    assert gen.files_count == 18 and gen.classes_count == 3
    assert len(gen) == 4  # floor(18 / 4): the last partial batch is dropped, as the original
    for i in range(len(gen)):
        x, y = gen[i]
        assert x.shape == (4, 5, 24, 32, 3) and x.dtype == np.float32
        assert y.shape == (4, 3)
        files = [gen.files[k] for k in gen.indexes[i * 4 : (i + 1) * 4]]
        for clip, label, path in zip(x, y, files, strict=True):
            assert gen.classes[int(np.argmax(label))] in path
            total = int(cv2.VideoCapture(path).get(cv2.CAP_PROP_FRAME_COUNT))
            assert frame_indices(clip) == original_positions(total, 5)


def test_generator_short_video_shrinks_batch(tmp_path):
    for name, n in [("a", 40), ("a", 8), ("b", 40), ("b", 41)]:
        make_video(tmp_path / name / f"{name}_{n}.avi", n, codec="mpeg4")
    gen = kvg.KvgVideoFrameGenerator(
        glob_pattern=str(tmp_path / "{classname}" / "*.avi"),
        nb_frames=16,
        target_shape=(16, 16),
        batch_size=4,
    )
    x, y = gen[0]
    assert x.shape[0] == 3 and y.shape == (3, 2)  # the 8-frame video silently left out


def test_frame_cache_and_splits(dataset_dir):
    pattern = str(dataset_dir / "{classname}" / "*.avi")
    gen = kvg.KvgVideoFrameGenerator(
        glob_pattern=pattern,
        nb_frames=4,
        target_shape=(16, 16),
        batch_size=3,
        use_frame_cache=True,
        split_val=0.3,
        seed=3,
    )
    valid = gen.get_validation_generator()
    assert valid.files_count == 3 and gen.files_count == 15  # int(0.3 * 6) = 1 per class
    assert not set(valid.files) & set(gen.files)
    first = [gen[i][0] for i in range(len(gen))]
    read = gen.stats.frames_read
    assert gen.cache_nbytes == 15 * 4 * 16 * 16 * 3 * 4  # float32 frames, unbounded
    second = [gen[i][0] for i in range(len(gen))]
    assert gen.stats.frames_read == read  # second pass from memory
    assert [frame_index(c[0][0]) for c in first] == [frame_index(c[0][0]) for c in second]
    nocache = kvg.KvgVideoFrameGenerator(
        glob_pattern=pattern, nb_frames=4, target_shape=(16, 16), batch_size=3
    )
    nocache[0]
    assert nocache.cache_nbytes == 0


def test_same_seed_same_order(dataset_dir):
    pattern = str(dataset_dir / "{classname}" / "*.avi")

    def order(seed):
        g = kvg.KvgVideoFrameGenerator(
            glob_pattern=pattern, nb_frames=2, batch_size=2, seed=seed, split_val=0.5
        )
        return [g.files[i] for i in g.indexes]

    assert order(1) == order(1)
    assert order(1) != order(2)

"""The Keras generators: the seed's own tests, ported, and proof of which frames come back."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import fastvid  # noqa: E402
import fastvid._frames  # noqa: E402
from fastvid import (  # noqa: E402
    METHOD_ABS_DIFF,
    METHOD_DIFF_MASK,
    METHOD_FLOW_MASK,
    METHOD_OPTICAL_FLOW,
    AugmentParams,
    OpticalFlowGenerator,
    SlidingFrameGenerator,
    VideoError,
    VideoFrameGenerator,
    sampling,
)
from fastvid.synth import MOTIONS, frame_indices, make_video  # noqa: E402

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend

GENERATORS = [VideoFrameGenerator, SlidingFrameGenerator, OpticalFlowGenerator]


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory) -> str:
    """As the seed's tests: one video copied to A_i, B_i, C_i for i < 10 (30 files)."""
    root = tmp_path_factory.mktemp("seed_vids")
    src = make_video(root / "src.bin.avi", 40, codec="mpeg4")
    for i in range(10):
        for cls in "ABC":
            shutil.copy(src, root / f"{cls}_{i}.avi")
    src.unlink()
    return os.path.join(str(root), "{classname}_*.avi")


LENGTHS = {"down": (35, 23), "left": (26, 40), "right": (20, 31)}


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> tuple[str, dict[str, int]]:
    """6 videos of known lengths (25 fps); returns (glob pattern, {path: frames})."""
    root = tmp_path_factory.mktemp("known")
    lengths = {}
    for cls, ns in LENGTHS.items():
        for k, n in enumerate(ns):
            path = make_video(root / cls / f"{cls}_{k}.avi", n, codec="mpeg4", motion=MOTIONS[cls])
            lengths[str(path)] = n
    return str(root / "{classname}" / "*.avi"), lengths


def small(pattern, **kwargs):
    """Fast settings for tests where the size is not the point."""
    opts = dict(glob_pattern=pattern, target_shape=(24, 32), batch_size=4, prefetch=False)
    opts.update(kwargs)
    return opts


def epoch(gen):
    return [gen[i] for i in range(len(gen))]


# --------------------------------------------------------- the seed's tests, ported


def test_find_classes(seed_dir):
    g = VideoFrameGenerator(glob_pattern=seed_dir)
    assert g.classes == ["A", "B", "C"] and g.classes_count == 3
    assert g.files_count == 30 and len(g.files) == 30


def test_iterator(seed_dir):
    g = VideoFrameGenerator(batch_size=4, nb_frames=6, target_shape=(64, 64), glob_pattern=seed_dir)
    x, y = next(g)
    assert x.shape == (4, 6, 64, 64, 3) and x.dtype == np.float32
    assert y.shape == (4, 3) and y.dtype == np.float32
    assert (y.sum(axis=1) == 1).all() and 0.0 <= x.min() and x.max() <= 1.0


def test_sliding_init(seed_dir):
    tr = keras.layers.RandomRotation(10 / 360)
    g = SlidingFrameGenerator(glob_pattern=seed_dir, transformation=tr, target_shape=(48, 48))
    assert g.classes == ["A", "B", "C"] and g.files_count == 30
    seq, labels = next(g)
    assert seq.shape == (16, 5, 48, 48, 3) and labels.shape == (16, 3)


@pytest.mark.parametrize(
    "method, shape",
    [
        (METHOD_ABS_DIFF, (224, 224)),  # the seed's exact shape, once (flow is slow there)
        (METHOD_OPTICAL_FLOW, (48, 48)),
        (METHOD_FLOW_MASK, (48, 48)),
        (METHOD_DIFF_MASK, (48, 48)),
    ],
)
def test_flow_methods_with_transformation(seed_dir, method, shape):
    tr = keras.layers.RandomRotation(10 / 360)
    gen = OpticalFlowGenerator(
        method=method, glob_pattern=seed_dir, transformation=tr, target_shape=shape, prefetch=False
    )
    assert len(gen.classes) == 3 and gen.files_count == 30
    seq, labels = next(gen)
    assert seq.shape == (16, 5, *shape, 3) and seq.dtype == np.float32
    assert labels.shape == (16, 3)
    assert np.isfinite(seq).all() and seq.max() > 0


@pytest.mark.parametrize("kind", GENERATORS)
def test_split(seed_dir, kind):
    extra = {"sequence_time": 0.5} if kind is SlidingFrameGenerator else {}
    gen = kind(
        glob_pattern=seed_dir,
        split_test=0.2,
        split_val=0.3,
        target_shape=(24, 24),
        seed=1,
        transformation=keras.layers.RandomFlip("horizontal"),
        **extra,
    )
    valid = gen.get_validation_generator()
    test = gen.get_test_generator()
    assert (gen.files_count, valid.files_count, test.files_count) == (18, 9, 3)
    assert not set(gen.files) & set(valid.files) and not set(valid.files) & set(test.files)
    assert type(valid) is kind and valid.transformation is None and valid.kind == "validation"
    assert valid.nb_frames == gen.nb_frames and valid.target_shape == gen.target_shape
    if kind is SlidingFrameGenerator:
        assert valid.sequence_time == 0.5
    if kind is OpticalFlowGenerator:
        assert valid.method == gen.method
    x, y = valid[0]
    assert x.shape[1:] == (5, 24, 24, 3)


def test_split_is_reproducible_and_old_name(seed_dir):
    a = VideoFrameGenerator(glob_pattern=seed_dir, split_val=0.3, seed=4)
    b = VideoFrameGenerator(glob_pattern=seed_dir, split=0.3, seed=4)
    assert a.get_validation_generator().files == b.get_validation_generator().files
    with pytest.raises(ValueError, match="split"):
        VideoFrameGenerator(glob_pattern=seed_dir, split=0.3, split_val=0.2)
    with pytest.raises(ValueError, match="split_test"):
        a.get_test_generator()


def test_split_reported_once(seed_dir, caplog):
    with caplog.at_level(logging.INFO, logger="fastvid"):
        gen = VideoFrameGenerator(glob_pattern=seed_dir, split_val=0.3, split_test=0.2)
        gen.get_validation_generator()
        gen.get_test_generator()
    reports = [r for r in caplog.records if "train 18, validation 9, test 3" in r.getMessage()]
    assert len(reports) == 1


# ------------------------------------------------------------ which frames come back


def test_uniform_frames_and_labels(known):
    pattern, lengths = known
    g = VideoFrameGenerator(**small(pattern, nb_frames=5, batch_size=6, shuffle=False))
    x, y = g[0]
    assert x.shape == (6, 5, 24, 32, 3)
    for b, path in enumerate(g.files):
        assert frame_indices(x[b]) == sampling.uniform_indices(lengths[path], 5)
        assert g.classes[int(y[b].argmax())] == Path(path).parent.name
        assert g.sample_indices(b) == (path, sampling.uniform_indices(lengths[path], 5))


def test_gray(known):
    pattern, lengths = known
    g = VideoFrameGenerator(**small(pattern, nb_channel=1, shuffle=False, nb_frames=3))
    x, _ = g[0]
    assert x.shape == (4, 3, 24, 32, 1)
    assert frame_indices(x[0]) == sampling.uniform_indices(lengths[g.files[0]], 3)


def test_optical_flow_decodes_one_frame_more(known):
    pattern, lengths = known
    seen = []

    def spy(frames):
        seen.append(frame_indices(frames))
        return frames

    g = OpticalFlowGenerator(
        **small(
            pattern,
            nb_frames=4,
            shuffle=False,
            batch_size=6,
            method=METHOD_ABS_DIFF,
            transformation=spy,
        )
    )
    x, _ = g[0]
    assert x.shape == (6, 4, 24, 32, 3)
    assert seen == [sampling.uniform_indices(lengths[p], 5) for p in g.files]
    assert x.max() > 0  # the square moved


def test_sliding_windows_differ(known):
    pattern, lengths = known
    g = SlidingFrameGenerator(**small(pattern, nb_frames=4, shuffle=False, batch_size=64))
    n = {p: lengths[p] for p in g.files}
    spans = {p: sampling.window_span(4, n[p]) for p in g.files}
    assert g.samples_count == sum(sampling.window_count(n[p], spans[p]) for p in g.files)
    x, y = g[0]
    got = [frame_indices(seq) for seq in x]
    # the first video's windows, in order, each one frame later than the previous
    first = g.files[0]
    expected = sampling.sliding_windows(n[first], 4, spans[first])
    assert got[: len(expected)] == expected
    assert len({tuple(w) for w in expected}) == len(expected) > 1
    for b in range(len(got)):
        path, indices = g.sample_indices(b)
        assert got[b] == indices
        assert g.classes[int(y[b].argmax())] == Path(path).parent.name


def test_sequence_time_sets_the_span(known):
    pattern, lengths = known
    one = SlidingFrameGenerator(**small(pattern, nb_frames=5, sequence_time=0.8, shuffle=False))
    half = SlidingFrameGenerator(**small(pattern, nb_frames=5, sequence_time=0.4, shuffle=False))
    for gen, span in ((one, 20), (half, 10)):  # 0.8 s and 0.4 s at 25 fps
        assert gen.samples_count == sum(sampling.window_count(lengths[p], span) for p in gen.files)
        x, _ = gen[0]
        for seq in x:
            frames = frame_indices(seq)
            assert frames[-1] - frames[0] == span - 1
            assert frames == sampling.window_indices(frames[0], span, 5)
    assert one.samples_count < half.samples_count


def test_last_batch_holds_the_rest(known):
    pattern, _ = known
    g = VideoFrameGenerator(**small(pattern, nb_frames=2, batch_size=4))
    assert len(g) == 2
    assert [len(b[1]) for b in epoch(g)] == [4, 2]
    assert g[-1][0].shape[0] == 2
    with pytest.raises(IndexError):
        g[2]


def test_iteration_and_next(known):
    pattern, _ = known
    g = VideoFrameGenerator(**small(pattern, nb_frames=2, batch_size=4, seed=0))
    batches = list(g)  # one epoch
    assert len(batches) == len(g) == 2
    assert g.epoch == 0
    next(g)
    next(g)
    assert g.epoch == 1  # next() wraps around and calls on_epoch_end
    x, _ = g.next()
    assert x.shape[0] == 4


# ------------------------------------------------------------------------ policies


@pytest.fixture(scope="module")
def with_short(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("short")
    for cls in ("left", "right"):
        for k in range(3):
            make_video(root / cls / f"{cls}_{k}.avi", 12, codec="mpeg4", motion=MOTIONS[cls])
    make_video(root / "left" / "short_left.avi", 3, codec="mpeg4")
    make_video(root / "right" / "short_right.avi", 2, codec="mpeg4")
    return str(root / "{classname}" / "*.avi")


def test_short_videos_skipped_with_one_warning(with_short, caplog):
    with caplog.at_level(logging.WARNING, logger="fastvid"):
        g = VideoFrameGenerator(**small(with_short, nb_frames=5, batch_size=3))
    warnings = [r for r in caplog.records if "shorter" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 8" in warnings[0].getMessage()
    assert g.files_count == 6 and not any("short" in Path(p).name for p in g.files)
    assert set(g.skipped) == {p for p in g.skipped if "short" in p} and len(g.skipped) == 2
    assert [len(b[1]) for b in epoch(g)] == [3, 3]


@pytest.mark.parametrize(
    "policy, left, right",
    [("repeat_last", [0, 1, 2, 2, 2], [0, 1, 1, 1, 1]), ("loop", [0, 1, 2, 0, 1], [0, 1, 0, 1, 0])],
)
def test_short_videos_padded(with_short, policy, left, right):
    g = VideoFrameGenerator(
        **small(with_short, nb_frames=5, short_video=policy, shuffle=False, batch_size=8)
    )
    assert g.files_count == 8
    x, _ = g[0]
    got = {Path(p).name: frame_indices(x[b]) for b, p in enumerate(g.files)}
    assert got["short_left.avi"] == left and got["short_right.avi"] == right
    assert got["left_0.avi"] == sampling.uniform_indices(12, 5)


def test_short_videos_padded_in_sliding_windows(with_short):
    g = SlidingFrameGenerator(
        **small(
            with_short,
            nb_frames=4,
            short_video="loop",
            sequence_time=0.4,
            shuffle=False,
            batch_size=64,
        )
    )
    short = [
        b for b in range(g.samples_count) if Path(g.sample_indices(b)[0]).name == "short_left.avi"
    ]
    assert len(short) == 1, "a short video padded by 'loop' gives exactly one window"
    indices = g.sample_indices(short[0])[1]
    assert indices == [i % 3 for i in sampling.window_indices(0, 10, 4)]
    assert frame_indices(g[0][0][short[0]]) == indices


def test_short_video_raise(with_short):
    with pytest.raises(VideoError, match="short_"):
        VideoFrameGenerator(**small(with_short, nb_frames=5, short_video="raise"))
    with pytest.raises(ValueError, match="short_video"):
        VideoFrameGenerator(**small(with_short, short_video="pad"))


@pytest.fixture(scope="module")
def with_corrupt(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("corrupt")
    good = []
    for cls in ("left", "right"):
        for k in range(3):
            good.append(
                make_video(root / cls / f"{cls}_{k}.avi", 20, codec="mpeg4", motion=MOTIONS[cls])
            )
    (root / "left" / "junk.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "right" / "empty.avi").write_bytes(b"")
    data = good[0].read_bytes()
    (root / "right" / "truncated.avi").write_bytes(data[: len(data) * 2 // 5])
    return str(root / "{classname}" / "*.avi")


def test_unreadable_files_skipped_and_counted(with_corrupt, caplog):
    with caplog.at_level(logging.WARNING, logger="fastvid"):
        g = VideoFrameGenerator(**small(with_corrupt, nb_frames=4, batch_size=3))
    warnings = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1 and "3 of 9" in warnings[0]
    assert all(name in warnings[0] for name in ("junk.avi", "empty.avi", "truncated.avi"))
    assert g.files_count == 6
    assert {Path(p).name for p in g.skipped} == {"junk.avi", "empty.avi", "truncated.avi"}
    assert [len(b[1]) for b in epoch(g)] == [3, 3]


def test_unreadable_file_raise_names_it(with_corrupt):
    with pytest.raises(VideoError) as info:
        VideoFrameGenerator(**small(with_corrupt, nb_frames=4, short_video="raise"))
    assert Path(info.value.path).name in ("junk.avi", "empty.avi", "truncated.avi")
    assert info.value.reason


def test_file_failing_mid_epoch_never_shrinks_a_batch(known, monkeypatch, caplog):
    pattern, _ = known
    g = VideoFrameGenerator(**small(pattern, nb_frames=3, batch_size=3, shuffle=False))
    victim = g.files[1]
    real = fastvid._frames.read_clips

    def flaky(requests, **kwargs):
        requests = list(requests)
        for path, *_ in requests:
            if path == victim:
                raise VideoError(path, "truncated (simulated)")
        return real(requests, **kwargs)

    monkeypatch.setattr(fastvid._frames, "read_clips", flaky)
    with caplog.at_level(logging.WARNING, logger="fastvid"):
        batches = epoch(g)
    assert [len(y) for _, y in batches] == [3, 3]
    assert g.skipped[victim] == "truncated (simulated)"
    assert any(victim in r.getMessage() for r in caplog.records)
    x, _ = batches[0]
    assert frame_indices(x[1]) == frame_indices(x[2])  # its place taken by the next sample

    strict = VideoFrameGenerator(
        **small(pattern, nb_frames=3, batch_size=3, shuffle=False, short_video="raise")
    )
    with pytest.raises(VideoError, match="simulated"):
        strict[0]


# -------------------------------------------------------------------- determinism


def test_same_seed_same_batches_new_epoch_new_draws(known):
    pattern, _ = known
    opts = small(
        pattern,
        nb_frames=3,
        seed=21,
        transformation=keras.layers.RandomRotation(0.1),
        augment=AugmentParams(flip=0.5, zoom=0.1),
    )
    a, b = VideoFrameGenerator(**opts), VideoFrameGenerator(**opts)
    first_a, first_b = epoch(a), epoch(b)
    for (xa, ya), (xb, yb) in zip(first_a, first_b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    a.on_epoch_end()
    b.on_epoch_end()
    second_a = epoch(a)
    for (xa, _), (xb, _) in zip(second_a, epoch(b), strict=True):
        np.testing.assert_array_equal(xa, xb)
    assert not all(np.allclose(x1, x2) for (x1, _), (x2, _) in zip(first_a, second_a, strict=True))
    c = VideoFrameGenerator(**{**opts, "seed": 22})
    assert not np.array_equal(a.indexes, c.indexes) or not np.allclose(c[0][0], first_a[0][0])


def test_shuffle_changes_order_every_epoch(known):
    pattern, _ = known
    g = SlidingFrameGenerator(**small(pattern, nb_frames=4, seed=3))
    orders = []
    for _ in range(3):
        orders.append(g.indexes.copy())
        g.on_epoch_end()
    assert sorted(orders[0]) == list(range(g.samples_count))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    unshuffled = SlidingFrameGenerator(**small(pattern, nb_frames=4, shuffle=False))
    assert list(unshuffled.indexes) == list(range(unshuffled.samples_count))


@pytest.mark.parametrize("cache", [False, True])
def test_augment_params_one_draw_per_sequence(known, cache):
    # an unflipped sequence equals the unaugmented one: with or without the cache, training
    # frames are resampled exactly as validation frames are
    pattern, _ = known
    opts = small(pattern, nb_frames=4, batch_size=6, shuffle=False, use_frame_cache=cache, seed=2)
    plain = VideoFrameGenerator(**opts)[0][0]
    gen = VideoFrameGenerator(**opts, augment=AugmentParams(flip=0.5))
    mirrored = []
    for _ in range(4):  # a few epochs: 24 draws
        for seq, ref in zip(gen[0][0], plain, strict=True):
            if np.allclose(seq, ref, atol=1e-6):
                mirrored.append(False)
            else:
                np.testing.assert_allclose(seq, ref[:, :, ::-1], atol=1e-5)  # every frame
                mirrored.append(True)
        gen.on_epoch_end()
    assert 0 < sum(mirrored) < len(mirrored)


def test_prefetch_gives_the_same_batches(known):
    pattern, _ = known
    opts = small(pattern, nb_frames=3, batch_size=2, seed=8, augment=AugmentParams(rotation=10))
    ahead = VideoFrameGenerator(**{**opts, "prefetch": True})
    plain = VideoFrameGenerator(**opts)
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(epoch(ahead), epoch(plain), strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
        ahead.on_epoch_end()
        plain.on_epoch_end()


# ----------------------------------------------------------------------- plumbing


def test_awkward_paths_end_to_end(tmp_path):
    root = tmp_path / "vidéos (v1)+$ {x}"
    for cls in ("left", "right"):
        make_video(root / f"{cls} à" / "clip 1.avi", 10, codec="mpeg4")
    g = VideoFrameGenerator(
        **small(str(root / "{classname}" / "*.avi"), nb_frames=2, shuffle=False)
    )
    assert g.classes == ["left à", "right à"]
    _, y = g[0]
    assert y.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert g._get_classname(g.files[1]) == "right à"


def test_argument_errors(known, tmp_path):
    pattern, _ = known
    with pytest.raises(ValueError, match="nb_channel"):
        VideoFrameGenerator(**small(pattern, nb_channel=2))
    with pytest.raises(TypeError, match="bogus"):
        VideoFrameGenerator(**small(pattern, bogus=1))
    with pytest.raises(ValueError, match="no video file"):
        VideoFrameGenerator(glob_pattern=str(tmp_path / "{classname}" / "*.avi"))
    with pytest.raises(ValueError, match="seek_mode"):
        VideoFrameGenerator(**small(pattern, seek_mode="fast"))


def test_transformation_as_augment_params(known):
    pattern, _ = known
    g = VideoFrameGenerator(**small(pattern, transformation=AugmentParams(flip=1.0)))
    assert g.augment == AugmentParams(flip=1.0) and g.transformation is None


def test_keyframe_mode_and_classes_filter(known):
    pattern, _ = known
    g = VideoFrameGenerator(
        **small(pattern, classes=["right", "left"], seek_mode="keyframe", nb_frames=3)
    )
    assert g.classes == ["left", "right"] and g.files_count == 4
    x, y = g[0]
    assert x.shape == (4, 3, 24, 32, 3) and y.shape == (4, 2)


def test_fit_with_keras_workers(known):
    pattern, _ = known
    train = VideoFrameGenerator(
        **small(pattern, nb_frames=3, target_shape=(16, 16), workers=2, split_val=0.5, seed=0)
    )
    valid = train.get_validation_generator()
    assert valid.workers == 2
    model = keras.Sequential(
        [
            keras.Input((3, 16, 16, 3)),
            keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D()),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    history = model.fit(train, validation_data=valid, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and train.epoch >= 2


@pytest.mark.cuda
def test_cuda_batches_stay_on_the_device(known):
    pytest.importorskip("cupy")
    from fastvid.ops import resolve_device

    try:
        resolve_device("cuda")
    except Exception as err:  # noqa: BLE001
        pytest.skip(str(err))
    pattern, _ = known
    g = VideoFrameGenerator(**small(pattern, device="cuda", nb_frames=3, shuffle=False))
    x, _ = g[0]
    assert not isinstance(x, np.ndarray)
    cpu = VideoFrameGenerator(**small(pattern, device="cpu", nb_frames=3, shuffle=False))[0][0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(x), cpu, atol=1.5 / 255)


def test_removing_files(known):
    pattern, _ = known
    g = SlidingFrameGenerator(**small(pattern, nb_frames=4, seed=1))
    before = g.samples_count
    keep = [f for f in g.files if "left" not in f]
    g.files = keep
    assert g.files == keep and g.files_count == 4 and g.samples_count < before
    assert sorted(g.indexes) == list(range(g.samples_count))
    assert all("left" not in g.sample_indices(int(s))[0] for s in g.indexes)
    with pytest.raises(ValueError, match="removed"):
        g.files = [*keep, "/elsewhere/new.avi"]


def test_pickles_for_worker_processes(known):
    import pickle

    pattern, _ = known
    g = VideoFrameGenerator(
        **small(
            pattern, nb_frames=3, seed=6, use_frame_cache=True, augment=AugmentParams(rotation=5)
        )
    )
    x, y = g[1]
    copy = pickle.loads(pickle.dumps(g))
    assert len(copy.cache) == 0  # a worker starts with an empty cache
    x2, y2 = copy[1]
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)

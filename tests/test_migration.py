"""Coming from keras-video-generators or a hand-written keras.utils.Sequence (seed 004):
their module paths, arguments and habits, and which frames and labels come back."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import banded_video  # noqa: E402

import fastvid  # noqa: E402
from fastvid import (  # noqa: E402
    METHOD_ABS_DIFF,
    METHOD_DIFF_MASK,
    METHOD_FLOW_MASK,
    METHOD_OPTICAL_FLOW,
    OpticalFlowGenerator,
    SlidingFrameGenerator,
    VideoFrameGenerator,
    sampling,
)
from fastvid.synth import MOTIONS, frame_indices, make_video  # noqa: E402

pytestmark = pytest.mark.keras

LENGTHS = {"down": (35, 23), "left": (26, 40), "right": (20, 31)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A folder per class, 6 videos of known lengths; (root, {path: frames})."""
    root = tmp_path_factory.mktemp("migration")
    lengths = {}
    for cls, ns in LENGTHS.items():
        for k, n in enumerate(ns):
            path = make_video(
                root / "videos" / cls / f"{cls}_{k}.avi", n, codec="mpeg4", motion=MOTIONS[cls]
            )
            lengths[str(path)] = n
    return root, lengths


def small(**kwargs):
    opts = dict(target_shape=(24, 32), batch_size=6, prefetch=False, device="cpu")
    opts.update(kwargs)
    return opts


def test_keras_video_generators_module_paths():
    from fastvid.flow import METHOD_OPTICAL_FLOW as flow_method
    from fastvid.flow import OpticalFlowGenerator as Flow
    from fastvid.generator import VideoFrameGenerator as Frames
    from fastvid.sliding import SlidingFrameGenerator as Sliding

    assert (Frames, Sliding, Flow) == (
        VideoFrameGenerator,
        SlidingFrameGenerator,
        OpticalFlowGenerator,
    )
    assert flow_method == METHOD_OPTICAL_FLOW == 1


@pytest.mark.parametrize("labels_as", ["names", "ints"])
def test_paths_and_labels_instead_of_a_glob(videos, labels_as):
    _, lengths = videos
    listed = sorted(lengths)[::-1]
    listed_names = [Path(p).parent.name for p in listed]
    classes = sorted(set(listed_names))
    labels = listed_names if labels_as == "names" else [classes.index(n) for n in listed_names]
    g = VideoFrameGenerator(
        paths=listed, labels=labels, nb_frames=4, shuffle=False, label_mode="int", **small()
    )
    # class by class (as the generators split), sorted within a class, whatever the list order
    paths = sorted(listed, key=lambda p: (classes.index(Path(p).parent.name), p))
    names = [Path(p).parent.name for p in paths]
    assert g.files == paths
    x, y = g[0]
    assert y.dtype == np.int32 and x.shape == (6, 4, 24, 32, 3)
    assert g.classes == (classes if labels_as == "names" else ["0", "1", "2"])
    for b, path in enumerate(paths):
        assert frame_indices(x[b]) == sampling.uniform_indices(lengths[path], 4)
        assert int(y[b]) == classes.index(names[b])


def test_paths_as_a_csv_or_a_folder(videos, tmp_path):
    root, lengths = videos
    paths = sorted(lengths)
    csv = tmp_path / "train.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{Path(p).parent.name}\n" for p in paths))
    from_csv = VideoFrameGenerator(paths=str(csv), nb_frames=3, shuffle=False, **small())
    from_folder = VideoFrameGenerator(paths=root / "videos", nb_frames=3, shuffle=False, **small())
    for g in (from_csv, from_folder):
        assert g.classes == ["down", "left", "right"] and sorted(g.files) == paths
        x, y = g[0]
        assert y.shape == (6, 3) and y.sum(axis=1).tolist() == [1.0] * 6
        for b, path in enumerate(g.files):
            assert g.classes[int(y[b].argmax())] == Path(path).parent.name
    with pytest.raises(ValueError, match="labels go with paths"):
        VideoFrameGenerator(
            glob_pattern=str(root / "videos/{classname}/*.avi"), labels=["down"], **small()
        )


def test_label_mode_none_gives_frames_alone(videos):
    root, _ = videos
    g = VideoFrameGenerator(paths=root / "videos", label_mode=None, nb_frames=2, **small())
    batch = g[0]
    assert isinstance(batch, np.ndarray) and batch.shape == (6, 2, 24, 32, 3)


@pytest.mark.parametrize("cls", [VideoFrameGenerator, SlidingFrameGenerator, OpticalFlowGenerator])
def test_random_clip_sampler_on_every_generator(videos, cls):
    root, lengths = videos
    opts = small(
        glob_pattern=str(root / "videos/{classname}/*.avi"),
        nb_frames=3,
        sampler="random_clip",
        frame_step=2,
        seed=4,
        shuffle=False,
    )
    seen: list[list[int]] = []

    def spy(frames):  # the frames decoded for each sample, before any motion
        seen.append(frame_indices(frames))
        return frames

    g = cls(**opts, transformation=spy)
    decoded = 4 if cls is OpticalFlowGenerator else 3
    assert g.samples_count == 6  # one clip per video
    epochs = []
    for _ in range(3):
        seen.clear()
        g[0]
        epochs.append(list(seen))
        g.on_epoch_end()
    for clips in epochs:
        for path, got in zip(g.files, clips, strict=True):
            start = got[0]
            assert got == [start + 2 * k for k in range(decoded)]
            assert got[-1] < lengths[path]
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # drawn anew every epoch
    again = cls(**opts, transformation=spy)
    seen.clear()
    again[0]
    assert seen == epochs[0]  # the same seed draws the same clips


def test_sampler_object_and_unknown_options(videos):
    root, _ = videos
    pattern = str(root / "videos/{classname}/*.avi")
    g = VideoFrameGenerator(
        glob_pattern=pattern, sampler=sampling.RandomClipSampler(2, 3), shuffle=False, **small()
    )
    path, indices = g.sample_indices(0)
    assert indices[1] - indices[0] == 3
    with pytest.raises(TypeError, match="frame_step"):
        VideoFrameGenerator(glob_pattern=pattern, frame_step=2, **small())  # uniform has none


def test_without_seed_shuffling_follows_keras_set_random_seed(videos):
    root, _ = videos
    opts = small(glob_pattern=str(root / "videos/{classname}/*.avi"), nb_frames=3)

    def orders(seed):
        keras.utils.set_random_seed(seed)
        g = SlidingFrameGenerator(**opts)
        out = []
        for _ in range(3):
            out.append(g.indexes.copy())
            g.on_epoch_end()
        return np.concatenate(out)

    np.testing.assert_array_equal(orders(7), orders(7))
    assert not np.array_equal(orders(7), orders(8))
    np.random.seed(7)  # NumPy's global seed is what it reads
    a = SlidingFrameGenerator(**opts).indexes
    np.random.seed(7)
    np.testing.assert_array_equal(a, SlidingFrameGenerator(**opts).indexes)


def test_epoch_setter_resumes_the_same_order(videos):
    root, _ = videos
    opts = small(
        glob_pattern=str(root / "videos/{classname}/*.avi"),
        nb_frames=3,
        seed=9,
        batch_size=4,
        augment=fastvid.AugmentParams(flip=0.5, rotation=5),
    )
    run = SlidingFrameGenerator(**opts)
    for _ in range(2):
        run.on_epoch_end()
    resumed = SlidingFrameGenerator(**opts)
    resumed.epoch = 2  # before fit(initial_epoch=2)
    assert resumed.epoch == run.epoch == 2
    np.testing.assert_array_equal(resumed.indexes, run.indexes)
    np.testing.assert_array_equal(resumed[1][0], run[1][0])
    with pytest.raises(ValueError, match="epoch"):
        resumed.epoch = -1


def test_crop_and_pad_to_aspect_ratio(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        banded_video(tmp_path / cls / "bands.mp4")
    opts = small(
        paths=tmp_path,
        nb_frames=2,
        target_shape=(32, 32),
        rescale=1.0,
        shuffle=False,
        label_mode=None,
    )
    stretched = VideoFrameGenerator(**opts)[0][0, 0]
    cropped = VideoFrameGenerator(**opts, crop_to_aspect_ratio=True)[0][0, 0]
    padded = VideoFrameGenerator(**opts, pad_to_aspect_ratio=True)[0][0, 0]
    assert abs(stretched[:, 0, 0] - stretched[:, 0, 2]).min() > 150  # red band at the left
    assert np.abs(cropped - 128).max() < 40  # the centred square: gray only
    assert padded[:8].max() == 0 and padded[24:].max() == 0  # 32x16 picture, zeros around
    assert abs(padded[12:20, 0, 0] - padded[12:20, 0, 2]).min() > 150
    with pytest.raises(ValueError, match="cannot both"):
        VideoFrameGenerator(**opts, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)


@pytest.mark.parametrize(
    "method", [METHOD_ABS_DIFF, METHOD_DIFF_MASK, METHOD_OPTICAL_FLOW, METHOD_FLOW_MASK]
)
def test_flow_methods_on_two_images_match_the_batches(videos, method):
    root, _ = videos
    common = small(glob_pattern=str(root / "videos/{classname}/*.avi"), shuffle=False)
    flow = OpticalFlowGenerator(**common, nb_frames=3, method=method, winsize=9)
    frames = VideoFrameGenerator(**common, nb_frames=4)  # the frames the flow is made of
    x_flow, _ = flow[0]
    x_frames, _ = frames[0]
    name = {
        METHOD_ABS_DIFF: "absdiff",
        METHOD_DIFF_MASK: "diff_mask",
        METHOD_OPTICAL_FLOW: "make_optical_flow",
        METHOD_FLOW_MASK: "flow_mask",
    }[method]
    for k in range(3):
        one = getattr(flow, name)([x_frames[0, k], x_frames[0, k + 1]])
        assert one.shape == (24, 32, 3)
        np.testing.assert_allclose(one, x_flow[0, k], atol=1e-5)
    assert np.abs(x_flow[0]).max() > 0.01  # the square moved
    same = flow.absdiff([x_frames[0, 0], x_frames[0, 0]])
    assert same.max() == 0
    u8 = (x_frames[0, :2] * 255).round().astype(np.uint8)
    assert flow.absdiff(list(u8)).max() > 1  # uint8 images: results in 0..255
    with pytest.raises(ValueError, match="two images"):
        flow.absdiff([x_frames[0, 0]])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside Keras's legacy module
def test_tutorial_script_ported_by_renaming_the_package(monkeypatch, tmp_path):
    """Seed 003 (keras-video-generators' tutorial), imports renamed keras_video -> fastvid."""
    for cls in ("down", "left", "right"):  # 4 per class: int(.33 * 4) = 1 for validation
        for k in range(4):
            make_video(
                tmp_path / "videos" / cls / f"{k}.avi", 12, codec="mpeg4", motion=MOTIONS[cls]
            )
    monkeypatch.chdir(tmp_path)
    import glob

    from fastvid import VideoFrameGenerator as Vfg

    classes = [i.split(os.path.sep)[1] for i in glob.glob("videos/*")]
    classes.sort()
    SIZE, CHANNELS, NBFRAME, BS = (32, 32), 3, 5, 2
    glob_pattern = "videos/{classname}/*.avi"
    # Keras 3 dropped keras.preprocessing.image.ImageDataGenerator; TensorFlow keeps one
    image = pytest.importorskip("tensorflow.keras.preprocessing.image")
    data_aug = image.ImageDataGenerator(
        zoom_range=0.1,
        horizontal_flip=True,
        rotation_range=8,
        width_shift_range=0.2,
        height_shift_range=0.2,
    )
    train = Vfg(
        classes=classes,
        glob_pattern=glob_pattern,
        nb_frames=NBFRAME,
        split=0.33,
        shuffle=True,
        batch_size=BS,
        target_shape=SIZE,
        nb_channel=CHANNELS,
        transformation=data_aug,
        use_frame_cache=True,
    )
    valid = train.get_validation_generator()
    assert (train.files_count, valid.files_count) == (9, 3)

    import fastvid.utils

    grid = fastvid.utils.show_sample(train)
    assert grid.ndim == 3
    x, y = train[0]
    assert x.shape == (BS, NBFRAME, *SIZE, CHANNELS) and y.shape == (BS, len(classes))


def test_custom_sequence_usage_ported(videos):
    """Seed 004's VideoDataGenerator(video_paths, labels, batch_size, sequence_length):
    ``sequence_length`` consecutive frames from a random start, int labels, resized."""
    _, lengths = videos
    video_paths = sorted(lengths)
    labels = [0, 1, 0, 1, 0, 1]
    generator = VideoFrameGenerator(
        paths=video_paths,
        labels=labels,
        batch_size=2,
        nb_frames=10,
        sampler="random_clip",
        target_shape=(224, 224),
        label_mode="int",
        seed=1,
        shuffle=False,
        device="cpu",
    )
    x, y = generator[0]
    assert x.shape == (2, 10, 224, 224, 3)
    for b in range(2):
        assert y[b] == labels[video_paths.index(generator.files[b])]
        got = frame_indices(x[b])
        assert got == list(range(got[0], got[0] + 10))

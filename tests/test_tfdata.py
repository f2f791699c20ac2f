"""fastvid.video_dataset_from_directory: Keras's image_dataset_from_directory, for video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from fastvid import sampling, video_dataset_from_directory  # noqa: E402
from fastvid.synth import MOTIONS, frame_indices, make_video  # noqa: E402

pytestmark = pytest.mark.keras

LENGTHS = {"down": (30, 24, 27), "left": (26, 40, 33), "right": (20, 31, 22)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("tfdata")
    lengths = {}
    for cls, ns in LENGTHS.items():
        for k, n in enumerate(ns):
            path = make_video(root / cls / f"{k}.avi", n, codec="mpeg4", motion=MOTIONS[cls])
            lengths[str(path)] = n
    return root, lengths


def small(**kw):
    return {"batch_size": 4, "num_frames": 4, "image_size": (24, 32), **kw}


def collect(ds):
    """Every (x, y) of one pass, as NumPy."""
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_frames_labels_and_attributes(folder):
    root, lengths = folder
    ds = video_dataset_from_directory(root, **small(shuffle=False))
    assert isinstance(ds, tf.data.Dataset)
    assert ds.class_names == ["down", "left", "right"]
    assert ds.file_paths == sorted(lengths) and len(ds) == 3  # 9 clips, batches of 4
    x, y = collect(ds)
    assert x.shape == (9, 4, 24, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 100 < x.max() <= 255  # Keras's image datasets: [0, 255], no rescaling
    for k, path in enumerate(ds.file_paths):
        assert frame_indices(x[k]) == sampling.uniform_indices(lengths[path], 4)
        assert ds.class_names[y[k]] == Path(path).parent.name


def test_every_epoch_a_new_order_same_seed_same_orders(folder):
    root, _ = folder
    ds = video_dataset_from_directory(root, **small(seed=5, label_mode=None, batch_size=None))
    runs = [[frame_indices(x.numpy()) for x in ds] for _ in range(3)]
    assert all(len(run) == 9 for run in runs)
    assert all(sorted(run) == sorted(runs[0]) for run in runs)  # each epoch: every clip once
    assert runs[0] != runs[1] or runs[1] != runs[2]
    again = video_dataset_from_directory(root, **small(seed=5, label_mode=None, batch_size=None))
    assert [[frame_indices(x.numpy()) for x in again] for _ in range(2)] == runs[:2]


def test_validation_split_like_keras(folder):
    root, lengths = folder
    train, val = video_dataset_from_directory(
        root, **small(validation_split=0.34, seed=3, subset="both")
    )
    assert len(val.file_paths) == int(0.34 * 9) == 3 and len(train.file_paths) == 6
    assert sorted(train.file_paths + val.file_paths) == sorted(lengths)
    only_val = video_dataset_from_directory(
        root, **small(validation_split=0.34, seed=3, subset="validation")
    )
    assert only_val.file_paths == val.file_paths
    others = [
        video_dataset_from_directory(
            root, **small(validation_split=0.34, seed=s, subset="validation")
        ).file_paths
        for s in (4, 5, 6)
    ]
    assert any(o != val.file_paths for o in others)  # the seed picks the split
    with pytest.raises(ValueError, match="subset"):
        video_dataset_from_directory(root, **small(validation_split=0.2))
    with pytest.raises(ValueError, match="validation_split"):
        video_dataset_from_directory(root, **small(subset="training"))


def test_label_modes_and_given_labels(folder):
    root, lengths = folder
    ds = video_dataset_from_directory(root, **small(label_mode="categorical", shuffle=False))
    _, y = collect(ds)
    assert y.shape == (9, 3) and y.dtype == np.float32
    assert y.argmax(axis=1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    two = video_dataset_from_directory(
        root, **small(label_mode="binary", shuffle=False, class_names=["left", "right"])
    )
    _, y = collect(two)
    assert two.class_names == ["left", "right"] and y.shape == (6, 1)
    assert y[:, 0].tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="binary"):
        video_dataset_from_directory(root, **small(label_mode="binary"))
    given = [k % 2 for k in range(9)]  # one int per video, sorted path order
    mine = video_dataset_from_directory(root, labels=given, **small(shuffle=False))
    _, y = collect(mine)
    assert y.tolist() == [given[sorted(lengths).index(p)] for p in mine.file_paths]
    with pytest.raises(ValueError, match="one label per video"):
        video_dataset_from_directory(root, labels=[0, 1], **small())
    bare = video_dataset_from_directory(root, labels=None, **small(shuffle=False))
    x = next(iter(bare))
    assert isinstance(x, tf.Tensor) and x.shape == (4, 4, 24, 32, 3)


def test_random_clips_and_options(folder):
    root, lengths = folder
    ds = video_dataset_from_directory(
        root,
        **small(
            sampler="random_clip",
            shuffle=False,
            sampler_options={"frame_step": 2},
            color_mode="grayscale",
        ),
    )
    first, _ = collect(ds)
    second, _ = collect(ds)
    assert first.shape == (9, 4, 24, 32, 1)
    starts = []
    for x in (first, second):
        for k, path in enumerate(ds.file_paths):
            got = frame_indices(np.repeat(x[k], 3, axis=-1))
            assert got == [got[0] + 2 * i for i in range(4)] and got[-1] < lengths[path]
            starts.append(got[0])
    assert starts[:9] != starts[9:]  # new clips every epoch
    with pytest.raises(ValueError, match="color_mode"):
        video_dataset_from_directory(root, color_mode="rgba")
    with pytest.raises(ValueError, match="not a folder"):
        video_dataset_from_directory(root / "nowhere")


def test_fit_on_this_backend(folder):
    root, _ = folder
    train, val = video_dataset_from_directory(
        root, **small(validation_split=0.34, seed=1, subset="both")
    )
    model = keras.Sequential(
        [
            keras.Input((4, 24, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D()),
            keras.layers.GRU(4),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()

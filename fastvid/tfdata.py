"""``video_dataset_from_directory``: Keras's ``image_dataset_from_directory``, for video.

A :class:`tf.data.Dataset` of ``(frames, labels)`` built on a
:class:`fastvid.ClipLoader`: a small generator names the batches of each epoch,
a parallel map decodes them (``tf.numpy_function`` around the loader, so
decoding runs in TensorFlow's threads, in order), and the result is prefetched.
Every iteration of the dataset (every epoch of ``model.fit``) is the next epoch:
a new sample order when ``shuffle``, new random clips with
``sampler="random_clip"``. ``model.fit`` takes it on every Keras backend.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from fastvid import _checks, dataset
from fastvid.loader import ClipLoader

LABEL_MODES = ("int", "categorical", "binary", None)
SUBSETS = ("training", "validation", "both")


def video_dataset_from_directory(
    directory: str | os.PathLike[str],
    labels: Literal["inferred"] | Sequence[int] | None = "inferred",
    label_mode: Literal["int", "categorical", "binary"] | None = "int",
    class_names: Sequence[str] | None = None,
    batch_size: int | None = 32,
    num_frames: int = 16,
    image_size: tuple[int, int] = (112, 112),
    shuffle: bool = True,
    seed: int | None = None,
    validation_split: float | None = None,
    subset: Literal["training", "validation", "both"] | None = None,
    sampler: str | Any = "uniform",
    *,
    color_mode: Literal["rgb", "grayscale"] = "rgb",
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    sampler_options: dict[str, Any] | None = None,
    seek_mode: Literal["exact", "keyframe"] = "exact",
    short_video: str = "skip",
    cache_bytes: int | None = None,
    verify: bool = False,
) -> Any:
    """A ``tf.data.Dataset`` of video clips from a folder, like Keras's
    ``image_dataset_from_directory``.

    ``directory/class_a/*.mp4, directory/class_b/*.mp4, ...`` gives
    ``(frames, labels)`` batches: ``frames`` float32 ``(batch, num_frames, height,
    width, channels)`` in [0, 255] (as Keras's image datasets; add a
    ``Rescaling(1/255)`` layer or divide), ``labels`` as ``label_mode`` says.

    Args:
        directory: the folder; with ``labels="inferred"`` each sub-folder holding
            videos is a class (videos found at any depth below it).
        labels: ``"inferred"`` (from the sub-folders), None (no labels: the dataset
            yields frames alone), or one int per video, for the videos of
            ``directory`` at any depth in sorted path order.
        label_mode: ``"int"`` (int32 class indices), ``"categorical"`` (float32
            one-hot), ``"binary"`` (float32 0/1 of shape ``(batch, 1)``, two classes
            only) or None (no labels).
        class_names: with ``labels="inferred"``: the sub-folders to use, in the order
            of their class indices (default: all, sorted).
        batch_size: clips per batch (the last batch holds the rest); None: a dataset
            of single clips ``(num_frames, height, width, channels)``.
        num_frames: frames per clip.
        image_size: ``(height, width)`` the frames are resized to.
        shuffle: a new order every epoch (from ``seed``); False: sorted file order.
        seed: seeds the order, the validation split and random clips; None draws one
            from NumPy's global generator (``keras.utils.set_random_seed`` sets it).
        validation_split: the fraction of the videos kept for validation (the last
            ``int(validation_split * n)`` of the videos shuffled by ``seed``, as Keras
            does); needs ``subset``.
        subset: ``"training"``, ``"validation"`` or ``"both"`` (a pair of datasets).
        sampler: which frames make a clip: ``"uniform"`` (spread over the video),
            ``"sliding"`` (every window: many clips per video), ``"random_clip"``
            (consecutive frames from a random start, new every epoch) or a
            :class:`fastvid.sampling.Sampler`; ``sampler_options`` go to it
            (``frame_step``, ``sequence_time``).
        color_mode: ``"rgb"`` (3 channels) or ``"grayscale"`` (1).
        crop_to_aspect_ratio: resize without distortion, cropping the centre.
        pad_to_aspect_ratio: resize without distortion, padding with zeros.
        seek_mode, short_video, verify: as :class:`fastvid.ClipLoader`; unreadable
            and too-short videos are left out with one warning that counts them.
        cache_bytes: keep decoded frames in a frame cache of this many bytes
            (shared by the training and validation datasets); None: no cache.

    Returns:
        A ``tf.data.Dataset`` (a tuple of two with ``subset="both"``) with
        ``class_names`` and ``file_paths`` attributes, as Keras's datasets have.

    Raises:
        ValueError: bad arguments, naming the parameter; no video under ``directory``.
    """
    _checks.one_of(label_mode, "label_mode", LABEL_MODES)
    _checks.one_of(color_mode, "color_mode", ("rgb", "grayscale"))
    if batch_size is not None:
        _checks.positive_int(batch_size, "batch_size")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be True")
    if seed is None:
        seed = int(np.random.randint(0, 2**31 - 1))
    files, names = _index(directory, labels, class_names)
    if labels is None:
        label_mode = None
    if label_mode == "binary" and len(names) != 2:
        raise ValueError(
            f'label_mode="binary" needs exactly 2 classes; {directory} has '
            f'{len(names)}: {names}. Use label_mode="categorical" or "int"'
        )
    parts = _split(files, validation_split, subset, seed)
    options: dict[str, Any] = dict(
        num_frames=num_frames,
        size=image_size,
        batch_size=batch_size or 1,
        sampler=sampler,
        sampler_options=sampler_options or {},
        color="rgb" if color_mode == "rgb" else "gray",
        rescale=1.0,
        shuffle=shuffle,
        seed=seed,
        label_mode=None if label_mode is None else "int",
        aspect="crop" if crop_to_aspect_ratio else "pad" if pad_to_aspect_ratio else "stretch",
        seek_mode=seek_mode,
        short_video=short_video,
        device="cpu",
        verify=verify,
    )
    all_files = [f for part in parts for f in part]
    root = ClipLoader(all_files, classes=names, cache=cache_bytes, name=f"{directory}", **options)
    datasets = []
    for part, kind in zip(parts, _kinds(subset), strict=True):
        loader = root if len(parts) == 1 else root.subset(part, f"{directory} ({kind})")
        datasets.append(_dataset(loader, batch_size, label_mode, len(names)))
    return tuple(datasets) if subset == "both" else datasets[0]


def _kinds(subset: str | None) -> list[str]:
    return ["training", "validation"] if subset == "both" else [subset or "all"]


def _index(
    directory: str | os.PathLike[str], labels: Any, class_names: Sequence[str] | None
) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, class index)`` of the videos of ``directory``, and the class names."""
    root = os.fspath(directory)
    if not os.path.isdir(root):
        raise ValueError(f"directory={root!r} is not a folder")
    if isinstance(labels, str):
        if labels != "inferred":
            raise ValueError(
                f'labels must be "inferred", None or a list of ints. Received: {labels!r}'
            )
        files, names = dataset.discover(root, classes=class_names)
        if any(label < 0 for _, label in files):
            raise ValueError(
                f'{root}: labels="inferred" needs one sub-folder per class; '
                "these videos lie in the folder itself (pass labels=None)"
            )
        return files, names
    if class_names is not None:
        raise ValueError('class_names is only valid with labels="inferred"')
    paths = sorted(
        p
        for d, _, fs in os.walk(root)
        for f in fs
        if dataset.is_video_file(p := os.path.join(d, f))
    )
    if not paths:
        raise ValueError(f"no video file found under {root}")
    if labels is None:
        return [(p, 0) for p in paths], []
    values = list(labels)
    if len(values) != len(paths):
        raise ValueError(
            f"labels has {len(values)} values but {root} holds {len(paths)} "
            "videos; give one label per video, in sorted path order"
        )
    return dataset.discover(paths, values)


def _split(
    files: list[tuple[str, int]], fraction: float | None, subset: str | None, seed: int
) -> list[list[tuple[str, int]]]:
    """Keras's rule: shuffle the files with ``seed``, the last ``int(fraction * n)``
    validate. One list per dataset to build."""
    if subset is not None:
        _checks.one_of(subset, "subset", SUBSETS)
    if fraction is None:
        if subset is not None:
            raise ValueError(f"subset={subset!r} needs validation_split")
        return [files]
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split must be between 0 and 1. Received: {fraction}")
    if subset is None:
        raise ValueError('validation_split needs subset: "training", "validation" or "both"')
    order = np.random.default_rng(seed).permutation(len(files))
    shuffled = [files[i] for i in order]
    count = int(fraction * len(files))
    if count == 0 or count == len(files):
        raise ValueError(
            f"validation_split={fraction} of {len(files)} videos leaves "
            f"{'no video for validation' if count == 0 else 'none for training'}"
        )
    training, validation = sorted(shuffled[:-count]), sorted(shuffled[-count:])
    return {"training": [training], "validation": [validation], "both": [training, validation]}[
        subset
    ]


def _dataset(
    loader: ClipLoader, batch_size: int | None, label_mode: str | None, num_classes: int
) -> Any:
    import tensorflow as tf  # noqa: PLC0415

    epochs = itertools.count()
    batched = batch_size is not None
    steps = len(loader) if batched else loader.samples_count

    def items() -> Iterator[tuple[int, int]]:
        epoch = next(epochs)  # each pass over the dataset is the next epoch
        for step in range(steps):
            yield step, epoch

    def load(step_value: np.ndarray, epoch_value: np.ndarray) -> Any:
        step, epoch = int(step_value), int(epoch_value)
        if batched:
            out = loader.batch(step, epoch=epoch)
        else:
            out = loader.sample(int(loader.order_of(epoch)[step]), epoch)
        if label_mode is None:
            return np.asarray(out, np.float32)
        x, y = out
        return np.asarray(x, np.float32), _labels(np.asarray(y), label_mode, num_classes)

    x_shape = ([None] if batched else []) + list(loader.sample_shape)
    y_shape = ([None] if batched else []) + _label_shape(label_mode, num_classes)
    y_type = tf.int32 if label_mode == "int" else tf.float32

    def decode(step: Any, epoch: Any) -> Any:
        if label_mode is None:
            x = tf.numpy_function(load, [step, epoch], tf.float32, stateful=False)
            return tf.ensure_shape(x, x_shape)
        x, y = tf.numpy_function(load, [step, epoch], (tf.float32, y_type), stateful=False)
        return tf.ensure_shape(x, x_shape), tf.ensure_shape(y, y_shape)

    spec = (tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.int64))
    ds = tf.data.Dataset.from_generator(items, output_signature=spec)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.class_names = list(loader.classes)
    ds.file_paths = [v.path for v in loader.videos]
    return ds


def _label_shape(label_mode: str | None, num_classes: int) -> list[int]:
    return {"int": [], "categorical": [num_classes], "binary": [1], None: []}[label_mode]


def _labels(y: np.ndarray, label_mode: str, num_classes: int) -> np.ndarray:
    """The loader's int labels in ``label_mode``."""
    if label_mode == "int":
        return y.astype(np.int32)
    if label_mode == "binary":
        return y.astype(np.float32)[..., None]
    return np.eye(num_classes, dtype=np.float32)[y]

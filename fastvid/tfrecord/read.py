"""TFRecord files -> ``tf.data.Dataset`` of ``(frames, one-hot label)``, TensorFlow ops only.

Only the Python that *builds* the pipeline looks at a file (the first example, to
learn the layout, encoding and shapes); the pipeline itself is parse, decode,
cast and rescale ops, so it runs in tf.data's threads, under ``tf.distribute``
strategies and on tf.data service workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastvid.tfrecord import layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordSpec:
    """What the first example of a set of record files says about all of them."""

    layout: str
    encoding: str  # jpeg | png | raw
    num_frames: int | None  # None: varies per example (converted with frames="all")
    height: int
    width: int
    channels: int  # colour channels (video2tfrecord: all stored channels)
    flow_channels: int
    num_classes: int
    resized: bool  # all examples share (height, width): static shapes


PathOrPattern = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def list_record_files(pattern: PathOrPattern) -> list[str]:
    """Sorted record files of a folder, a glob or a list of either.

    A folder means every ``*.tfrecord*`` file in it; temporary files of an unfinished
    conversion and manifests are never listed.
    """
    import tensorflow as tf  # noqa: PLC0415

    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    files: set[str] = set()
    for p in patterns:
        p = os.fspath(p)
        if tf.io.gfile.isdir(p):
            p = os.path.join(p, "*.tfrecord*")
        files.update(tf.io.gfile.glob(p))
    keep = sorted(
        f for f in files
        if not os.path.basename(f).startswith(".") and not f.endswith((".json", ".partial"))
    )
    if not keep:
        raise FileNotFoundError(f"no TFRecord file matches {pattern!r}")
    return keep


def _is_gzip(path: str) -> bool:
    return path.endswith(layout.GZIP_SUFFIX)


def _first_example(files: Sequence[str], compression: str) -> Any:
    import tensorflow as tf  # noqa: PLC0415

    for f in files:
        ctype = _compression_of(f, compression)
        for raw in tf.data.TFRecordDataset(f, compression_type=ctype).take(1):
            return tf.train.Example.FromString(raw.numpy())
    raise ValueError(f"the {len(files)} record files hold no example")


def _compression_of(path: str, compression: str) -> str:
    if compression == "auto":
        return "GZIP" if _is_gzip(path) else ""
    return layout.compression_type(compression)


def inspect(pattern: PathOrPattern, compression: str = "auto") -> RecordSpec:
    """The :class:`RecordSpec` of record files, read from their first example."""
    files = list_record_files(pattern)
    feats = _first_example(files, compression).features.feature

    def first_int(name: str, default: int) -> int:
        return int(feats[name].int64_list.value[0]) if name in feats else default

    num_classes = first_int("num_classes", 0)
    if "frames" in feats:
        requested = first_int("frames_requested", 0)
        return RecordSpec(
            layout="fastvid",
            encoding=feats["encoding"].bytes_list.value[0].decode(),
            num_frames=requested or None,
            height=first_int("height", 0),
            width=first_int("width", 0),
            channels=first_int("channels", 3),
            flow_channels=first_int("flow_channels", 0),
            num_classes=num_classes,
            resized=bool(first_int("resized", 0)),
        )
    blob0 = layout.V2T_BLOB.format(0)
    if blob0 not in feats:
        raise ValueError(f"{files[0]}: neither fastvid nor video2tfrecord layout")
    count = sum(1 for k in feats if k.startswith(blob0[:-1]))
    head = feats[blob0].bytes_list.value[0][:8]
    encoding = "jpeg" if head[:2] == b"\xff\xd8" else "png" if head[:4] == b"\x89PNG" else "raw"
    return RecordSpec(
        layout="video2tfrecord", encoding=encoding, num_frames=count,
        height=first_int("height", 0), width=first_int("width", 0),
        channels=first_int("depth", 3), flow_channels=0, num_classes=num_classes,
        resized=bool(first_int("resized", 1)),  # video2tfrecord itself always resizes
    )


def _decode_images(blobs: Any, encoding: str, channels: int, count: int | None) -> Any:
    """(F,) encoded images -> uint8 (F, H, W, channels)."""
    import tensorflow as tf  # noqa: PLC0415

    decode = tf.io.decode_jpeg if encoding == "jpeg" else tf.io.decode_png
    if count:  # a known F: unrolled decodes run ~1.5x faster than map_fn's loop
        return tf.stack([decode(blobs[i], channels=channels) for i in range(count)])
    return tf.map_fn(
        lambda b: decode(b, channels=channels), blobs,
        fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
    )


def _parser(spec: RecordSpec, *, rescale: float, flow: bool, num_classes: int,
            with_metadata: bool) -> Any:
    """A function serialized example -> (frames, one-hot) [+ metadata], TF ops only."""
    import tensorflow as tf  # noqa: PLC0415

    common = {
        "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "class_name": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "path": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "frame_indices": tf.io.VarLenFeature(tf.int64),
        "fps": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }
    use_flow = flow and spec.flow_channels > 0
    depth = spec.channels + (spec.flow_channels if use_flow else 0)
    if spec.layout == "fastvid":
        if spec.encoding == "raw":
            frames_feature = tf.io.FixedLenFeature([], tf.string)
        elif spec.num_frames:
            frames_feature = tf.io.FixedLenFeature([spec.num_frames], tf.string)
        else:
            frames_feature = tf.io.VarLenFeature(tf.string)
        features = {
            **common,
            "frames": frames_feature,
            "num_frames": tf.io.FixedLenFeature([], tf.int64),
            "height": tf.io.FixedLenFeature([], tf.int64),
            "width": tf.io.FixedLenFeature([], tf.int64),
        }
        if use_flow:
            features["flow"] = tf.io.FixedLenFeature([], tf.string)
    else:
        features = {**common, "height": tf.io.FixedLenFeature([], tf.int64),
                    "width": tf.io.FixedLenFeature([], tf.int64)}
        # a missing blob parses as b"" so that the frame-count check below, not a
        # parse error, says what is wrong
        features.update({layout.V2T_BLOB.format(i): tf.io.FixedLenFeature([], tf.string, "")
                         for i in range(spec.num_frames or 0)})

    def parse(serialized: Any) -> Any:
        ex = tf.io.parse_single_example(serialized, features)
        height, width = tf.cast(ex["height"], tf.int32), tf.cast(ex["width"], tf.int32)
        if spec.layout == "fastvid":
            blobs = ex["frames"]
            if isinstance(blobs, tf.SparseTensor):
                blobs = tf.sparse.to_dense(blobs, default_value=b"")
            count = tf.cast(ex["num_frames"], tf.int32)
            if spec.encoding == "raw":
                pixels = tf.reshape(tf.io.decode_raw(blobs, tf.uint8),
                                    [count, height, width, spec.channels])
            else:
                pixels = _decode_images(blobs, spec.encoding, spec.channels, spec.num_frames)
        else:
            count = spec.num_frames
            # This layout gives no frame count, so F is the first example's. fastvid also
            # writes frame_indices (absent in video2tfrecord's own files): a video with
            # another F must fail loudly, never come back cut to the first one's length.
            written = tf.size(ex["frame_indices"].values)
            same_f = tf.debugging.assert_equal(
                tf.logical_or(tf.equal(written, 0), tf.equal(written, count)), True,
                message=f"video2tfrecord-layout records hold videos with different frame "
                        f"counts (the first has {count}); read them with a fixed count: "
                        "convert with --frames N, or use the fastvid layout",
            )
            with tf.control_dependencies([same_f]):
                blobs = tf.stack([ex[layout.V2T_BLOB.format(i)] for i in range(count)])
            if spec.encoding == "raw":
                pixels = tf.reshape(tf.io.decode_raw(blobs, tf.uint8),
                                    [count, height, width, spec.channels])
            else:
                pixels = _decode_images(blobs, spec.encoding, spec.channels, count)
        frames = tf.cast(pixels, tf.float32) * rescale
        if use_flow:
            motion = tf.reshape(tf.io.decode_raw(ex["flow"], tf.float16, little_endian=True),
                                [count, height, width, spec.flow_channels])
            frames = tf.concat([frames, tf.cast(motion, tf.float32)], axis=-1)
        if spec.resized:
            frames = tf.ensure_shape(frames, [spec.num_frames, spec.height, spec.width, depth])
        else:
            frames = tf.ensure_shape(frames, [spec.num_frames, None, None, depth])
        label = tf.one_hot(ex["label"], num_classes, dtype=tf.float32)
        if not with_metadata:
            return frames, label
        meta = {
            "label": ex["label"],
            "class_name": ex["class_name"],
            "path": ex["path"],
            "frame_indices": tf.sparse.to_dense(ex["frame_indices"]),
            "fps": ex["fps"],
        }
        return frames, label, meta

    return parse


def dataset(
    pattern: PathOrPattern,
    *,
    batch_size: int | None = 8,
    shuffle: bool = True,
    shuffle_buffer: int = 256,
    seed: int | None = None,
    rescale: float = 1 / 255,
    flow: bool = True,
    num_classes: int | None = None,
    input_context: Any = None,
    cycle_length: int | None = None,
    drop_remainder: bool = False,
    compression: str = "auto",
    with_metadata: bool = False,
    deterministic: bool | None = None,
) -> Any:
    """A ``tf.data.Dataset`` of ``(frames, label)`` from record files of :func:`convert`.

    ``frames`` is float32 ``(F, H, W, C)`` (``(B, F, H, W, C)`` once batched): colour
    (or grey) times ``rescale``, then, for records converted with flow and
    ``flow=True``, the 2 flow channels (dx, dy) in pixels, not rescaled. ``label`` is
    the one-hot float32 ``(num_classes,)`` (all zeros for unlabelled videos).
    Records in video2tfrecord's layout read the same way (all stored channels rescaled).

    Args:
        pattern: a folder (its ``*.tfrecord*`` files), a glob, or a list of them.
        batch_size: examples per batch, or None for unbatched examples. With an
            ``input_context`` this is the global batch: each input pipeline batches
            ``input_context.get_per_replica_batch_size(batch_size)``.
        shuffle: shuffle the file order and examples (``shuffle_buffer`` deep) each epoch.
        seed: seed of the shuffles.
        rescale: factor applied to the pixel values.
        flow: append the flow channels when the records have them.
        num_classes: one-hot depth; default: the ``num_classes`` stored in the records.
        input_context: a ``tf.distribute.InputContext``: this pipeline reads only its
            share (whole files when there are at least as many files as pipelines,
            otherwise every n-th example).
        cycle_length: files read at once (interleaved); default min(files, 16).
        drop_remainder: drop the last short batch (static batch dimension).
        compression: ``"auto"`` (``.gz`` files are gzip), ``"gzip"`` or ``"none"``.
        with_metadata: yield ``(frames, label, meta)`` with ``meta`` a dict of ``label``,
            ``class_name``, ``path``, ``frame_indices`` and ``fps``.
        deterministic: tf.data's ``deterministic`` for interleave and map; default:
            ordered when ``shuffle`` is False, free otherwise (faster).

    Videos converted with ``frames="all"`` differ in F: use ``batch_size=None`` (or
    ``padded_batch`` yourself).
    """
    import tensorflow as tf  # noqa: PLC0415

    files = list_record_files(pattern)
    spec = inspect(files, compression)
    depth = num_classes if num_classes is not None else spec.num_classes
    if deterministic is None:
        deterministic = not shuffle
    autotune = tf.data.AUTOTUNE

    ds = tf.data.Dataset.from_tensor_slices(files)
    shard_examples = False
    if input_context is not None and input_context.num_input_pipelines > 1:
        n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
        if len(files) >= n:
            ds = ds.shard(n, i)
        else:
            # every pipeline must see the same example order to take disjoint shares
            shard_examples, deterministic = True, True
            seed = 0 if seed is None else seed
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=_compression_tensor(f, compression)),
        cycle_length=cycle_length or min(len(files), 16),
        block_length=1,
        num_parallel_calls=autotune,
        deterministic=deterministic,
    )
    if shard_examples:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    parse = _parser(spec, rescale=rescale, flow=flow, num_classes=depth,
                    with_metadata=with_metadata)
    ds = ds.map(parse, num_parallel_calls=autotune, deterministic=deterministic)
    if batch_size:
        if input_context is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(autotune)


def _compression_tensor(path: Any, compression: str) -> Any:
    import tensorflow as tf  # noqa: PLC0415

    if compression != "auto":
        return layout.compression_type(compression)
    return tf.where(tf.strings.regex_full_match(path, r".*\.gz"), "GZIP", "")

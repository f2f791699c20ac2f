"""TFRecord files -> ``tf.data.Dataset`` of ``(frames, one-hot label)``, TensorFlow ops only.

Only the Python that *builds* the pipeline looks at a file (the first example, to
learn the layout, encoding and shapes); the pipeline itself is parse, decode,
cast and rescale ops, so it runs in tf.data's threads, under ``tf.distribute``
strategies and on tf.data service workers.

A pipeline is two steps, split where the tf.data service cuts it:

* *decode* (:func:`_wire_parser`): serialized example -> a dict of uint8 pixels,
  float16 flow, the integer label and the metadata: the compact form, 4x smaller
  than float32, which is what crosses the wire;
* *finish* (:func:`_finisher`): cast, rescale, append flow, one-hot: cheap
  element-wise ops that work on one example or on a batch.

Read locally, both run in one ``map``. Through the service
(``dataset(..., service=...)``), workers decode and the client finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from fastvid.tfrecord import _distributed, layout
from fastvid.tfrecord._files import (
    PathOrPattern,
    RecordSpec,
    _examples,
    inspect,
    list_record_files,
)

log = logging.getLogger(__name__)

ProcessingMode = Literal["distributed_epoch", "parallel_epochs"]
ServiceCompression = Literal["none", "snappy", "auto"]


def _decode_images(blobs: Any, encoding: str, channels: int, count: int | None) -> Any:
    """(F,) encoded images -> uint8 (F, H, W, channels)."""
    import tensorflow as tf  # noqa: PLC0415

    decode = tf.io.decode_jpeg if encoding == "jpeg" else tf.io.decode_png
    if count:  # a known F: unrolled decodes run ~1.5x faster than map_fn's loop
        return tf.stack([decode(blobs[i], channels=channels) for i in range(count)])
    return tf.map_fn(
        lambda b: decode(b, channels=channels),
        blobs,
        fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
    )


def _features(spec: RecordSpec, use_flow: bool) -> dict[str, Any]:
    """The ``parse_single_example`` spec of a layout."""
    import tensorflow as tf  # noqa: PLC0415

    common = {
        "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "class_name": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "path": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "frame_indices": tf.io.VarLenFeature(tf.int64),
        "fps": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
    }
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
        }
        if use_flow:
            features["flow"] = tf.io.FixedLenFeature([], tf.string)
        return features
    # a missing blob parses as b"" so that the frame-count check, not a parse error,
    # says what is wrong
    common.update(
        {
            layout.V2T_BLOB.format(i): tf.io.FixedLenFeature([], tf.string, "")
            for i in range(spec.num_frames or 0)
        }
    )
    return common


def _wire_parser(spec: RecordSpec, *, flow: bool, with_metadata: bool) -> Callable[[Any], dict]:
    """serialized example -> ``{"pixels": uint8 (F, H, W, C), "label": int64[, "flow":
    float16 (F, H, W, 2)][, metadata]}``: the decoded example in its compact form."""
    import tensorflow as tf  # noqa: PLC0415

    use_flow = flow and spec.flow_channels > 0
    features = _features(spec, use_flow)
    f = spec.num_frames
    h, w = (spec.height, spec.width) if spec.resized else (None, None)

    def parse(serialized: Any) -> dict[str, Any]:
        ex = tf.io.parse_single_example(serialized, features)
        height, width = tf.cast(ex["height"], tf.int32), tf.cast(ex["width"], tf.int32)
        if spec.layout == "fastvid":
            blobs = ex["frames"]
            if isinstance(blobs, tf.SparseTensor):
                blobs = tf.sparse.to_dense(blobs, default_value=b"")
            count = tf.cast(ex["num_frames"], tf.int32)
        else:
            count = spec.num_frames
            # This layout gives no frame count, so F is the first example's. fastvid also
            # writes frame_indices (absent in video2tfrecord's own files): a video with
            # another F must fail loudly, never come back cut to the first one's length.
            written = tf.size(ex["frame_indices"].values)
            same_f = tf.debugging.assert_equal(
                tf.logical_or(tf.equal(written, 0), tf.equal(written, count)),
                True,
                message=f"video2tfrecord-layout records hold videos with different frame "
                f"counts (the first has {count}); read them with a fixed count: "
                "convert with --frames N, or use the fastvid layout",
            )
            with tf.control_dependencies([same_f]):
                blobs = tf.stack([ex[layout.V2T_BLOB.format(i)] for i in range(count)])
        if spec.encoding == "raw":
            pixels = tf.reshape(
                tf.io.decode_raw(blobs, tf.uint8), [count, height, width, spec.channels]
            )
        else:
            pixels = _decode_images(blobs, spec.encoding, spec.channels, spec.num_frames)
        out = {"pixels": tf.ensure_shape(pixels, [f, h, w, spec.channels]), "label": ex["label"]}
        if use_flow:
            motion = tf.reshape(
                tf.io.decode_raw(ex["flow"], tf.float16, little_endian=True),
                [count, height, width, spec.flow_channels],
            )
            out["flow"] = tf.ensure_shape(motion, [f, h, w, spec.flow_channels])
        if with_metadata:
            out.update(
                class_name=ex["class_name"],
                path=ex["path"],
                fps=ex["fps"],
                frame_indices=tf.sparse.to_dense(ex["frame_indices"]),
            )
        return out

    return parse


def _finisher(
    spec: RecordSpec, *, rescale: float, num_classes: int, with_metadata: bool
) -> Callable[[dict], tuple]:
    """decoded dict -> ``(frames, one-hot[, meta])``; works on one example or a batch."""
    import tensorflow as tf  # noqa: PLC0415

    def finish(ex: dict[str, Any]) -> tuple:
        frames = tf.cast(ex["pixels"], tf.float32) * rescale
        if "flow" in ex:
            frames = tf.concat([frames, tf.cast(ex["flow"], tf.float32)], axis=-1)
        label = tf.one_hot(ex["label"], num_classes, dtype=tf.float32)
        if not with_metadata:
            return frames, label
        meta = {k: ex[k] for k in ("label", "class_name", "path", "frame_indices", "fps")}
        return frames, label, meta

    return finish


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
    service: str | None = None,
    job_name: str | None = None,
    processing_mode: ProcessingMode = "distributed_epoch",
    service_compression: ServiceCompression = "none",
    stall_timeout: float | None = 300.0,
) -> Any:
    """A ``tf.data.Dataset`` of ``(frames, label)`` from record files of :func:`convert`.

    ``frames`` is float32 ``(F, H, W, C)`` (``(B, F, H, W, C)`` once batched): colour
    (or grey) times ``rescale``, then, for records converted with flow and
    ``flow=True``, the 2 flow channels (dx, dy) in pixels, not rescaled. ``label`` is
    the one-hot float32 ``(num_classes,)`` (all zeros for unlabelled videos).
    Records in video2tfrecord's layout read the same way (all stored channels rescaled).

    Args:
        pattern: a folder (its ``*.tfrecord*`` files), a glob (``**`` allowed), or a
            list of them.
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
            otherwise every n-th example; through the service, whole files only).
        cycle_length: files read at once (interleaved); default min(files, 16).
        drop_remainder: drop the last short batch (static batch dimension).
        compression: of the record files: ``"auto"`` (``.gz`` files are gzip),
            ``"gzip"`` or ``"none"``.
        with_metadata: yield ``(frames, label, meta)`` with ``meta`` a dict of ``label``,
            ``class_name``, ``path``, ``frame_indices`` and ``fps``.
        deterministic: tf.data's ``deterministic`` for interleave and map; default:
            ordered when ``shuffle`` is False, free otherwise (faster).
        service: ``"grpc://host:port"`` (or ``"host:port"``) of a running tf.data
            service dispatcher (``fastvid service dispatcher``): its workers read, parse
            and decode, and send uint8 pixels (float16 flow); this process casts,
            rescales, one-hots and batches. See :mod:`fastvid.tfrecord.service`.
        job_name: service job to join: consumers with the same name share one job (and
            split its examples); default: a job of our own each epoch.
        processing_mode: ``"distributed_epoch"`` (default): the record files are dealt
            out to the workers, every example comes once per epoch however many workers
            there are. ``"parallel_epochs"``: every worker reads all of them, so N
            workers yield each example N times per epoch.
        service_compression: how the service compresses elements on the wire: ``"none"``
            (default: on a LAN or loopback compressing costs more CPU than the bytes it
            saves), ``"snappy"``, or ``"auto"`` (TensorFlow's default, snappy unless
            its runtime turns it off). Decoded video compresses poorly; see the README.
        stall_timeout: through the service, seconds without an example before the epoch
            fails (a worker that died for good makes TensorFlow's client wait forever);
            None waits forever.

    Through the service, each epoch is checked against the example counts the records'
    manifests hold (written by ``fastvid convert``): an epoch that ends short (a
    worker lost mid-epoch, its examples with it) or long raises
    ``tf.errors.InvalidArgumentError`` naming both counts instead of passing for a
    whole epoch. The count is of examples as they arrive, before batching, so
    ``drop_remainder`` (which drops the last short batch on purpose) does not trip it.
    Through the service, the order of examples is not deterministic (workers race),
    whatever ``deterministic`` says. With an ``input_context``, each pipeline checks
    its own share of files. Not
    counted: files without a manifest entry (a warning says so), and a named job
    (``job_name``), whose examples other consumers may share; ``stall_timeout``
    still applies.

    Videos converted with ``frames="all"`` differ in F: use ``batch_size=None`` (or
    ``padded_batch`` yourself).
    """
    import tensorflow as tf  # noqa: PLC0415

    files = list_record_files(pattern)
    spec = inspect(files, compression)
    depth = num_classes if num_classes is not None else spec.num_classes
    if deterministic is None:
        deterministic = not shuffle
    if input_context is not None and batch_size:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    parse = _wire_parser(spec, flow=flow, with_metadata=with_metadata)
    finish = _finisher(spec, rescale=rescale, num_classes=depth, with_metadata=with_metadata)
    if service is not None:
        return _distributed.service_dataset(
            files,
            spec,
            parse,
            finish,
            service=service,
            job_name=job_name,
            processing_mode=processing_mode,
            service_compression=service_compression,
            stall_timeout=stall_timeout,
            batch_size=batch_size,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            flow=flow,
            input_context=input_context,
            cycle_length=cycle_length,
            drop_remainder=drop_remainder,
            compression=compression,
            deterministic=deterministic,
        )
    autotune = tf.data.AUTOTUNE
    ds = _examples(
        files,
        shuffle=shuffle,
        seed=seed,
        cycle_length=cycle_length,
        deterministic=deterministic,
        compression=compression,
        input_context=input_context,
    )
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda s: finish(parse(s)), num_parallel_calls=autotune, deterministic=deterministic
    )
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(autotune)

"""Which TFRecord files a pattern names, what they hold, and their serialized examples.

Shared by the local reader (:mod:`fastvid.tfrecord.read`) and the tf.data service
path (:mod:`fastvid.tfrecord._distributed`): :func:`list_record_files` expands a
pattern (local or remote), :func:`inspect` reads the first example into a
:class:`RecordSpec`, and :func:`_examples` streams the serialized examples of this
input pipeline's share of the files.
"""

from __future__ import annotations

import glob
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

    @property
    def static(self) -> bool:
        """Every example has the same (F, H, W): examples can be batched as they are."""
        return bool(self.num_frames) and self.resized

    def example_bytes(self, flow: bool) -> int | None:
        """Bytes of one decoded example (uint8 pixels, float16 flow), None when it varies."""
        if not self.static:
            return None
        pixels = self.num_frames * self.height * self.width  # type: ignore[operator]
        return pixels * self.channels + (pixels * self.flow_channels * 2 if flow else 0)


PathOrPattern = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _is_remote(path: str) -> bool:
    """``gs://``, ``s3://``, ``hdfs://`` ...: a file system only TensorFlow's gfile knows."""
    return "://" in path


def _glob(pattern: str) -> list[str]:
    if _is_remote(pattern):
        import tensorflow as tf  # noqa: PLC0415

        return tf.io.gfile.glob(pattern)
    # Python's glob knows ``**`` (any depth), tf.io.gfile.glob does not
    return glob.glob(pattern, recursive=True)


def _isdir(path: str) -> bool:
    if _is_remote(path):
        import tensorflow as tf  # noqa: PLC0415

        return tf.io.gfile.isdir(path)
    return os.path.isdir(path)


def list_record_files(pattern: PathOrPattern) -> list[str]:
    """Sorted record files of a folder, a glob or a list of either.

    A folder means every ``*.tfrecord*`` file in it; a glob may use ``**`` for any
    depth of folders (``"records/**/*.tfrecord*"``). Local paths are matched by
    Python's :mod:`glob`, remote URLs (``gs://...``) by ``tf.io.gfile``. Temporary
    files of an unfinished conversion and manifests are never listed.
    """
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    files: set[str] = set()
    for p in patterns:
        p = os.fspath(p)
        if _isdir(p):
            p = os.path.join(p, "*.tfrecord*")
        files.update(f for f in _glob(p) if _is_remote(f) or os.path.isfile(f))
    keep = sorted(
        f
        for f in files
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
        layout="video2tfrecord",
        encoding=encoding,
        num_frames=count,
        height=first_int("height", 0),
        width=first_int("width", 0),
        channels=first_int("depth", 3),
        flow_channels=0,
        num_classes=num_classes,
        resized=bool(first_int("resized", 1)),  # video2tfrecord itself always resizes
    )


def _examples(
    files: Sequence[str],
    *,
    shuffle: bool,
    seed: int | None,
    cycle_length: int | None,
    deterministic: bool,
    compression: str,
    input_context: Any = None,
) -> Any:
    """Serialized examples of ``files`` (this input pipeline's share), files interleaved."""
    import tensorflow as tf  # noqa: PLC0415

    ds = tf.data.Dataset.from_tensor_slices(list(files))
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
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if shard_examples:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds


def _compression_tensor(path: Any, compression: str) -> Any:
    import tensorflow as tf  # noqa: PLC0415

    if compression != "auto":
        return layout.compression_type(compression)
    return tf.where(tf.strings.regex_full_match(path, r".*\.gz"), "GZIP", "")

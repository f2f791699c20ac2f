"""What one example holds, and how record files are named: shared by the writer and the reader.

Two layouts. ``fastvid`` (default), one ``tf.train.Example`` per video:

==================  ===========  ==========================================================
feature             type         content
==================  ===========  ==========================================================
frames              bytes list   ``encoding`` jpeg/png: one image per frame (F entries);
                                 raw: one buffer, uint8 (F, H, W, channels) row-major
encoding            bytes        ``jpeg`` | ``png`` | ``raw``
num_frames          int64        F
height, width       int64        H, W of the stored frames
channels            int64        colour channels: 3 (RGB) or 1 (grey)
flow_channels       int64        0, or 2 with ``--flow``
depth               int64        channels + flow_channels (what :func:`dataset` yields)
flow                bytes        with ``--flow`` only: float16 little-endian (F, H, W, 2),
                                 (dx, dy) in pixels of the stored frame size, never lossy
label               int64        class index, -1 when unlabelled
class_name          bytes        UTF-8 class name ("" when unlabelled)
num_classes         int64        number of classes of the whole conversion
path                bytes        UTF-8 source video path
frame_indices       int64 list   F frame indices in the source (presentation order)
video_frames        int64        frames in the source video
frames_requested    int64        ``--frames`` (0 for ``all``: F then varies per video)
fps                 float        source frame rate
resized             int64        1 when every video was resized to one ``--size``
layout_version      int64        1
==================  ===========  ==========================================================

Flow ``(dx, dy)`` of stored frame ``t`` is the dense optical flow (Farneback)
from source frame ``t`` to ``t + 1`` (``t - 1`` to ``t`` for the last frame), i.e.
the motion at that instant whatever the sampling step. It is kept apart from the
pixels because JPEG cannot carry it faithfully.

``video2tfrecord`` (``--video2tfrecord-layout``): video2tfrecord's own features,
``blob/<i>`` (one per frame: a JPEG, or raw uint8 ``(H, W, depth)`` bytes),
``height``, ``width``, ``depth``, so existing readers keep working (they ignore
the extra ``label``, ``class_name``, ``num_classes``, ``path``, ``frame_indices``,
``fps``, ``resized`` features we add). With flow, ``depth`` is channels + 1 and the extra
channel is the grey level of the HSV flow picture (hue = angle, value =
magnitude normalised per frame), as video2tfrecord stores it; the frames are
then raw, as there.
"""

from __future__ import annotations

LAYOUT_VERSION = 1
LAYOUTS = ("fastvid", "video2tfrecord")
ENCODINGS = ("jpeg", "png", "raw")
COMPRESSIONS = ("none", "gzip")

# video2tfrecord writes 'blob/<i>' (its README says 'blobs/<i>'; its code and its
# reader use 'blob/<i>', which is what existing files hold)
V2T_BLOB = "blob/{}"

RECORD_SUFFIX = ".tfrecord"
GZIP_SUFFIX = ".gz"


def record_name(
    prefix: str, shard_index: int, num_shards: int, index: int, count: int, suffix: str
) -> str:
    """File name of record ``index`` of ``count`` in shard ``shard_index`` of ``num_shards``.

    The shard is part of the name, so shards written on different machines into
    one folder never collide.
    """
    return f"{prefix}-{shard_index:05d}-of-{num_shards:05d}-{index:05d}-of-{count:05d}{suffix}"


def manifest_name(prefix: str, shard_index: int, num_shards: int) -> str:
    """The JSON file recording the arguments and progress of one shard's conversion."""
    return f"{prefix}-{shard_index:05d}-of-{num_shards:05d}.manifest.json"


def partial_name(final_name: str) -> str:
    """Temporary name of a record being written: hidden and not matching ``*.tfrecord*``."""
    stem = final_name.split(".tfrecord")[0]
    return f".{stem}.partial"


def compression_type(compression: str) -> str:
    """TensorFlow's ``compression_type`` for our ``compression`` option."""
    return {"none": "", "gzip": "GZIP"}[compression]

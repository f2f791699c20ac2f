"""TFRecord export and reading: ``fastvid convert`` speed, and tf.data against the generator.

The ``tfrecord`` suite of ``fastvid bench``.
Two workloads on the shared short clips, each a table section:

* conversion: ``fastvid.tfrecord.convert`` of every clip (frames sampled uniformly,
  resized by the decoder, JPEG by default), with 1 worker thread and with all cores;
  rows in seconds per video, ``extra`` holds videos/s and the bytes written per video.
* reading one epoch of the same clips at the same sample shape: the tf.data pipeline
  of :func:`fastvid.tfrecord.dataset` over the converted records (JPEG decoded by TF
  ops) against :class:`fastvid.VideoFrameGenerator` decoding the videos; rows in
  seconds per batch, ``extra`` holds frames/s. tf.data is shown twice: one epoch per
  iterator, as ``model.fit`` runs it (each epoch pays the pipeline's start-up), and
  ``--tfrecord-epochs`` epochs through one iterator (``repeat``), its steady state.

TensorFlow is imported only inside :func:`run`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastvid.bench import common, footage

log = logging.getLogger(__name__)

SUITE = "tfrecord"
TFDATA = "tf.data (fastvid.tfrecord.dataset)"
GENERATOR = "fastvid VideoFrameGenerator (decode videos)"


def add_arguments(parser: Any) -> None:
    """The suite's options, prefixed ``--tfrecord-`` so they never clash with another suite's."""
    parser.add_argument(
        "--tfrecord-frames", type=int, default=16, help="frames per video (default 16)"
    )
    parser.add_argument(
        "--tfrecord-size", type=int, default=112, help="square frame size in pixels (default 112)"
    )
    parser.add_argument(
        "--tfrecord-encoding",
        default="jpeg",
        choices=("jpeg", "png", "raw"),
        help="frame encoding of the records (default jpeg)",
    )
    parser.add_argument(
        "--tfrecord-compression",
        default="none",
        choices=("none", "gzip"),
        help="record compression (default none)",
    )
    parser.add_argument(
        "--tfrecord-batch-size", type=int, default=3, help="batch size when reading (default 3)"
    )
    parser.add_argument(
        "--tfrecord-epochs",
        type=int,
        default=None,
        help="epochs of the steady-state tf.data row (default 5, --quick 2)",
    )
    parser.add_argument(
        "--tfrecord-workers",
        type=int,
        default=None,
        help="conversion threads of the 'all workers' row (default: cores)",
    )


def _convert_once(pattern: str, dest: Path, args: Any, workers: int) -> dict[str, Any]:
    from fastvid.tfrecord import convert

    shutil.rmtree(dest, ignore_errors=True)
    summary = convert(
        pattern,
        dest,
        frames=args.tfrecord_frames,
        size=(args.tfrecord_size, args.tfrecord_size),
        encoding=args.tfrecord_encoding,
        compression=args.tfrecord_compression,
        videos_per_record=8,
        workers=workers,
        progress=False,
    )
    if summary.failed:
        raise RuntimeError(
            f"conversion failed for {len(summary.failed)} videos: {summary.failed[0]}"
        )
    size = sum(f.stat().st_size for f in dest.glob("*.tfrecord*"))
    return {"videos": summary.converted, "bytes": size}


def _conversion_rows(group: str, pattern: str, work: Path, args: Any, count: int) -> list[dict]:
    rows = []
    all_workers = args.tfrecord_workers or os.cpu_count() or 1
    for workers in sorted({1, all_workers}, reverse=True):
        dest = work / f"convert_{workers}"
        # one untimed conversion at least: the first pays for OpenCV's and TF's start-up
        timing = common.measure(
            lambda d=dest, w=workers: _convert_once(pattern, d, args, w),
            repeats=args.repeats,
            warmup=max(1, args.warmup),
        )
        per_video = common.Timing(tuple(t / count for t in timing.times), timing.value)
        extra = {
            "workers": workers,
            "videos": count,
            "videos_per_s": count / timing.median if timing.median else None,
            "bytes_per_video": timing.value["bytes"] / count,
        }
        note = (
            f"{extra['videos_per_s']:.1f} videos/s, {extra['bytes_per_video'] / 1024:.0f} KiB/video"
        )
        rows.append(
            common.Result.from_timing(
                SUITE,
                group,
                f"fastvid convert, {workers} worker{'s' if workers > 1 else ''}",
                per_video,
                unit="video",
                reference=workers == all_workers,
                note=note,
                extra=extra,
            ).to_dict()
        )
    return rows


def _epoch(iterable: Any) -> int:
    frames = 0
    for x, _ in iterable:
        frames += int(x.shape[0]) * int(x.shape[1])
    return frames


def _generator_epoch(gen: Any) -> int:
    frames = 0
    for i in range(len(gen)):
        x, _ = gen[i]
        frames += int(x.shape[0]) * int(x.shape[1])
    gen.on_epoch_end()
    return frames


def _read_row(
    group: str, method: str, run_epoch: Any, batches: int, args: Any, reference: bool = False
) -> dict:
    # at least one untimed epoch: tf.data traces its functions on the first one
    timing = common.measure(run_epoch, repeats=args.repeats, warmup=max(1, args.warmup))
    per_batch = common.Timing(tuple(t / batches for t in timing.times), timing.value)
    frames_per_s = timing.value / timing.median if timing.median else None
    return common.Result.from_timing(
        SUITE,
        group,
        method,
        per_batch,
        unit="batch",
        reference=reference,
        note=f"{frames_per_s:.0f} frames/s",
        extra={"frames_per_s": frames_per_s, "frames_per_epoch": timing.value},
    ).to_dict()


def _reading_rows(group: str, pattern: str, records: Path, args: Any) -> list[dict]:
    from fastvid import VideoFrameGenerator
    from fastvid.tfrecord import dataset

    size = args.tfrecord_size
    gen = VideoFrameGenerator(
        glob_pattern=pattern,
        nb_frames=args.tfrecord_frames,
        target_shape=(size, size),
        batch_size=args.tfrecord_batch_size,
        shuffle=True,
        seed=0,
        device="cpu",
    )
    ds = dataset(records, batch_size=args.tfrecord_batch_size, shuffle=True, seed=0)
    batches = len(gen)
    epochs = args.tfrecord_epochs or (2 if args.quick else 5)
    repeated = ds.repeat(epochs)
    try:
        return [
            _read_row(group, TFDATA, lambda: _epoch(ds), batches, args, reference=True),
            _read_row(
                group,
                f"{TFDATA}, {epochs} epochs per iterator",
                lambda: _epoch(repeated),
                batches * epochs,
                args,
            ),
            _read_row(group, GENERATOR, lambda: _generator_epoch(gen), batches, args),
        ]
    finally:
        close = getattr(gen, "close", None)
        if callable(close):
            close()


def run(args: Any) -> list[dict]:
    """Run the tfrecord suite; rows as dicts (see :mod:`fastvid.bench.common`)."""
    import tensorflow as tf  # noqa: F401 (its import is not what the rows measure)

    from fastvid.bench.loaders import class_layout

    clips = footage.short_clips(args)
    what = footage.describe_short_clips(args)
    pattern = class_layout(clips, Path(args.data_dir))
    shape = f"{args.tfrecord_frames} frames at {args.tfrecord_size}x{args.tfrecord_size}"
    rows: list[dict] = [
        {
            "kind": "note",
            "suite": SUITE,
            "text": f"{len(clips)} clips ({what}); records: {args.tfrecord_encoding}, "
            f"compression {args.tfrecord_compression}; {os.cpu_count()} cores",
        }
    ]
    work = Path(tempfile.mkdtemp(prefix="fastvid-bench-tfrecord-"))
    try:
        group = f"convert {len(clips)} clips, {shape}, {args.tfrecord_encoding}"
        log.info("tfrecord suite: %s", group)
        rows += _conversion_rows(group, pattern, work, args, len(clips))
        records = next(work.glob("convert_*"))
        group = f"read one epoch, {len(clips)} clips, {shape}, batch {args.tfrecord_batch_size}"
        log.info("tfrecord suite: %s", group)
        rows += _reading_rows(group, pattern, records, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows

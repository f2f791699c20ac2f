"""Videos -> TFRecord files: plan, extract (decode, flow, encode), write resumably.

The plan is a pure function of the sorted source list and the arguments: video
``j`` belongs to shard ``j % num_shards``, and a shard's videos are cut into
record files of ``videos_per_record`` in order. So every machine of a sharded
conversion, and every restart of a killed one, agrees on which video goes in
which file without talking to the others.

Worker threads decode (PyAV and OpenCV release the GIL) and encode; the calling
thread writes the examples in plan order. A record file is written under a
hidden temporary name and renamed when complete, so a file with its final name
is always whole: a restart with the same arguments skips it. A record whose
every video failed is not kept at all (no empty file). A shard's manifest (JSON
beside the records) holds the arguments, to refuse resuming with different ones,
and each finished record's example count and failures: the summary's, and the
count the tf.data service reader checks each epoch against.

A restart retries failed videos: a record whose manifest lists failures is
written again, so a video that was failing for a passing reason (a file still
being copied, a full disk) gets in, and one that still fails is reported again,
this run's failure, exit code 1. With ``retry_failed=False`` such records are
kept as they are and their failures reported as earlier ones (``failed_before``),
exit code still 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastvid import _checks
from fastvid.errors import VideoError
from fastvid.tfrecord import layout as fmt
from fastvid.tfrecord.sources import Source, discover

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """Arguments of a conversion; see :func:`convert`."""

    frames: int | str = 16
    size: tuple[int, int] | None = None
    gray: bool = False
    flow: bool = False
    videos_per_record: int = 32
    compression: str = "none"
    encoding: str = "jpeg"
    layout: str = "fastvid"
    jpeg_quality: int = 95
    prefix: str = "videos"
    suffix: str = fmt.RECORD_SUFFIX
    num_shards: int = 1
    shard_index: int = 0

    def __post_init__(self) -> None:
        if not (self.frames == "all" or (isinstance(self.frames, int) and self.frames > 0)):
            raise ValueError(f"frames must be a positive int or 'all', got {self.frames!r}")
        if self.size is not None:
            object.__setattr__(self, "size", _checks.size_hw(self.size, "size"))
        if self.videos_per_record <= 0:
            raise ValueError("videos_per_record must be positive")
        if self.compression not in fmt.COMPRESSIONS:
            raise ValueError(f"compression must be one of {fmt.COMPRESSIONS}")
        if self.encoding not in fmt.ENCODINGS:
            raise ValueError(f"encoding must be one of {fmt.ENCODINGS}")
        if self.layout not in fmt.LAYOUTS:
            raise ValueError(f"layout must be one of {fmt.LAYOUTS}")
        if self.layout == "video2tfrecord" and self.flow and self.encoding != "raw":
            raise ValueError(
                "the video2tfrecord layout stores flow as an extra uint8 channel of each "
                "frame, which only --encoding raw can hold"
            )
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(
                f"shard_index must be in [0, {self.num_shards}), got {self.shard_index}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [1, 100]")
        if "/" in self.prefix or os.sep in self.prefix or not self.prefix:
            raise ValueError(f"prefix must be a plain file-name prefix, got {self.prefix!r}")

    @property
    def file_suffix(self) -> str:
        """Record file extension, ``.gz`` added for gzip."""
        gz = fmt.GZIP_SUFFIX if self.compression == "gzip" else ""
        return self.suffix + gz


@dataclass(frozen=True)
class RecordPlan:
    """One record file to write: its final name and its videos, in order."""

    name: str
    sources: tuple[Source, ...]


@dataclass
class ConvertSummary:
    """What a conversion did. ``failed`` holds ``(path, reason)`` of this run's failures,
    ``failed_before`` those recorded in the records a restart skipped (only with
    ``retry_failed=False``: by default such records are retried). ``records`` lists the
    record files of this shard that exist (a record whose every video failed has none);
    ``ok`` is False while any video is listed as failed."""

    destination: str
    records: list[str] = field(default_factory=list)
    records_written: int = 0
    records_skipped: int = 0
    converted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_before: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No video failed, in this run or in the records it kept."""
        return not self.failed and not self.failed_before

    def __str__(self) -> str:
        lines = [
            f"{self.destination}: {self.converted} videos converted, "
            f"{self.skipped} skipped (already in finished records), {len(self.failed)} failed "
            f"in {self.seconds:.1f}s; records: {self.records_written} written, "
            f"{self.records_skipped} skipped",
        ]
        lines += [f"  failed: {path}: {reason}" for path, reason in self.failed]
        lines += [f"  failed (earlier run): {p}: {r}" for p, r in self.failed_before]
        return "\n".join(lines)


def plan_records(sources: Sequence[Source], options: ConvertOptions) -> list[RecordPlan]:
    """The record files of ``options.shard_index``: a pure function of sources and options."""
    mine = list(sources)[options.shard_index :: options.num_shards]
    k = options.videos_per_record
    chunks = [tuple(mine[i : i + k]) for i in range(0, len(mine), k)]
    return [
        RecordPlan(
            fmt.record_name(
                options.prefix,
                options.shard_index,
                options.num_shards,
                i,
                len(chunks),
                options.file_suffix,
            ),
            chunk,
        )
        for i, chunk in enumerate(chunks)
    ]


# ----------------------------------------------------------------------------- extraction


def _flow_partners(indices: Sequence[int], num_frames: int) -> list[tuple[int, int]]:
    """Pair of source frames whose flow describes the motion at each index."""
    if num_frames < 2:
        raise ValueError("optical flow needs at least 2 frames")
    return [(t, t + 1) if t + 1 < num_frames else (t - 1, t) for t in indices]


def _decode(source: Source, options: ConvertOptions, threads: int | None) -> dict[str, Any]:
    """Decode the frames (and flow) one example needs: a dict of NumPy arrays and numbers."""
    from fastvid.reader import VideoReader  # noqa: PLC0415 (keep package import light)
    from fastvid.sampling import uniform_indices  # noqa: PLC0415

    if not os.path.exists(source.path):
        raise VideoError(source.path, "file not found")
    # OpenCV encodes images from BGR: ask the decoder for that order directly
    to_image = options.encoding in ("jpeg", "png")
    color = "gray" if options.gray else ("bgr" if to_image else "rgb")
    with VideoReader(source.path, threads=threads) as reader:
        meta = reader.metadata
        total = len(reader)
        if options.frames == "all":
            if total < 1:
                raise VideoError(source.path, "no frame to read")
            indices = list(range(total))
        else:
            if total < options.frames:
                raise VideoError(
                    source.path, f"too few frames: {total} < {options.frames} requested"
                )
            indices = uniform_indices(total, options.frames)
        pairs = _flow_partners(indices, total) if options.flow else []
        wanted = sorted(set(indices).union(*pairs))
        decoded = reader.get_frames(wanted, size=options.size, color=color)
    row = {t: i for i, t in enumerate(wanted)}
    frames = decoded[[row[t] for t in indices]]
    out: dict[str, Any] = {
        "frames": frames,
        "indices": indices,
        "fps": float(meta.fps or 0.0),
        "video_frames": total,
        "flow": None,
    }
    if pairs:
        rgb = decoded[..., ::-1] if color == "bgr" else decoded
        stacked = np.stack([rgb[[row[a] for a, _ in pairs]], rgb[[row[b] for _, b in pairs]]], 1)
        out["flow"] = _flow(stacked, options.layout)
    return out


def _flow(pairs: np.ndarray, layout_name: str) -> np.ndarray:
    """Flow of each (F, 2, H, W, C) pair: float (F, H, W, 2), or a uint8 (F, H, W, 1) picture."""
    from fastvid.ops import METHOD_OPTICAL_FLOW, motion  # noqa: PLC0415

    if layout_name == "fastvid":
        return motion(pairs, "flow_raw", device="cpu")[:, 0]
    picture = motion(pairs, METHOD_OPTICAL_FLOW, device="cpu")[:, 0]  # RGB, 0..255
    grey = picture @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]


def _encode_image(image: np.ndarray, encoding: str, quality: int) -> bytes:
    import cv2  # noqa: PLC0415

    img = image[..., 0] if image.shape[-1] == 1 else image
    if encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} frame as {encoding}")
    return buf.tobytes()


# feature values before TensorFlow sees them: name -> ("bytes"|"int"|"float", list)
Features = dict[str, tuple[str, list[Any]]]


def build_features(
    source: Source, decoded: dict[str, Any], options: ConvertOptions, num_classes: int
) -> Features:
    """The features of one example (see :mod:`fastvid.tfrecord.layout`)."""
    frames = decoded["frames"]
    count, height, width, channels = frames.shape
    common: Features = {
        "label": ("int", [source.label]),
        "class_name": ("bytes", [source.class_name.encode()]),
        "num_classes": ("int", [num_classes]),
        "path": ("bytes", [source.path.encode()]),
        "frame_indices": ("int", list(decoded["indices"])),
        "fps": ("float", [decoded["fps"]]),
        "resized": ("int", [1 if options.size else 0]),
    }
    if options.layout == "video2tfrecord":
        if decoded["flow"] is not None:
            frames = np.concatenate([frames, decoded["flow"]], axis=-1)
        if options.encoding == "raw":
            blobs = [np.ascontiguousarray(f).tobytes() for f in frames]
        else:
            blobs = [_encode_image(f, options.encoding, options.jpeg_quality) for f in frames]
        feats: Features = {fmt.V2T_BLOB.format(i): ("bytes", [b]) for i, b in enumerate(blobs)}
        feats["height"] = ("int", [height])
        feats["width"] = ("int", [width])
        feats["depth"] = ("int", [frames.shape[-1]])
        return {**feats, **common}
    if options.encoding == "raw":
        payload = [np.ascontiguousarray(frames).tobytes()]
    else:
        payload = [_encode_image(f, options.encoding, options.jpeg_quality) for f in frames]
    flow_channels = 0 if decoded["flow"] is None else 2
    feats = {
        "frames": ("bytes", payload),
        "encoding": ("bytes", [options.encoding.encode()]),
        "num_frames": ("int", [count]),
        "height": ("int", [height]),
        "width": ("int", [width]),
        "channels": ("int", [channels]),
        "flow_channels": ("int", [flow_channels]),
        "depth": ("int", [channels + flow_channels]),
        "video_frames": ("int", [decoded["video_frames"]]),
        "frames_requested": ("int", [0 if options.frames == "all" else options.frames]),
        "layout_version": ("int", [fmt.LAYOUT_VERSION]),
        **common,
    }
    if flow_channels:
        flow16 = np.ascontiguousarray(decoded["flow"], dtype="<f2")
        feats["flow"] = ("bytes", [flow16.tobytes()])
    return feats


def extract(
    source: Source, options: ConvertOptions, num_classes: int, threads: int | None = None
) -> Features:
    """Decode, compute flow and encode one video: its example's features (no TensorFlow)."""
    return build_features(source, _decode(source, options, threads), options, num_classes)


def to_example(features: Features) -> bytes:
    """Serialise features as a ``tf.train.Example``."""
    import tensorflow as tf  # noqa: PLC0415

    def feature(kind: str, values: list[Any]) -> Any:
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "int":
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    proto = tf.train.Example(
        features=tf.train.Features(feature={k: feature(*v) for k, v in features.items()})
    )
    return proto.SerializeToString()


# ----------------------------------------------------------------------------- writing


def _failure_reason(err: BaseException) -> str:
    if isinstance(err, VideoError):
        return err.reason
    return f"{type(err).__name__}: {err}"


class _Manifest:
    """The JSON file of one shard: arguments and finished records (atomically rewritten)."""

    def __init__(self, path: Path, config: dict[str, Any], overwrite: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {"fastvid_convert": 1, "config": config, "records": {}}
        if path.exists() and not overwrite:
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("config") != config:
                changed = sorted(
                    k
                    for k in set(config) | set(old.get("config", {}))
                    if config.get(k) != old.get("config", {}).get(k)
                )
                raise ValueError(
                    f"{path.parent} holds a conversion made with other arguments "
                    f"(differs in: {', '.join(changed)}); use another destination or "
                    "overwrite=True (--overwrite)"
                )
            self.data["records"] = old.get("records", {})

    def record(self, name: str) -> dict[str, Any] | None:
        return self.data["records"].get(name)

    def finish(self, name: str, examples: int, failed: list[tuple[str, str]]) -> None:
        self.data["records"][name] = {"examples": examples, "failed": [list(f) for f in failed]}
        tmp = self.path.with_name("." + self.path.name + ".partial")
        tmp.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


def _config(sources: Sequence[Source], classes: Sequence[str], options: ConvertOptions) -> dict:
    digest = hashlib.sha256()
    for s in sources:
        digest.update(f"{s.path}\0{s.label}\0{s.class_name}\n".encode())
    cfg = asdict(options)
    cfg["size"] = list(options.size) if options.size else None
    cfg.update(classes=list(classes), sources=len(sources), sources_sha256=digest.hexdigest())
    return cfg


def _remove_stale(dest: Path, options: ConvertOptions, keep: set[str]) -> None:
    """Delete this shard's record files that the new plan does not make (``overwrite``)."""
    mine = f"{options.prefix}-{options.shard_index:05d}-of-{options.num_shards:05d}-"
    for path in dest.glob(mine + "*-of-*" + options.suffix + "*"):
        if path.name not in keep:
            log.info("%s: removed (not part of the overwritten conversion)", path)
            path.unlink()


def _other_shardings(dest: Path, options: ConvertOptions, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, delete) a conversion of the same prefix split into
    another number of shards: reading the folder would otherwise see every video twice."""
    pattern = re.compile(rf"{re.escape(options.prefix)}-\d{{5}}-of-(\d{{5}})\.manifest\.json")
    others = sorted(
        {
            int(m.group(1))
            for p in dest.glob(f"{options.prefix}-*.manifest.json")
            if (m := pattern.fullmatch(p.name)) and int(m.group(1)) != options.num_shards
        }
    )
    if not others:
        return
    if not overwrite:
        raise ValueError(
            f"{dest} already holds a conversion with prefix {options.prefix!r} split into "
            f"{', '.join(map(str, others))} shard(s), not {options.num_shards}; reading the "
            "folder would see its videos twice. Use another destination or prefix, or "
            "overwrite=True (--overwrite) to replace it"
        )
    for count in others:
        theirs = re.compile(
            rf"{re.escape(options.prefix)}-\d{{5}}-of-{count:05d}"
            r"(-\d{5}-of-\d{5}\.tfrecord.*|\.manifest\.json)"
        )
        for path in dest.glob(f"{options.prefix}-*"):
            if theirs.fullmatch(path.name):
                log.info("%s: removed (conversion into %d shards, overwritten)", path, count)
                path.unlink()


def _commit(partial: Path, final: Path) -> None:
    """Give a finished record its final name (one rename: readers never see half a file)."""
    os.replace(partial, final)


def write_records(
    sources: Sequence[Source],
    classes: Sequence[str],
    destination: str | os.PathLike[str],
    options: ConvertOptions,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    retry_failed: bool = True,
) -> ConvertSummary:
    """Write this shard's records of ``sources`` into ``destination``; see :func:`convert`."""
    import tensorflow as tf  # noqa: PLC0415

    start = time.perf_counter()
    dest = Path(destination)
    dest.mkdir(parents=True, exist_ok=True)
    _other_shardings(dest, options, overwrite)
    manifest = _Manifest(
        dest / fmt.manifest_name(options.prefix, options.shard_index, options.num_shards),
        _config(sources, classes, options),
        overwrite,
    )
    summary = ConvertSummary(destination=str(dest))
    plans = plan_records(sources, options)
    if overwrite:
        _remove_stale(dest, options, {rec.name for rec in plans})
    todo = _records_to_write(plans, manifest, dest, summary, overwrite, retry_failed)

    workers = max(1, workers or os.cpu_count() or 1)
    threads = 1 if workers > 1 else None  # one FFmpeg thread per worker: no oversubscription
    options_tf = tf.io.TFRecordOptions(compression_type=fmt.compression_type(options.compression))
    jobs = [s for rec in todo for s in rec.sources]  # in the order they are written
    bar = _progress(len(jobs), progress)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastvid-convert") as pool:
        pending: deque[Future] = deque()
        job_iter = iter(jobs)

        def submit_more() -> None:
            for source in job_iter:
                pending.append(pool.submit(_try_extract, source, options, len(classes), threads))
                if len(pending) >= 2 * workers:
                    break

        try:
            submit_more()
            for rec in todo:
                final, partial = dest / rec.name, dest / fmt.partial_name(rec.name)
                failed: list[tuple[str, str]] = []
                written = 0
                with tf.io.TFRecordWriter(str(partial), options_tf) as writer:
                    for source in rec.sources:
                        features, reason = pending.popleft().result()
                        submit_more()
                        if reason is None:
                            writer.write(to_example(features))
                            written += 1
                        else:
                            log.warning("%s: failed: %s", source.path, reason)
                            failed.append((source.path, reason))
                        bar.update(1)
                        bar.set_postfix(failed=len(summary.failed) + len(failed), refresh=False)
                _finish_record(rec, partial, final, written, failed, manifest, summary)
        finally:
            for fut in pending:
                fut.cancel()
            bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _records_to_write(
    plans: Sequence[RecordPlan],
    manifest: _Manifest,
    dest: Path,
    summary: ConvertSummary,
    overwrite: bool,
    retry_failed: bool,
) -> list[RecordPlan]:
    """The planned records still to write; the finished ones are counted in ``summary``."""
    todo = []
    for rec in plans:
        done = manifest.record(rec.name)
        if (
            done is not None
            and not overwrite
            and _finished(dest / rec.name, done)
            and not (retry_failed and done["failed"])
        ):
            summary.records_skipped += 1
            summary.skipped += done["examples"]
            summary.failed_before += [tuple(f) for f in done["failed"]]
            if done["examples"]:
                summary.records.append(str(dest / rec.name))
        else:
            todo.append(rec)
    if summary.records_skipped:
        log.info("%s: %d finished record files skipped", dest, summary.records_skipped)
    retried = sum(len(d["failed"]) for rec in todo if (d := manifest.record(rec.name)))
    if retried and not overwrite:
        log.info("%s: retrying %d videos that failed in an earlier run", dest, retried)
    return todo


def _finish_record(
    rec: RecordPlan,
    partial: Path,
    final: Path,
    written: int,
    failed: list[tuple[str, str]],
    manifest: _Manifest,
    summary: ConvertSummary,
) -> None:
    """Put a fully written record in place (or none, when all its videos failed)."""
    # manifest first: a crash between the two leaves no final file, so the record is
    # simply redone
    manifest.finish(rec.name, written, failed)
    if written:
        _commit(partial, final)
        summary.records.append(str(final))
    else:  # every video failed: no empty file (the manifest says why)
        partial.unlink()
        final.unlink(missing_ok=True)  # an earlier run's version of it
        log.warning("%s: not written, all its %d videos failed", final, len(rec.sources))
    summary.records_written += 1
    summary.converted += written
    summary.failed += failed


def _finished(path: Path, entry: dict[str, Any]) -> bool:
    """A record its manifest lists is finished when its file exists (or, with no
    example to hold, when it does not)."""
    return path.exists() if entry["examples"] else not path.exists()


def _try_extract(
    source: Source, options: ConvertOptions, num_classes: int, threads: int | None
) -> tuple[Features | None, str | None]:
    """(features, None) or (None, reason): a bad video never stops the conversion."""
    try:
        return extract(source, options, num_classes, threads), None
    except Exception as err:  # noqa: BLE001 (any failure of one video is that video's failure)
        return None, _failure_reason(err)


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, unit="video", desc="convert", disable=not enabled, leave=False)


# ----------------------------------------------------------------------------- entry points


def convert(
    source: str | os.PathLike[str] | Iterable[Source],
    destination: str | os.PathLike[str],
    *,
    frames: int | str = 16,
    size: tuple[int, int] | None = None,
    gray: bool = False,
    flow: bool = False,
    videos_per_record: int = 32,
    compression: str = "none",
    encoding: str | None = None,
    layout: str = "fastvid",
    workers: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    prefix: str = "videos",
    jpeg_quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
    classes: Sequence[str] | None = None,
    retry_failed: bool = True,
) -> ConvertSummary:
    """Convert videos into TFRecord files, one ``tf.train.Example`` per video.

    Args:
        source: a folder (one sub-folder per class), a glob with ``{classname}``, a CSV
            of ``path,label``, or an iterable of :class:`~fastvid.tfrecord.sources.Source`
            (then pass ``classes`` too).
        destination: output folder (created).
        frames: frames per video, spread uniformly (``fastvid.sampling.uniform_indices``,
            as the generators take them), or ``"all"``. A video with fewer frames fails.
        size: ``(height, width)`` of the stored frames (resized by the decoder); None keeps
            each video's own size.
        gray: store one grey channel instead of RGB.
        flow: add optical flow (see :mod:`fastvid.tfrecord.layout` for where it goes).
        videos_per_record: examples per record file.
        compression: ``"none"`` or ``"gzip"`` (files end in ``.gz``).
        encoding: ``"jpeg"`` (default: small, decoded by TF ops), ``"png"`` (lossless) or
            ``"raw"``; for the video2tfrecord layout the default is video2tfrecord's (JPEG,
            or raw with flow).
        layout: ``"fastvid"`` or ``"video2tfrecord"`` (``blob/<i>``, height, width,
            depth).
        workers: decoding threads (default: all cores).
        num_shards, shard_index: write only videos ``j`` with ``j % num_shards ==
            shard_index``; file names carry the shard, so shards never collide.
        prefix: file name prefix.
        jpeg_quality: 1..100.
        overwrite: rewrite finished records (and accept changed arguments); by default a
            restart with the same arguments skips them.
        progress: show a progress bar.
        classes: class names when ``source`` is a list of ``Source``.
        retry_failed: on a restart, write again the records in which some video failed
            (default), so that those videos are retried; False keeps them and reports
            their failures as earlier ones.

    A record in which every video failed leaves no file (only its manifest entry).

    Returns:
        a :class:`ConvertSummary`; failed videos are listed there, never raised
        (``summary.ok`` is False while any is listed, this run's or an earlier one's).

    Raises:
        FileNotFoundError: the source matches no video.
        ValueError: bad options, or ``destination`` holds a conversion with other arguments.
    """
    if encoding is None:
        encoding = "raw" if (layout == "video2tfrecord" and flow) else "jpeg"
    options = ConvertOptions(  # bad options fail before any file is listed
        frames=frames,
        size=tuple(size) if size else None,
        gray=gray,
        flow=flow,
        videos_per_record=videos_per_record,
        compression=compression,
        encoding=encoding,
        layout=layout,
        jpeg_quality=jpeg_quality,
        prefix=prefix,
        num_shards=num_shards,
        shard_index=shard_index,
    )
    if isinstance(source, (str, os.PathLike)):
        sources, found_classes = discover(source)
    else:
        sources = sorted(source, key=lambda s: s.path)
        found_classes = list(classes or sorted({s.class_name for s in sources if s.label >= 0}))
    log.info(
        "%d videos, %d classes -> %s (shard %d of %d)",
        len(sources),
        len(found_classes),
        destination,
        shard_index,
        num_shards,
    )
    return write_records(
        sources,
        found_classes,
        destination,
        options,
        workers=workers,
        overwrite=overwrite,
        progress=progress,
        retry_failed=retry_failed,
    )


def convert_videos_to_tfrecord(
    source_path: str,
    destination_path: str,
    n_videos_in_record: int = 10,
    n_frames_per_video: int | str = "all",
    file_suffix: str = "*.mp4",
    dense_optical_flow: bool = True,
    width: int = 1280,
    height: int = 720,
    color_depth: str = "uint8",
    video_filenames: Sequence[str] | None = None,
) -> ConvertSummary:
    """video2tfrecord's entry point, same arguments, same record layout.

    Videos ``source_path/file_suffix`` (or ``video_filenames``) are resized to
    ``width`` x ``height`` and written ``n_videos_in_record`` per file
    (``batch-....tfrecords``) with video2tfrecord's features ``blob/<i>``, ``height``,
    ``width``, ``depth`` (JPEG frames, or raw uint8 with the flow as 4th channel when
    ``dense_optical_flow``, on by default as in video2tfrecord's code, so the seed's
    five-argument call writes the same records). Unlike the original, frames are spread
    uniformly, a bad
    video is reported instead of stopping the run, and a restart resumes.
    Only ``color_depth="uint8"`` exists (decoded video is 8-bit).
    """
    if color_depth != "uint8":
        raise ValueError(f"color_depth {color_depth!r}: only 'uint8' is supported")
    if video_filenames is not None:
        paths = list(video_filenames)
    else:
        import glob  # noqa: PLC0415

        paths = glob.glob(os.path.join(source_path, file_suffix))
    if not paths:
        raise FileNotFoundError(f"no video matches {os.path.join(source_path, file_suffix)}")
    return _convert_v2t(
        paths,
        destination_path,
        n_videos_in_record,
        n_frames_per_video,
        dense_optical_flow,
        width,
        height,
    )


def _convert_v2t(
    paths: Sequence[str],
    destination: str,
    per_record: int,
    frames: int | str,
    flow: bool,
    width: int,
    height: int,
) -> ConvertSummary:
    options = ConvertOptions(
        frames=frames,
        size=(height, width),
        flow=flow,
        videos_per_record=per_record,
        encoding="raw" if flow else "jpeg",
        layout="video2tfrecord",
        prefix="batch",
        suffix=".tfrecords",
    )
    sources = sorted((Source(str(p)) for p in paths), key=lambda s: s.path)
    return write_records(sources, [], destination, options, progress=False)

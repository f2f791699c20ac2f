"""Keras loaders side by side: ``fastvid.VideoFrameGenerator`` against keras-video-generators.

The ``keras`` suite of ``fastvid bench``.
keras-video-generators itself no longer imports on NumPy 2 / Keras 3, so its
algorithm runs as the port in :mod:`fastvid.bench.kvg_baseline` (OpenCV sequential
read of every frame, per-frame resize/convert/rescale). Both loaders read the
same files with the same sample shape (default 16 frames at 112x112) and are
timed over whole epochs (``gen[i]`` for every batch, then ``on_epoch_end``).
The table shows seconds per batch; ``extra`` holds batches/s and clips/s.
"decoded/returned" counts every frame OpenCV read for keras-video-generators;
for fastvid it comes from replaying one epoch's requests through
:class:`fastvid.VideoReader` (marked ``~``), or is 0 when the frame cache
served every frame.

Workloads, each a table section:

* short clips: the shared UCF101-like clips (320x240 mpeg4 AVI, GOP 12, ~6 s);
* long clips: copies of the shared long 720p h264 clip, fastvid in exact mode
  (keyframe mode shown for information);
* frame cache: the second epoch (and later) with ``use_frame_cache=True``;
  the keras-video-generators row without a cache is repeated there, since the
  target compares against it;
* ``model.fit``: a tiny TimeDistributed(Conv2D)->GRU model, so the epoch is
  bound by data loading; the first epoch (graph tracing) is not timed.

Videos are linked into a ``<class>/<file>`` layout (hard links, or copies
where the file system refuses) because both generators find labels from a
``{classname}`` glob; classes are assigned round-robin, which does not change
what is decoded. TensorFlow is imported only inside :func:`run`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastvid.bench import common, footage

log = logging.getLogger(__name__)

SUITE = "keras"
FASTVID = "fastvid VideoFrameGenerator"
KVG = "keras-video-generators (port)"
_CLASSES = ("a", "b", "c")

# fastvid epoch speed over keras-video-generators' (issue 11), keyframe over exact mode
TARGET_SHORT = 3.0
TARGET_LONG = 4.0
TARGET_CACHE = 10.0
TARGET_KEYFRAME = 15.0


def add_arguments(parser: Any) -> None:
    """The suite's options (prefixed ``--keras-`` so they never clash with other suites')."""
    parser.add_argument(
        "--keras-frames", type=int, default=16, help="frames per sample (default 16)"
    )
    parser.add_argument(
        "--keras-size", type=int, default=112, help="square frame size in pixels (default 112)"
    )
    parser.add_argument(
        "--keras-batch-size",
        type=int,
        default=3,
        help="batch size on short clips (default 3: 18 clips = 6 batches)",
    )
    parser.add_argument(
        "--keras-long-copies",
        type=int,
        default=None,
        help="copies of the long clip in its dataset (default 4, --quick 2)",
    )
    parser.add_argument(
        "--keras-long-batch-size", type=int, default=2, help="batch size on long clips (default 2)"
    )
    parser.add_argument(
        "--keras-device",
        default="cpu",
        choices=("cpu", "cuda", "auto"),
        help="fastvid's device (default cpu)",
    )
    parser.add_argument(
        "--keras-threads",
        type=int,
        default=None,
        help="fastvid's num_threads (default: its own choice)",
    )
    parser.add_argument(
        "--keras-no-cache", action="store_true", help="skip the frame-cache (second epoch) workload"
    )
    parser.add_argument("--keras-no-fit", action="store_true", help="skip the model.fit workload")


# --------------------------------------------------------------------------- datasets


def class_layout(files: Sequence[Path], root: Path, classes: Sequence[str] = _CLASSES) -> str:
    """Link ``files`` into ``root/<class>/<k>_<name>`` (round-robin classes); the glob pattern.

    Hard links keep ``os.path.realpath`` inside ``root`` (keras-video-generators
    finds classes on real paths, so symbolic links would not do); files are
    copied when linking fails. A folder is named after the list, so it is reused.
    """
    digest = hashlib.sha1("\n".join(str(Path(f).resolve()) for f in files).encode()).hexdigest()
    folder = Path(root) / f"keras_{digest[:12]}"
    for k, src in enumerate(files):
        dst = folder / classes[k % len(classes)] / f"{k:04d}_{Path(src).name}"
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    ext = {Path(f).suffix for f in files}
    suffix = ext.pop() if len(ext) == 1 else ""
    return str(folder / "{classname}" / f"*{suffix}")


# --------------------------------------------------------------------------- loaders


def make_fastvid(
    pattern: str,
    args: Any,
    *,
    batch_size: int,
    cache: bool = False,
    seek_mode: str = "exact",
    workers: int | None = None,
) -> Any:
    """fastvid's generator for the benchmark's sample shape (``workers``: Keras's, for
    ``fit``; None: the generator's default)."""
    from fastvid import VideoFrameGenerator

    kwargs: dict[str, Any] = {} if workers is None else {"workers": workers}
    if getattr(args, "keras_threads", None):
        kwargs["num_threads"] = args.keras_threads
    return VideoFrameGenerator(
        glob_pattern=pattern,
        nb_frames=args.keras_frames,
        target_shape=(args.keras_size, args.keras_size),
        batch_size=batch_size,
        use_frame_cache=cache,
        shuffle=True,
        seed=0,
        seek_mode=seek_mode,
        device=getattr(args, "keras_device", "cpu"),
        **kwargs,
    )


def make_kvg(pattern: str, args: Any, *, batch_size: int, cache: bool = False) -> Any:
    """keras-video-generators' ``VideoFrameGenerator`` (the port) for the same shape."""
    from fastvid.bench.kvg_baseline import KvgVideoFrameGenerator

    return KvgVideoFrameGenerator(
        glob_pattern=pattern,
        nb_frames=args.keras_frames,
        target_shape=(args.keras_size, args.keras_size),
        batch_size=batch_size,
        use_frame_cache=cache,
        shuffle=True,
        seed=0,
    )


def run_epoch(gen: Any) -> int:
    """One pass over every batch, as Keras makes it; returns the clips delivered."""
    clips = 0
    for i in range(len(gen)):
        _, y = gen[i]
        clips += len(y)
    gen.on_epoch_end()
    return clips


def frames_decoded(gen: Any) -> int | None:
    """Frames the loader decoded so far, where it says (None when it does not)."""
    stats = getattr(gen, "stats", None)
    for name in ("frames_decoded", "frames_read"):
        value = getattr(stats, name, None)
        if isinstance(value, int):
            return value
    return None


def replay_decoded(gen: Any, seek_mode: str) -> int | None:
    """Frames fastvid's reader decodes for one epoch of ``gen``, found by replaying it.

    The generator keeps no decode counters, so every sample's frame request is
    read again (untimed) with a :class:`fastvid.VideoReader` of its own and its
    ``stats.frames_decoded`` summed. The generator merges requests for the same
    file within a batch, so this can only overcount: an estimate.
    """
    if not hasattr(gen, "sample_indices"):
        return None
    from fastvid.reader import VideoReader

    size = (gen.target_shape[1], gen.target_shape[0])
    total = 0
    for sample in range(gen.samples_count):
        path, indices = gen.sample_indices(sample)
        with VideoReader(path) as reader:
            reader.get_frames(indices, size=size, seek_mode=seek_mode)
            total += reader.stats.frames_decoded
    return total


def _cache_misses(gen: Any) -> int | None:
    cache = getattr(gen, "cache", None)
    stats = getattr(cache, "stats", None)
    return stats().misses if callable(stats) else None


def _close(gen: Any) -> None:
    close = getattr(gen, "close", None)
    if callable(close):
        close()


def _epoch_rows(
    group: str,
    method: str,
    gen: Any,
    args: Any,
    *,
    warmup: int,
    reference: bool = False,
    note: str = "",
    seek_mode: str | None = None,
) -> dict:
    """Time whole epochs of ``gen``: a row in seconds per batch.

    ``seek_mode`` (fastvid rows) replays an epoch untimed to count decoded frames.
    """
    batches = len(gen)
    if batches == 0:
        return common.Result(SUITE, group, method, skipped="no complete batch").to_dict()
    before, misses = frames_decoded(gen), _cache_misses(gen)
    timing = common.measure(lambda: run_epoch(gen), repeats=args.repeats, warmup=warmup)
    after = frames_decoded(gen)
    epochs = args.repeats + warmup
    clips = int(timing.value)
    per_batch = common.Timing(tuple(t / batches for t in timing.times), timing.value)
    decoded, estimated = None, False
    if before is not None and after is not None and epochs:
        decoded = round((after - before) / epochs / batches)
    elif misses is not None and _cache_misses(gen) == misses:
        decoded = 0  # every frame of the timed epochs came from the frame cache
    elif seek_mode is not None:
        replayed = replay_decoded(gen, seek_mode)
        if replayed is not None:
            decoded, estimated = round(replayed / batches), True
    returned = round(clips * args.keras_frames / batches)
    extra = {
        "batches": batches,
        "clips_per_epoch": clips,
        "epoch_s": timing.median,
        "batches_per_s": batches / timing.median if timing.median else None,
        "clips_per_s": clips / timing.median if timing.median else None,
    }
    if not note:
        note = f"{extra['batches_per_s']:.2f} batches/s, {extra['clips_per_s']:.1f} clips/s"
    return common.Result.from_timing(
        SUITE,
        group,
        method,
        per_batch,
        unit="batch",
        frames_returned=returned,
        frames_decoded=decoded,
        decoded_estimated=estimated,
        reference=reference,
        note=note,
        extra=extra,
    ).to_dict()


def _loader_pair(
    group: str,
    pattern: str,
    args: Any,
    *,
    batch_size: int,
    fastvid_modes: Sequence[str] = ("exact",),
) -> list[dict]:
    rows = []
    for mode in fastvid_modes:
        name = FASTVID if mode == "exact" else f"{FASTVID} (seek_mode={mode})"
        gen = make_fastvid(pattern, args, batch_size=batch_size, seek_mode=mode)
        try:
            rows.append(
                _epoch_rows(
                    group,
                    name,
                    gen,
                    args,
                    warmup=args.warmup,
                    reference=mode == "exact",
                    seek_mode=mode,
                )
            )
        finally:
            _close(gen)
    gen = make_kvg(pattern, args, batch_size=batch_size)
    rows.append(_epoch_rows(group, KVG, gen, args, warmup=args.warmup))
    return rows


def _cache_rows(group: str, pattern: str, args: Any, *, batch_size: int) -> list[dict]:
    """Second-epoch speed with the frame cache: fill it with one untimed epoch, then time."""
    rows = []
    for name, factory in ((FASTVID, make_fastvid), (KVG, make_kvg)):
        gen = factory(pattern, args, batch_size=batch_size, cache=True)
        try:
            run_epoch(gen)
            row = _epoch_rows(
                group,
                f"{name}, frame cache, epoch >= 2",
                gen,
                args,
                warmup=0,
                reference=name == FASTVID,
            )
            nbytes = _cache_nbytes(gen)
            if nbytes is not None:
                row["extra"]["cache_bytes"] = nbytes
                row["note"] += f"; cache {nbytes / 2**20:.0f} MiB"
            rows.append(row)
        finally:
            _close(gen)
    return rows


def _cache_nbytes(gen: Any) -> int | None:
    for name in ("cache_nbytes", "cache_bytes_used"):
        value = getattr(gen, name, None)
        if isinstance(value, int):
            return value
    cache = getattr(gen, "cache", None)
    value = getattr(cache, "nbytes", None)
    return value if isinstance(value, int) else None


# --------------------------------------------------------------------------- model.fit


def tiny_model(frames: int, size: int, channels: int, classes: int) -> Any:
    """A model so small that a ``fit`` epoch is bound by the data: Conv2D per frame, GRU."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((frames, size, size, channels)),
            keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, strides=4, activation="relu")),
            keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D()),
            keras.layers.GRU(8),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _epoch_timer() -> tuple[Any, list[float]]:
    import keras

    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self._t0)

    return EpochTimer(), times


FIT_ONE_WORKER = f"{FASTVID}, workers=1"
FIT_DEFAULT = f"{FASTVID}, default workers"


def _fit_rows(group: str, pattern: str, args: Any, *, batch_size: int) -> list[dict]:
    """Time ``model.fit`` epochs (``shuffle=True``, Keras's default: batches in a random
    order); the first epoch, which traces the graph, is not timed. fastvid with Keras's
    workers (its default) and with one (each batch decoded when the model asks)."""
    from fastvid.keras import FIT_WORKERS

    rows = []
    warmup = max(1, args.warmup)
    loaders: list[tuple[str, Callable[..., Any]]] = [
        (FIT_DEFAULT, make_fastvid),
        (FIT_ONE_WORKER, lambda *a, **k: make_fastvid(*a, workers=1, **k)),
        (KVG, make_kvg),
    ]
    for name, factory in loaders:
        gen = factory(pattern, args, batch_size=batch_size)
        try:
            batches = len(gen)
            if batches == 0:
                rows.append(common.Result(SUITE, group, name, skipped="no batch").to_dict())
                continue
            model = tiny_model(args.keras_frames, args.keras_size, 3, len(gen.classes))
            timer, times = _epoch_timer()
            model.fit(gen, epochs=warmup + args.repeats, verbose=0, callbacks=[timer], shuffle=True)
            timed = tuple(t / batches for t in times[warmup:])
            median = common.Timing(timed).median * batches
            note = f"{batches / median:.2f} batches/s"
            if name == FIT_DEFAULT:
                note += f" ({FIT_WORKERS} Keras worker threads)"
            rows.append(
                common.Result.from_timing(
                    SUITE,
                    group,
                    f"{name} + model.fit",
                    common.Timing(timed),
                    unit="batch",
                    reference=name == FIT_DEFAULT,
                    note=note,
                    extra={
                        "batches": batches,
                        "epoch_s": median,
                        "batches_per_s": batches / median,
                    },
                ).to_dict()
            )
        finally:
            _close(gen)
    return rows


# --------------------------------------------------------------------------- the suite


def _target(
    name: str, rows: list[dict], group: str, slow: str, fast: str, required: float, detail: str
) -> dict:
    ratio = common.speedup(rows, group, slow, fast)
    return common.Target(SUITE, name, ratio, required, detail=detail).to_dict()


def run(args: Any) -> list[dict]:
    """Run the keras suite; rows and targets as dicts (see :mod:`fastvid.bench.common`)."""
    size = f"{args.keras_frames} frames at {args.keras_size}x{args.keras_size}"
    rows: list[dict] = []
    short = footage.short_clips(args)
    what = footage.describe_short_clips(args)
    pattern = class_layout(short, Path(args.data_dir))
    group = f"one epoch, {len(short)} short clips ({what}), {size}"
    log.info("keras suite: %s", group)
    rows += _loader_pair(group, pattern, args, batch_size=args.keras_batch_size)
    rows.append(
        _target(
            "short clips: fastvid vs keras-video-generators",
            rows,
            group,
            KVG,
            FASTVID,
            TARGET_SHORT,
            "epoch time ratio, exact frames",
        )
    )

    if not args.keras_no_cache:
        cache_group = f"frame cache, {len(short)} short clips, {size}"
        cache_rows = _cache_rows(cache_group, pattern, args, batch_size=args.keras_batch_size)
        uncached = common.find(rows, group=group, method=KVG)
        if uncached is not None:
            copy = dict(
                uncached,
                group=cache_group,
                reference=False,
                method=f"{KVG}, no cache",
                note="same measurement as above",
            )
            cache_rows.append(copy)
        rows += cache_rows
        rows.append(
            _target(
                "2nd epoch: fastvid with its frame cache vs keras-video-generators without",
                cache_rows,
                cache_group,
                f"{KVG}, no cache",
                f"{FASTVID}, frame cache, epoch >= 2",
                TARGET_CACHE,
                "fastvid cached epoch vs the original's uncached epoch",
            )
        )

    long = footage.long_clip(args)
    if long is not None:
        copies = args.keras_long_copies or (2 if args.quick else 4)
        long_pattern = class_layout([long] * copies, Path(args.data_dir))
        long_group = f"one epoch, {copies} x long clip ({Path(long).name}), {size}"
        log.info("keras suite: %s", long_group)
        rows += _loader_pair(
            long_group,
            long_pattern,
            args,
            batch_size=args.keras_long_batch_size,
            fastvid_modes=("exact", "keyframe"),
        )
        rows.append(
            _target(
                "long clips, exact: fastvid vs keras-video-generators",
                rows,
                long_group,
                KVG,
                FASTVID,
                TARGET_LONG,
                "epoch time ratio",
            )
        )
        rows.append(
            _target(
                "long clips: fastvid keyframe mode vs exact",
                rows,
                long_group,
                FASTVID,
                f"{FASTVID} (seek_mode=keyframe)",
                TARGET_KEYFRAME,
                "epoch time ratio",
            )
        )

    if not args.keras_no_fit:
        import keras

        # four copies of the clips: an epoch long enough that Keras's fixed costs per epoch
        # (starting and draining its workers, ~0.1 s) do not dominate, as in real training
        fit_files = list(short) * (1 if args.quick else 4)
        fit_group = (
            f"model.fit epoch (tiny model, {keras.backend.backend()} backend, "
            f"shuffle=True), {len(fit_files)} short clips, {size}"
        )
        log.info("keras suite: %s", fit_group)
        rows += _fit_rows(
            fit_group,
            class_layout(fit_files, Path(args.data_dir)),
            args,
            batch_size=args.keras_batch_size,
        )
    return rows

"""Keras generators: drop-in replacements for keras-video-generators, fixed and fast.

``VideoFrameGenerator``, ``SlidingFrameGenerator`` and ``OpticalFlowGenerator``
are :class:`keras.utils.PyDataset` objects with keras-video-generators'
arguments. This module only composes the others, one step each::

    fastvid.dataset   files, labels, splits          (glob with {classname})
    fastvid.sampling  frame indices of each sample   (pure functions)
    fastvid.reader    decoding: read_clips, in a thread pool
    fastvid.cache     uint8 frames at the target size, LRU, bounded
    fastvid.ops       prepare (colour, resize, AugmentParams, rescale), motion
    fastvid.augment   the user's transformation, one draw per sequence
    fastvid.bridge    on CUDA, the batch reaches Keras as a backend tensor

Behaviour that differs from keras-video-generators, on purpose:

* every file is probed once (frame count and rate from the container index,
  in parallel) when the generator is built; videos shorter than a sample
  needs follow ``short_video`` and unreadable files are left out with one
  warning and a count (or raise with ``short_video="raise"``), so no batch
  shrinks in the middle of an epoch;
* ``len(gen) == ceil(samples / batch_size)``: every batch holds
  ``batch_size`` samples except the last one of an epoch, which holds the
  remainder (as Keras's own datasets; keras-video-generators dropped it);
* ``target_shape`` is ``(height, width)``, the order of the batch's axes;
* ``SlidingFrameGenerator`` returns the frames of each window (the original
  returned the same frames for every window of a video);
* batch ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``:
  shuffling, splits and augmentation repeat with the same ``seed``, and every
  epoch draws new augmentations.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from fastvid import _checks, _runtime, dataset, sampling
from fastvid.augment import FORK_ALTERNATIVES, SequenceTransform, fork_unsafe, make_transform
from fastvid.bridge import empty_aligned
from fastvid.cache import FrameCache, default_cache_bytes
from fastvid.errors import VideoError
from fastvid.ops import (
    METHOD_ABS_DIFF,
    METHOD_DIFF_MASK,
    METHOD_FLOW_MASK,
    METHOD_OPTICAL_FLOW,
    AugmentParams,
    normalize_method,
    resolve_device,
)
from fastvid.reader import SEEK_MODES, VideoReader

log = logging.getLogger(__name__)

__all__ = [
    "METHOD_ABS_DIFF",
    "METHOD_DIFF_MASK",
    "METHOD_FLOW_MASK",
    "METHOD_OPTICAL_FLOW",
    "OpticalFlowGenerator",
    "SlidingFrameGenerator",
    "VideoFrameGenerator",
]

_SHOW = 5  # how many file names a warning lists
_PROGRESS_MIN_FILES = 500  # index this many files or more: a progress bar on stderr

# purposes mixed into the per-epoch / per-batch seeds, so each stream is independent
_SHUFFLE, _AUGMENT, _TRANSFORM = 1, 2, 3


@dataclass(frozen=True)
class _Video:
    path: str
    label: int
    num_frames: int
    fps: float


@dataclass(eq=False)  # compared by identity: weakly tracked for fork resets
class _Shared:
    """What a generator shares with its validation and test generators."""

    classes: list[str]
    seed: int
    probes: dict[str, tuple[int, float] | str]  # path -> (frames, fps) or why unreadable
    split: dataset.Split
    cache: FrameCache | None
    bad: dict[str, str] = field(default_factory=dict)  # found unreadable while decoding
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        _runtime.reset_after_fork(self)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._after_fork()
        _runtime.reset_after_fork(self)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()


@dataclass(frozen=True)
class _Subset:
    kind: str  # "validation" | "test"
    files: list[tuple[str, int]]
    shared: _Shared


def _probe(path: str) -> tuple[int, float] | str:
    """(frame count, fps) of a file, or the reason it cannot be read (a VideoError's)."""
    try:
        with VideoReader(path) as reader:
            meta = reader.metadata
    except VideoError as err:  # the file's fault; anything else is not, and propagates
        return err.reason
    if meta.num_frames <= 0:
        return "no video frames"
    return int(meta.num_frames), float(meta.fps or 0.0)


def _probe_all(paths: Sequence[str], threads: int | None) -> dict[str, tuple[int, float] | str]:
    if not paths:
        return {}
    from tqdm import tqdm  # noqa: PLC0415

    workers = max(1, min(len(paths), threads or _runtime.default_threads()))
    # a large dataset takes a while to index the first time: show it
    probes = tqdm(_runtime.pool("probe", workers).map(_probe, paths), total=len(paths),
                  desc="fastvid: indexing videos", unit="file",
                  disable=len(paths) < _PROGRESS_MIN_FILES, leave=False)
    return dict(zip(paths, probes, strict=True))


def _reason(err: BaseException) -> str:
    return err.reason if isinstance(err, VideoError) else f"{type(err).__name__}: {err}"


def _forks_workers() -> bool:
    """True when multiprocessing starts processes by forking (Linux's default before 3.14)."""
    import multiprocessing  # noqa: PLC0415

    method = multiprocessing.get_start_method(allow_none=True)
    return (method or multiprocessing.get_all_start_methods()[0]) == "fork"


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _names(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_SHOW])
    return shown + (f" and {len(paths) - _SHOW} more" if len(paths) > _SHOW else "")


class VideoFrameGenerator(keras.utils.PyDataset):
    """Batches of ``nb_frames`` frames spread over each whole video, with one-hot labels.

    ``gen[i]`` is ``(x, y)``: ``x`` float32 ``(B, nb_frames, H, W, nb_channel)``
    with ``(H, W) = target_shape``, ``y`` float32 one-hot ``(B, classes_count)``
    in sorted class order. Frame ``k`` of a sample is the middle of the
    ``k``-th of ``nb_frames`` equal parts of the video.

    Args:
        rescale: multiplies pixel values (default 1/255 -> [0, 1]).
        nb_frames: frames per sample.
        classes: class names; None discovers them from ``glob_pattern``. Sorted.
        batch_size: samples per batch (the last batch of an epoch holds the rest).
        use_frame_cache: keep decoded frames (uint8, at the target size) in an
            LRU cache bounded by ``cache_bytes``; augmentation still varies.
        target_shape: ``(height, width)`` of the frames.
        shuffle: reshuffle samples every epoch (from ``seed``).
        transformation: a Keras preprocessing layer or ``Sequential``, a legacy
            ``ImageDataGenerator``, any ``fn(frames) -> frames`` or an
            :class:`fastvid.ops.AugmentParams`; one random draw per sequence.
        split_test: fraction of each class (after validation) kept for
            :meth:`get_test_generator`.
        split_val: fraction of each class kept for :meth:`get_validation_generator`.
        nb_channel: 3 (RGB) or 1 (gray).
        glob_pattern: glob with ``{classname}`` as a directory or in the file name.
        use_headers: accepted for compatibility; frame counts always come from the
            container index, never from headers.
        seed: makes splits, shuffling and augmentation reproducible.
        split: older name of ``split_val``.
        device: ``"auto"`` (CUDA when CuPy sees a device), ``"cpu"`` or ``"cuda"``.
            On CUDA ``x`` stays on the GPU as a Keras backend tensor.
        seek_mode: ``"exact"`` or ``"keyframe"`` (nearest keyframes: much faster
            on long videos).
        short_video: a video with fewer frames than a sample needs is ``"skip"``-ped
            (left out up front, one warning with the count), padded with its
            ``"repeat_last"`` frame, ``"loop"``-ed from its start, or ``"raise"``-s.
            Unreadable files are left out (and counted) under every policy but
            ``"raise"``.
        cache_bytes: bound of the frame cache (default a quarter of the RAM);
            giving it turns the cache on.
        num_threads: decoding threads per batch (None: the reader's default).
        augment: :class:`fastvid.ops.AugmentParams`: one warp per frame (CPU or GPU) of
            the frames decoded at the target size, the same draw for a whole sequence.
        prefetch: build the next batch in a background thread while the model
            uses this one. None (default) does so when batches are read in order
            from the main thread and Keras runs no workers of its own.
        workers, use_multiprocessing, max_queue_size: as ``keras.utils.PyDataset``.
    """

    def __init__(
        self,
        rescale: float = 1 / 255.0,
        nb_frames: int = 5,
        classes: list[str] | None = None,
        batch_size: int = 16,
        use_frame_cache: bool = False,
        target_shape: tuple[int, int] = (224, 224),
        shuffle: bool = True,
        transformation: Any = None,
        split_test: float | None = None,
        split_val: float | None = None,
        nb_channel: int = 3,
        glob_pattern: str = "./videos/{classname}/*.avi",
        use_headers: bool = True,
        seed: int | None = None,
        *,
        split: float | None = None,
        device: str = "auto",
        seek_mode: str = "exact",
        short_video: str = "skip",
        cache_bytes: int | None = None,
        num_threads: int | None = None,
        augment: AugmentParams | None = None,
        prefetch: bool | None = None,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        _subset: _Subset | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if nb_channel not in (1, 3):
            raise ValueError(f"nb_channel must be 1 or 3, got {nb_channel}")
        target_shape = _checks.size_hw(target_shape, "target_shape")
        nb_frames = _checks.positive_int(nb_frames, "nb_frames")
        batch_size = _checks.positive_int(batch_size, "batch_size")
        if seed is not None and (not isinstance(seed, int | np.integer) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        if seek_mode not in SEEK_MODES:
            raise ValueError(f"seek_mode must be one of {SEEK_MODES}, got {seek_mode!r}")
        sampling.check_short_video_policy(short_video)
        if split is not None:
            if split_val is not None and split_val != split:
                raise ValueError("give split_val or its older name split, not both")
            split_val = split
        if isinstance(transformation, AugmentParams):
            if augment is not None:
                raise ValueError("give AugmentParams as transformation or augment, not both")
            transformation, augment = None, transformation
        if augment is not None and not isinstance(augment, AugmentParams):
            raise TypeError(f"augment must be fastvid.AugmentParams, got {type(augment)}")

        self.rescale = float(rescale)
        self.nb_frames = int(nb_frames)
        self.batch_size = int(batch_size)
        self.use_frame_cache = bool(use_frame_cache or cache_bytes)
        self.target_shape = (int(target_shape[0]), int(target_shape[1]))
        self.shuffle = bool(shuffle)
        self.transformation = transformation
        self.split_val = split_val
        self.split_test = split_test
        self.nb_channel = int(nb_channel)
        self.glob_pattern = glob_pattern
        self.use_headers = use_headers
        self.device = device
        self.seek_mode = seek_mode
        self.short_video = short_video
        self.cache_bytes = cache_bytes
        self.num_threads = num_threads
        self.augment = None if augment is None or augment.is_identity else augment
        self.prefetch = prefetch
        self._transform: SequenceTransform | None = make_transform(transformation)
        unsafe = fork_unsafe(self._transform)
        if unsafe and use_multiprocessing and _forks_workers():
            raise ValueError(f"{unsafe}; use_multiprocessing=True forks Keras's workers: "
                             f"{FORK_ALTERNATIVES}")
        self._device = resolve_device(device)  # before any file is opened: fail fast

        if _subset is None:
            self.kind = "train"
            self._shared = self._discover(classes, split_val, split_test, seed)
            files = self._shared.split.train
        else:
            self.kind = _subset.kind
            self._shared = _subset.shared
            files = _subset.files
        self.seed = self._shared.seed
        self.classes = list(self._shared.classes)
        self.classes_count = len(self.classes)

        height, width = self.target_shape
        # Always decode straight to the target size: it converts and copies far fewer
        # bytes, and every path (training with or without AugmentParams or the cache,
        # validation, test) then shrinks frames the same way (swscale's area filter),
        # so a model is never validated on pixels resampled unlike its training ones.
        # AugmentParams then warps target-size frames.
        self._decode_size = (width, height)
        self._input_format = "rgb"
        if self._device == "cuda" and width % 2 == 0 and height % 2 == 0:
            self._input_format = "yuv420p"  # half the bytes to upload; converted on the GPU
        if self._device == "cuda" and self._transform is not None:
            log.warning(
                "%s: transformation=%s runs on the host; use augment=AugmentParams(...) to "
                "keep batches on the GPU",
                type(self).__name__, self._transform.kind,
            )

        self._videos = self._usable_videos(files)
        self._epoch = 0
        self._cursor = 0
        self._build_samples()
        self._prefetch_lock = threading.Lock()
        _runtime.reset_after_fork(self)
        self._pending: tuple[np.ndarray, int, Future] | None = None
        self._last_index: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._warned_substitute = False
        log.info(
            "%s (%s): %d classes, %d files, %d samples, %d batches of %d",
            type(self).__name__, self.kind, self.classes_count, self.files_count,
            self.samples_count, len(self), self.batch_size,
        )

    # ----------------------------------------------------------------- dataset
    def _discover(
        self,
        classes: list[str] | None,
        split_val: float | None,
        split_test: float | None,
        seed: int | None,
    ) -> _Shared:
        classes = list(classes) if classes else None  # the old default [] meant "discover"
        by_class = dataset.find_files(self.glob_pattern, classes)
        found = [c for c, files in by_class.items() if files]
        if classes is not None and len(found) < len(by_class):
            log.warning(
                "classes without any file for %r: %s",
                self.glob_pattern, ", ".join(c for c in by_class if not by_class[c]),
            )
        if not found:
            raise ValueError(
                f"no video file matches glob_pattern={self.glob_pattern!r}"
                + (f" for classes {sorted(classes)}" if classes is not None else "")
                + "; check the path and that it contains {classname}"
            )
        base_seed = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        split = dataset.split_files(by_class, split_val, split_test, base_seed)
        n_train, n_val, n_test = split.sizes()
        for name, fraction, count in (("split_val", split_val, n_val),
                                      ("split_test", split_test, n_test)):
            if fraction and not count:
                log.warning(
                    "%s=%s gives no file: int(%s x files of a class) rounds down to 0 for "
                    "every class (largest class: %d files)",
                    name, fraction, fraction, max(len(f) for f in by_class.values()),
                )
        log.info(
            "%d classes, %d files for %r: train %d, validation %d, test %d",
            len(by_class), n_train + n_val + n_test, self.glob_pattern, n_train, n_val, n_test,
        )
        all_paths = [p for part in (split.train, split.validation, split.test) for p, _ in part]
        probes = _probe_all(all_paths, self.num_threads)
        cache = None
        if self.use_frame_cache:
            limit = self.cache_bytes or default_cache_bytes()
            if not self.cache_bytes and self.use_multiprocessing:
                limit //= max(1, self.workers)  # each worker process holds its own cache
            cache = FrameCache(int(limit))
        return _Shared(sorted(by_class), base_seed, probes, split, cache)

    def _frames_needed(self, video: _Video) -> int:
        """Frames a video must have to give one sample without padding."""
        return self.nb_frames

    def _usable_videos(self, files: list[tuple[str, int]]) -> list[_Video]:
        unreadable: list[tuple[str, str]] = []
        short: list[str] = []
        videos: list[_Video] = []
        for path, label in files:
            probe = self._shared.probes.get(path)
            if probe is None:  # a file the parent did not probe (should not happen)
                probe = self._shared.probes[path] = _probe(path)
            if isinstance(probe, str):
                if self.short_video == "raise":
                    raise VideoError(path, probe)
                unreadable.append((path, probe))
                continue
            video = _Video(path, label, probe[0], probe[1])
            try:
                needed = self._frames_needed(video)
            except VideoError as err:  # e.g. no frame rate for sequence_time
                if self.short_video == "raise":
                    raise
                unreadable.append((path, err.reason))
                continue
            if video.num_frames < needed:
                if self.short_video == "raise":
                    raise VideoError(
                        path,
                        f"{video.num_frames} frames, fewer than the {needed} a sample needs "
                        "(short_video='raise')",
                    )
                if self.short_video == "skip":
                    short.append(path)
                    continue
            videos.append(video)
        self.skipped: dict[str, str] = {}
        if unreadable:
            log.warning(
                "%s (%s): %d of %d files cannot be read and are left out: %s",
                type(self).__name__, self.kind, len(unreadable), len(files),
                _names([f"{p} ({why})" for p, why in unreadable]),
            )
            self.skipped.update(unreadable)
        if short:
            log.warning(
                "%s (%s): %d of %d videos are shorter than a sample needs and are skipped "
                "(short_video='skip'; 'repeat_last' or 'loop' pads them instead): %s",
                type(self).__name__, self.kind, len(short), len(files), _names(short),
            )
            self.skipped.update({p: "too short" for p in short})
        if not videos and files:
            raise ValueError(f"{type(self).__name__} ({self.kind}): no usable video left")
        return videos

    # ---------------------------------------------------------------- sampling
    def _windows(self, video: _Video) -> int:
        """Samples one video gives."""
        return 1

    def _indices(self, video: _Video, window: int) -> list[int]:
        """Frame indices of sample ``window`` of ``video``."""
        return sampling.clip_indices(video.num_frames, self._frames_needed(video), self.short_video)

    def _build_samples(self) -> None:
        counts = np.array([self._windows(v) for v in self._videos], dtype=np.int64)
        self._sample_video = np.repeat(np.arange(len(self._videos)), counts)
        starts = [np.arange(c) for c in counts]
        self._sample_window = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.samples_count = int(counts.sum())
        self._order = self._epoch_order(self._epoch)

    @property
    def files(self) -> list[str]:
        """The files this generator reads (usable ones only), in sorted class order.

        Assigning a subset (``gen.files = [f for f in gen.files if keep(f)]``)
        removes the others and rebuilds the samples, as keras-video-generators
        suggested doing with its list.
        """
        return [v.path for v in self._videos]

    @files.setter
    def files(self, paths: Sequence[str]) -> None:
        keep = {str(p) for p in paths}
        unknown = keep - {v.path for v in self._videos}
        if unknown:
            raise ValueError(f"files can only be removed, not added: {_names(sorted(unknown))}")
        self._videos = [v for v in self._videos if v.path in keep]
        self._build_samples()

    @property
    def files_count(self) -> int:
        """How many files this generator reads."""
        return len(self._videos)

    def sample_indices(self, sample: int) -> tuple[str, list[int]]:
        """``(path, frame indices)`` of sample number ``sample`` (before shuffling)."""
        video = self._videos[int(self._sample_video[sample])]
        return video.path, self._indices(video, int(self._sample_window[sample]))

    # ------------------------------------------------------------------ epochs
    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.samples_count)
        rng = np.random.default_rng(_derive_seed(self.seed, epoch, _SHUFFLE))
        return rng.permutation(self.samples_count)

    @property
    def indexes(self) -> np.ndarray:
        """Sample numbers in this epoch's order."""
        return self._order

    @property
    def epoch(self) -> int:
        """Epochs completed (``on_epoch_end`` calls)."""
        return self._epoch

    def on_epoch_end(self) -> None:
        """Called by Keras after each epoch: reshuffle and draw new augmentations."""
        with self._prefetch_lock:
            self._epoch += 1
            self._order = self._epoch_order(self._epoch)
            if self._pending is not None:
                self._pending[2].cancel()
            self._pending = None
            self._last_index = None

    def __len__(self) -> int:
        return math.ceil(self.samples_count / self.batch_size)

    def next(self) -> tuple[Any, np.ndarray]:
        """The next batch; after the last one of an epoch, ``on_epoch_end`` and start over."""
        if len(self) == 0:
            raise StopIteration
        batch = self[self._cursor]
        self._cursor += 1
        if self._cursor >= len(self):
            self._cursor = 0
            self.on_epoch_end()
        return batch

    __next__ = next

    # ----------------------------------------------------------------- batches
    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"batch {index} out of range ({n} batches)")
        if not self._prefetching():
            return self._make_batch(index, self._epoch, self._order)
        with self._prefetch_lock:
            epoch, order = self._epoch, self._order
            pending, self._pending = self._pending, None
            in_order = self._last_index is None or index == self._last_index + 1
            self._last_index = index
        # a pending batch is valid for the same order (epoch and file list) and index
        if pending is not None and pending[0] is order and pending[1] == index:
            batch = pending[2].result()
        else:
            if pending is not None:
                pending[2].cancel()
            batch = self._make_batch(index, epoch, order)
        if in_order and index + 1 < n:
            future = self._pool().submit(self._make_batch, index + 1, epoch, order)
            with self._prefetch_lock:
                if self._order is order:
                    self._pending = (order, index + 1, future)
                else:
                    future.cancel()
        return batch

    def _prefetching(self) -> bool:
        if self.prefetch is not None:
            return self.prefetch
        # Keras workers (threads or processes) already overlap batches; tf.data's
        # generator thread does too. Prefetch only for plain loops in the main thread.
        return (
            self.workers <= 1
            and not self.use_multiprocessing
            and threading.current_thread() is threading.main_thread()
        )

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="fastvid-prefetch")
        return self._executor

    def _make_batch(self, index: int, epoch: int, order: np.ndarray) -> tuple[Any, np.ndarray]:
        """Batch ``index`` of ``epoch`` (``order`` is that epoch's sample order)."""
        positions = list(range(index * self.batch_size, min((index + 1) * self.batch_size,
                                                          len(order))))
        for _attempt in range(len(self._videos) + 1):
            samples = [self._sample_at(pos, order) for pos in positions]
            requests = [(self._videos[v].path, self._indices(self._videos[v], w))
                        for v, w in samples]
            clips = self._load(requests)
            if clips is not None:
                break
        else:  # pragma: no cover - every file went bad mid-epoch
            raise VideoError(self.glob_pattern, "no readable video left")
        labels = np.zeros((len(samples), self.classes_count), np.float32)
        labels[np.arange(len(samples)), [self._videos[v].label for v, _ in samples]] = 1.0
        x = self._process(clips, epoch, index)
        return x, labels

    def _sample_at(self, pos: int, order: np.ndarray) -> tuple[int, int]:
        """(video, window) at ``pos`` of the epoch order, stepping over bad files."""
        bad = self._shared.bad
        for step in range(len(order)):
            sample = int(order[(pos + step) % len(order)])
            video = int(self._sample_video[sample])
            if self._videos[video].path not in bad:
                if step and not self._warned_substitute:
                    self._warned_substitute = True
                    log.warning(
                        "%s (%s): samples of unreadable files are replaced by the next "
                        "samples of the epoch, so batches keep their size",
                        type(self).__name__, self.kind,
                    )
                return video, int(self._sample_window[sample])
        raise VideoError(self.glob_pattern, "every video of this generator is unreadable")

    # ---------------------------------------------------------------- decoding
    def _load(self, requests: list[tuple[str, list[int]]]) -> list[np.ndarray] | None:
        """uint8 clips for ``requests``; None when a file turned out unreadable.

        Each file is decoded once per batch, for the union of the frames its samples
        need (sliding windows of one video overlap), minus the frames in the cache.
        """
        cache = self._shared.cache
        key_tail = (self._decode_size, self._input_format, self.seek_mode)
        wanted: dict[str, set[int]] = {}
        for path, indices in requests:
            wanted.setdefault(path, set()).update(indices)
        cached: dict[tuple[str, int], np.ndarray] = {}
        missing: dict[str, list[int]] = {}
        for path, idx in wanted.items():
            ordered = sorted(idx)
            if cache is not None:
                found = cache.get_many([(path, i, *key_tail) for i in ordered])
                cached.update({(path, i): f for i, f in zip(ordered, found, strict=True)
                               if f is not None})
                ordered = [i for i, f in zip(ordered, found, strict=True) if f is None]
            if ordered:
                missing[path] = ordered
        decoded: dict[str, tuple[list[int], np.ndarray]] = {}
        if missing:
            clips = self._decode(list(missing.items()))
            if clips is None:
                return None
            for (path, ordered), clip in zip(missing.items(), clips, strict=True):
                decoded[path] = (ordered, clip)
                if cache is not None:
                    cache.put_many(((path, i, *key_tail), f)
                                   for i, f in zip(ordered, clip, strict=True))
        out = []
        for path, indices in requests:
            got = decoded.get(path)
            if got is not None and not cached and got[0] == list(indices):
                out.append(got[1])  # the common case: exactly this sample's frames
                continue
            frames = []
            for i in indices:
                frame = cached.get((path, i))
                if frame is None:
                    ordered, clip = decoded[path]
                    frame = clip[ordered.index(i)]
                frames.append(frame)
            out.append(np.stack(frames))
        return out

    def _decode(self, requests: list[tuple[str, list[int]]]) -> list[np.ndarray] | None:
        from fastvid.reader import read_clips  # noqa: PLC0415

        options = dict(size=self._decode_size, color=self._input_format,
                       seek_mode=self.seek_mode)
        try:
            return read_clips(requests, workers=self.num_threads, **options)
        except (VideoError, IndexError):
            pass  # a file's fault: find out which one, one at a time
        clips: list[np.ndarray] = []
        failed = False
        for path, indices in requests:
            try:
                clips.extend(read_clips([(path, indices)], workers=1, **options))
            except (VideoError, IndexError) as err:  # the file's fault, not the machine's
                reason = _reason(err)
                if self.short_video == "raise":
                    raise VideoError(path, reason) from err
                with self._shared.lock:
                    first = path not in self._shared.bad
                    self._shared.bad[path] = reason
                    count = len(self._shared.bad)
                if first:
                    log.warning(
                        "%s: cannot be decoded (%s); left out from now on (%d such files)",
                        path, reason, count,
                    )
                self.skipped[path] = reason
                failed = True
        return None if failed else clips

    # -------------------------------------------------------------- processing
    def _process(self, clips: list[np.ndarray], epoch: int, index: int) -> Any:
        from fastvid import ops  # noqa: PLC0415

        height, width = self.target_shape
        color = "rgb" if self.nb_channel == 3 else "gray"
        # transformations see [0, 255]; motion wants [0, 1]: rescale at the end then
        scale = 1.0 if self._transform is not None else self._pre_motion_scale()
        if self._already_prepared(clips):
            # frames decoded (or cached) at the target size, nothing to warp: prepare
            # would only copy each frame and rescale it; one vectorised multiply gives the
            # same numbers without a thread hand-off per frame (what makes cached epochs fast)
            x = empty_aligned((len(clips), *clips[0].shape), np.float32)
            np.multiply(np.stack(clips), np.float32(scale), out=x)
        else:
            x = ops.prepare(
                clips,
                size=(width, height),
                color=color,
                rescale=scale,
                augment=self.augment,
                seed=_derive_seed(self.seed, epoch, index, _AUGMENT),
                input_format=self._input_format,
                device=self._device,
            )
        if self._transform is not None:
            if _runtime.forked_child() and (unsafe := fork_unsafe(self._transform)):
                raise RuntimeError(f"{unsafe}, and this is a forked process: "
                                   f"{FORK_ALTERNATIVES}")
            if self._device == "cuda":
                x = x.get()  # user transformations run on the host (warned once)
            x = self._transform(x, _derive_seed(self.seed, epoch, index, _TRANSFORM))
            x = self._scale(x, self._pre_motion_scale())
        x = self._finish(x)
        if self._device == "cuda":
            from fastvid.bridge import to_backend  # noqa: PLC0415

            return to_backend(x)
        return x

    def _already_prepared(self, clips: list[np.ndarray]) -> bool:
        """True when prepare would be a plain copy-and-rescale of RGB target-size frames."""
        if self._device != "cpu" or self.augment is not None or self.nb_channel != 3:
            return False
        if self._input_format != "rgb":
            return False
        height, width = self.target_shape
        return all(c.ndim == 4 and c.shape[1:] == (height, width, 3) for c in clips)

    def _pre_motion_scale(self) -> float:
        return self.rescale

    def _finish(self, x: Any) -> Any:
        """Last step of a batch (motion, for the optical-flow generator)."""
        return x

    @staticmethod
    def _scale(x: Any, factor: float) -> Any:
        if abs(factor - 1.0) < 1e-12:
            return x
        x *= np.float32(factor)
        return x

    # ------------------------------------------------------------- subsets
    def _subset_args(self) -> dict[str, Any]:
        """Constructor arguments a validation or test generator inherits."""
        return dict(
            rescale=self.rescale, nb_frames=self.nb_frames, batch_size=self.batch_size,
            use_frame_cache=self.use_frame_cache, target_shape=self.target_shape,
            shuffle=self.shuffle, nb_channel=self.nb_channel, glob_pattern=self.glob_pattern,
            device=self.device, seek_mode=self.seek_mode, short_video=self.short_video,
            cache_bytes=self.cache_bytes, num_threads=self.num_threads, prefetch=self.prefetch,
            workers=self.workers, use_multiprocessing=self.use_multiprocessing,
            max_queue_size=self.max_queue_size,
        )

    def _subset(self, kind: str, files: list[tuple[str, int]]) -> VideoFrameGenerator:
        if not files:
            which = "split_val" if kind == "validation" else "split_test"
            raise ValueError(f"no {kind} files: pass {which} (a fraction of each class)")
        # no transformation or augmentation: validation and test see the data as is
        return type(self)(**self._subset_args(), _subset=_Subset(kind, files, self._shared))

    def get_validation_generator(self) -> VideoFrameGenerator:
        """The generator of the validation files (``split_val``), same settings, no augmentation."""
        return self._subset("validation", self._shared.split.validation)

    def get_test_generator(self) -> VideoFrameGenerator:
        """The generator of the test files (``split_test``), same settings, no augmentation."""
        return self._subset("test", self._shared.split.test)

    def _get_classname(self, video: str) -> str | None:
        """The class of a path according to ``glob_pattern`` (keras-video-generators' name)."""
        return dataset.classname_of(video, self.glob_pattern)

    @property
    def cache(self) -> FrameCache | None:
        """The frame cache (shared with the validation and test generators), or None."""
        return self._shared.cache

    # --------------------------------------------------------------- pickling
    def __getstate__(self) -> dict:
        # sent to Keras's worker processes: no threads, no pending batch
        state = self.__dict__.copy()
        for name in ("_prefetch_lock", "_executor", "_pending"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._after_fork()
        _runtime.reset_after_fork(self)

    def _after_fork(self) -> None:
        # a worker process (forked or spawned) starts with no prefetch thread of its own
        self._prefetch_lock = threading.Lock()
        self._executor = None
        self._pending = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.kind}: {self.files_count} files, "
            f"{self.samples_count} samples, {len(self)} batches of {self.batch_size}>"
        )


class SlidingFrameGenerator(VideoFrameGenerator):
    """Many samples per video: windows that slide one frame at a time.

    With ``sequence_time`` (seconds) a window covers that much time at the
    file's frame rate (``sequence_time * fps`` frames, rounded, at least
    ``nb_frames``) and its ``nb_frames`` frames are spread over it, first and
    last frames included. Without, the picked frames are
    ``num_frames // (2 * nb_frames)`` apart (at least 1): 60 frames, 6 wanted
    give ``[0, 5, ..., 25]``, ``[1, 6, ..., 26]``, ... up to the window that
    ends on the last frame. A video shorter than one window follows
    ``short_video`` (padded videos give one window).

    Args:
        sequence_time: seconds a window spans; None: see above.
        *args, **kwargs: as :class:`VideoFrameGenerator`.
    """

    def __init__(self, *args: Any, sequence_time: float | None = None, **kwargs: Any) -> None:
        if sequence_time is not None and sequence_time <= 0:
            raise ValueError(f"sequence_time must be positive, got {sequence_time}")
        self.sequence_time = sequence_time
        self._warned_span = False
        super().__init__(*args, **kwargs)

    def _span(self, video: _Video) -> int:
        if self.sequence_time is not None and video.fps <= 0:
            raise VideoError(video.path, "no frame rate, cannot honour sequence_time")
        span = sampling.window_span(self.nb_frames, video.num_frames, video.fps, self.sequence_time)
        if (
            self.sequence_time is not None
            and sampling.round_half_up(self.sequence_time * video.fps) < self.nb_frames
            and not self._warned_span
        ):
            self._warned_span = True
            log.warning(
                "sequence_time=%ss is %d frames at %.3g fps, fewer than nb_frames=%d: "
                "windows take %d consecutive frames",
                self.sequence_time, sampling.round_half_up(self.sequence_time * video.fps),
                video.fps,
                self.nb_frames, self.nb_frames,
            )
        return span

    def _frames_needed(self, video: _Video) -> int:
        return self._span(video)

    def _windows(self, video: _Video) -> int:
        return max(1, sampling.window_count(video.num_frames, self._span(video)))

    def _indices(self, video: _Video, window: int) -> list[int]:
        indices = sampling.window_indices(window, self._span(video), self.nb_frames)
        if video.num_frames < self._span(video):
            return sampling.pad_indices(indices, video.num_frames, self.short_video)
        return indices

    def _subset_args(self) -> dict[str, Any]:
        return {**super()._subset_args(), "sequence_time": self.sequence_time}


class OpticalFlowGenerator(VideoFrameGenerator):
    """Motion sequences: ``nb_frames`` images computed from ``nb_frames + 1`` decoded frames.

    ``method`` is ``METHOD_OPTICAL_FLOW`` (Farneback flow rendered as colour),
    ``METHOD_FLOW_MASK`` (the frames masked by the flow), ``METHOD_DIFF_MASK``
    (the frames masked by their blurred difference) or ``METHOD_ABS_DIFF``
    (absolute difference); ``flowlevel``, ``iterations`` and ``winsize`` go to
    Farneback. The transformation (same draw for all ``nb_frames + 1``
    frames) is applied before the motion, as keras-video-generators did.

    Args:
        nb_frames: motion images per sample.
        method, flowlevel, iterations, winsize: see above.
        *args, **kwargs: as :class:`VideoFrameGenerator`.
    """

    def __init__(
        self,
        *args: Any,
        nb_frames: int = 5,
        method: int | str = METHOD_OPTICAL_FLOW,
        flowlevel: int = 3,
        iterations: int = 3,
        winsize: int = 15,
        **kwargs: Any,
    ) -> None:
        self.method = normalize_method(method)
        self.flowlevel = int(flowlevel)
        self.iterations = int(iterations)
        self.winsize = int(winsize)
        super().__init__(*args, nb_frames=nb_frames, **kwargs)

    def _frames_needed(self, video: _Video) -> int:
        return self.nb_frames + 1

    def _pre_motion_scale(self) -> float:
        return 1 / 255.0  # motion works on [0, 1]; rescale comes after

    def _finish(self, x: Any) -> Any:
        from fastvid.ops import motion  # noqa: PLC0415

        out = motion(
            x, self.method, levels=self.flowlevel, winsize=self.winsize,
            iterations=self.iterations, device=self._device,
        )
        return self._scale(out, self.rescale * 255.0)

    def _subset_args(self) -> dict[str, Any]:
        return {
            **super()._subset_args(), "method": self.method, "flowlevel": self.flowlevel,
            "iterations": self.iterations, "winsize": self.winsize,
        }

"""Keras front-end: drop-in replacements for keras-video-generators' generators.

``VideoFrameGenerator``, ``SlidingFrameGenerator`` and ``OpticalFlowGenerator``
are :class:`keras.utils.PyDataset` objects that take keras-video-generators'
arguments (and a few more) and hand the work to a :class:`fastvid.loader.ClipLoader`:
this module only translates. Behaviour that differs from keras-video-generators,
on purpose:

* every file is probed once (frame count and rate from the container index, in
  parallel) when the generator is built; videos shorter than a sample needs
  follow ``short_video`` and unreadable files are left out with one warning and
  a count (or raise with ``short_video="raise"``), so no batch shrinks;
* ``len(gen) == ceil(samples / batch_size)``: every batch holds ``batch_size``
  samples except the last one of an epoch, which holds the remainder;
* ``target_shape`` is ``(height, width)``, the order of the batch's axes;
* ``SlidingFrameGenerator`` returns the frames of each window (the original
  returned the same frames for every window of a video);
* batch ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``; without
  ``seed`` one is drawn from NumPy's global generator, so
  ``keras.utils.set_random_seed`` (or ``np.random.seed``) makes runs repeat.

Beyond keras-video-generators: ``paths=``/``labels=`` (or a CSV or folder)
instead of a glob, ``label_mode``, ``sampler=`` (any generator, any name of
:data:`fastvid.sampling.SAMPLERS` or a :class:`fastvid.sampling.Sampler`),
``crop_to_aspect_ratio`` / ``pad_to_aspect_ratio`` and a settable ``epoch``.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np

from fastvid import _checks, dataset, sampling
from fastvid.augment import FORK_ALTERNATIVES, fork_unsafe, make_transform
from fastvid.cache import FrameCache
from fastvid.loader import ClipLoader, MotionOptions
from fastvid.ops import (
    METHOD_ABS_DIFF,
    METHOD_DIFF_MASK,
    METHOD_FLOW_MASK,
    METHOD_OPTICAL_FLOW,
    AugmentParams,
    motion,
    motion_method,
)

log = logging.getLogger(__name__)

# Keras's threads building batches during fit when the user sets none: two keep the next
# batches decoding (each on all cores, through the reader's shared pool) while the model
# trains, in the order Keras asks, which its shuffling makes unguessable
FIT_WORKERS = 2

__all__ = [
    "METHOD_ABS_DIFF",
    "METHOD_DIFF_MASK",
    "METHOD_FLOW_MASK",
    "METHOD_OPTICAL_FLOW",
    "OpticalFlowGenerator",
    "SlidingFrameGenerator",
    "VideoFrameGenerator",
]


def _forks_workers() -> bool:
    """True when multiprocessing starts processes by forking (Linux's default before 3.14)."""
    method = multiprocessing.get_start_method(allow_none=True)
    return (method or multiprocessing.get_all_start_methods()[0]) == "fork"


def _old_names(
    split: float | None, split_val: float | None, transformation: Any, augment: Any
) -> tuple[float | None, Any, AugmentParams | None]:
    """keras-video-generators' spellings: ``split`` for ``split_val``, AugmentParams as
    ``transformation``."""
    if split is not None:
        if split_val is not None and split_val != split:
            raise ValueError("give split_val or its older name split, not both")
        split_val = split
    if isinstance(transformation, AugmentParams):
        if augment is not None:
            raise ValueError("give AugmentParams as transformation or augment, not both")
        transformation, augment = None, transformation
    return split_val, transformation, augment


def _aspect(crop_to_aspect_ratio: bool, pad_to_aspect_ratio: bool) -> str:
    """The loader's ``aspect`` for Keras's two flags."""
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be True")
    return "crop" if crop_to_aspect_ratio else "pad" if pad_to_aspect_ratio else "stretch"


def _listed_files(
    paths: Any,
    labels: Sequence[str | int] | None,
    classes: list[str] | None,
    label_mode: str | None,
) -> tuple[dict[str, list[str]], list[str]]:
    """``paths`` (a list, a CSV file or a folder) as files by class, and the class names."""
    files, names = dataset.discover(paths, labels, classes=classes or None)
    if any(label < 0 for _, label in files):  # a folder of videos, no class folders
        if label_mode is not None:
            raise ValueError(
                f"{paths}: the videos have no labels; pass label_mode=None, "
                "or a folder with one sub-folder per class"
            )
        return {"": [p for p, _ in files]}, [""]
    by_class: dict[str, list[str]] = {name: [] for name in names}
    for path, label in files:
        by_class[names[label]].append(path)
    return by_class, names


def _refuse_forking(transformation: Any, use_multiprocessing: bool) -> None:
    """Fail at once, not hang, when forked workers would run a fork-unsafe transformation."""
    unsafe = fork_unsafe(make_transform(transformation))
    if unsafe and use_multiprocessing and _forks_workers():
        raise ValueError(
            f"{unsafe}; use_multiprocessing=True forks Keras's workers: {FORK_ALTERNATIVES}"
        )


def _device_for_workers(device: str, use_multiprocessing: bool) -> str:
    """The device a generator uses with these workers: CUDA never meets forked workers.

    Keras reads batches in the parent before it forks its worker processes, and a child
    forked after its parent used CUDA cannot use CUDA. ``"cuda"`` with forked workers is
    refused; ``"auto"`` uses the CPU then (warned, when it would have used CUDA).
    """
    if not (use_multiprocessing and _forks_workers()) or device == "cpu":
        return device
    if device == "cuda":
        raise ValueError(
            "device='cuda' cannot run in forked Keras workers (use_multiprocessing=True "
            "with the 'fork' start method): Keras reads batches in the parent first, and a "
            "process forked after CUDA started cannot use CUDA. Use use_multiprocessing=False "
            "(worker threads: decoding and the GPU both run outside the GIL), "
            "multiprocessing.set_start_method('spawn'), or device='cpu'"
        )
    from fastvid.ops import resolve_device  # noqa: PLC0415 (fork-safe: a subprocess probe)

    if resolve_device(device) == "cuda":
        log.warning(
            "device='auto' uses the CPU: use_multiprocessing=True forks Keras's "
            "workers, which cannot use CUDA once the parent has; "
            "use_multiprocessing=False keeps the GPU"
        )
    return "cpu"


def _base_seed(seed: int | None) -> int:
    if seed is None:  # NumPy's global generator: what keras.utils.set_random_seed seeds
        return int(np.random.randint(0, 2**31 - 1))
    if not _checks.is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None. Received: {seed!r}")
    return int(seed)


@dataclass
class _Data:
    """The dataset a generator and its validation and test generators come from."""

    split: dataset.Split
    classes: list[str]
    seed: int


class _LoaderView:
    """What a generator tells about its :class:`fastvid.ClipLoader` (keras-video-generators'
    attribute names)."""

    _loader: ClipLoader
    glob_pattern: str

    @property
    def loader(self) -> ClipLoader:
        """The :class:`fastvid.loader.ClipLoader` doing the work."""
        return self._loader

    @property
    def files(self) -> list[str]:
        """The files this generator reads (usable ones only), in sorted class order.

        Assigning a subset (``gen.files = [f for f in gen.files if keep(f)]``)
        removes the others and rebuilds the samples, as keras-video-generators
        suggested doing with its list.
        """
        return [v.path for v in self._loader.videos]

    @files.setter
    def files(self, paths: Sequence[str]) -> None:
        self._loader.keep_files(paths)

    @property
    def files_count(self) -> int:
        """How many files this generator reads."""
        return len(self._loader.videos)

    @property
    def samples_count(self) -> int:
        return self._loader.samples_count

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out, with the reason: unreadable, too short, or failed while decoding."""
        return self._loader.skipped

    @property
    def cache(self) -> FrameCache | None:
        """The frame cache (shared with the validation and test generators), or None."""
        return self._loader.cache

    def sample_indices(self, sample: int) -> tuple[str, list[int]]:
        """``(path, frame indices)`` of sample number ``sample`` (before shuffling)."""
        return self._loader.sample_request(sample)

    def _get_classname(self, video: str) -> str | None:
        """The class of a path according to ``glob_pattern`` (keras-video-generators' name)."""
        return dataset.classname_of(video, self.glob_pattern)

    @property
    def indexes(self) -> np.ndarray:
        """Sample numbers in this epoch's order."""
        return self._loader.order

    @property
    def epoch(self) -> int:
        """The epoch whose order and draws batches come from (``on_epoch_end`` calls).

        Set it to resume: ``gen.epoch = k`` before ``model.fit(gen, initial_epoch=k)``
        gives epoch ``k`` the order and augmentations an unbroken run would have.
        """
        return self._loader.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._loader.epoch = value


class VideoFrameGenerator(_LoaderView, keras.utils.PyDataset):
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
            :class:`fastvid.AugmentParams`; one random draw per sequence.
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
        num_threads: decoding threads per batch (None: one per core).
        augment: :class:`fastvid.AugmentParams`: one warp per frame (CPU or GPU) of
            the frames decoded at the target size, the same draw for a whole sequence.
        prefetch: build the next batch in a background thread while this one is used.
            None (default) does so for batches read in order from the main thread (a
            plain loop); under ``fit``, Keras's ``workers`` build batches ahead instead.
        verify: decode every file fully when indexing it, so damage anywhere in a
            file is known before its first batch (``fastvid.VideoReader(verify=True)``).
        paths: instead of ``glob_pattern``: a list of video paths (with ``labels``), a
            CSV file of ``path,label`` rows, or a folder with one sub-folder per class
            (:func:`fastvid.dataset.discover`).
        labels: with a list of ``paths``: one class name or class index per path.
        label_mode: ``"categorical"`` (one-hot float32, the default), ``"int"`` (int32
            class indices) or None (batches are ``x`` alone), as Keras's
            ``image_dataset_from_directory``.
        sampler: which frames make a sample: a name of :data:`fastvid.sampling.SAMPLERS`
            (``"uniform"``, this generator's default; ``"sliding"``; ``"random_clip"``:
            ``nb_frames`` consecutive frames, ``frame_step`` apart, from a random
            start drawn anew every epoch) or a :class:`fastvid.sampling.Sampler`.
        frame_step: the ``"random_clip"`` sampler's step between frames.
        crop_to_aspect_ratio: take the largest centred window of ``target_shape``'s
            shape instead of squashing the picture (Keras's name).
        pad_to_aspect_ratio: keep the whole picture undistorted, zeros around.
        workers: Keras's threads (processes with ``use_multiprocessing``) that build
            batches ahead of the model in ``fit``/``evaluate``/``predict``, in the order
            Keras asks for them (``fit`` shuffles the batch order). None (default):
            ``FIT_WORKERS`` threads, so decoding overlaps training on every backend; 1:
            Keras asks for each batch when the model needs it.
        use_multiprocessing, max_queue_size: as ``keras.utils.PyDataset``.
    """

    _sampler: str = "uniform"

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
        device: Literal["auto", "cpu", "cuda"] = "auto",
        seek_mode: Literal["exact", "keyframe"] = "exact",
        short_video: Literal["skip", "repeat_last", "loop", "raise"] = "skip",
        cache_bytes: int | None = None,
        num_threads: int | None = None,
        augment: AugmentParams | None = None,
        prefetch: bool | None = None,
        verify: bool = False,
        paths: Any = None,
        labels: Sequence[str | int] | None = None,
        label_mode: Literal["categorical", "int"] | None = "categorical",
        sampler: str | sampling.Sampler | None = None,
        frame_step: int | None = None,
        crop_to_aspect_ratio: bool = False,
        pad_to_aspect_ratio: bool = False,
        workers: int | None = None,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        _part: tuple[str, ClipLoader, _Data] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        if workers is None:
            workers = FIT_WORKERS
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        split_val, transformation, augment = _old_names(split, split_val, transformation, augment)
        _checks.one_of(nb_channel, "nb_channel", (1, 3))
        self.rescale = float(rescale)
        self.nb_frames = _checks.positive_int(nb_frames, "nb_frames")
        self.batch_size = _checks.positive_int(batch_size, "batch_size")
        self.use_frame_cache = bool(use_frame_cache or cache_bytes)
        self.target_shape = _checks.size_hw(target_shape, "target_shape")
        self.shuffle = bool(shuffle)
        self.transformation = transformation
        self.split_val, self.split_test = split_val, split_test
        self.nb_channel = int(nb_channel)
        self.glob_pattern = glob_pattern
        self.use_headers = use_headers
        self.device = _device_for_workers(device, use_multiprocessing)
        self.seek_mode, self.short_video = seek_mode, short_video
        self.cache_bytes, self.num_threads, self.verify = cache_bytes, num_threads, verify
        self.augment = None if augment is None or augment.is_identity else augment
        self.prefetch = prefetch
        self.label_mode = _checks.one_of(label_mode, "label_mode", ("categorical", "int", None))
        self.sampler = self._sampler if sampler is None else sampler
        self.frame_step = frame_step
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self._aspect = _aspect(self.crop_to_aspect_ratio, self.pad_to_aspect_ratio)
        _refuse_forking(transformation, use_multiprocessing)
        self.paths = paths
        if _part is None:
            data = self._discover(classes, labels, split_val, split_test, _base_seed(seed))
            _part = ("train", self._train_loader(data), data)
        self._attach(*_part)

    def _train_loader(self, data: _Data) -> ClipLoader:
        return ClipLoader(
            data.split.train,
            classes=data.classes,
            cache=self._new_cache(),
            name=f"{type(self).__name__} (train)",
            **self._loader_options(data.seed),
        )

    def _attach(self, kind: str, loader: ClipLoader, data: _Data) -> None:
        """Serve ``loader``'s batches as the ``kind`` split of ``data``."""
        self.kind, self._loader, self._data = kind, loader, data
        self.seed = data.seed
        self.classes = list(data.classes)
        self.classes_count = len(self.classes)
        self._cursor = 0
        log.info(
            "%s (%s): %d classes, %d files, %d samples, %d batches of %d",
            type(self).__name__,
            self.kind,
            self.classes_count,
            self.files_count,
            self.samples_count,
            len(self),
            self.batch_size,
        )

    # ----------------------------------------------------------------- translation
    def _discover(
        self,
        classes: list[str] | None,
        labels: Sequence[str | int] | None,
        split_val: float | None,
        split_test: float | None,
        seed: int,
    ) -> _Data:
        if self.paths is None:
            if labels is not None:
                raise ValueError(
                    "labels go with paths=[...]; with glob_pattern the class is read from each path"
                )
            by_class = dataset.find_files_or_raise(self.glob_pattern, classes)
            names, source = sorted(by_class), self.glob_pattern
        else:
            by_class, names = _listed_files(self.paths, labels, classes, self.label_mode)
            source = self.paths if isinstance(self.paths, str) else "paths"
        split = dataset.split_files(by_class, split_val, split_test, seed, classes=names)
        dataset.report_split(split, by_class, str(source), split_val, split_test)
        return _Data(split, names, seed)

    def _new_cache(self) -> FrameCache | None:
        if not self.use_frame_cache:
            return None
        from fastvid.cache import default_cache_bytes  # noqa: PLC0415

        limit = self.cache_bytes or default_cache_bytes()
        if not self.cache_bytes and self.use_multiprocessing:
            limit //= max(1, self.workers)  # each worker process holds its own cache
        return FrameCache(int(limit))

    def _loader_options(self, seed: int) -> dict[str, Any]:
        """The loader's options for this generator's arguments (subclasses add theirs)."""
        return dict(
            num_frames=self.nb_frames,
            size=self.target_shape,
            batch_size=self.batch_size,
            sampler=self.sampler,
            sampler_options={"frame_step": self.frame_step},
            color="rgb" if self.nb_channel == 3 else "gray",
            aspect=self._aspect,
            rescale=self.rescale,
            augment=self.augment,
            transformation=self.transformation,
            shuffle=self.shuffle,
            seed=seed,
            label_mode=self.label_mode,
            seek_mode=self.seek_mode,
            short_video=self.short_video,
            device=self.device,
            threads=self.num_threads,
            verify=self.verify,
        )

    def _settings(self) -> dict[str, Any]:
        """Constructor arguments a validation or test generator inherits."""
        return dict(
            rescale=self.rescale,
            nb_frames=self.nb_frames,
            batch_size=self.batch_size,
            use_frame_cache=self.use_frame_cache,
            target_shape=self.target_shape,
            shuffle=self.shuffle,
            nb_channel=self.nb_channel,
            glob_pattern=self.glob_pattern,
            device=self.device,
            seek_mode=self.seek_mode,
            short_video=self.short_video,
            cache_bytes=self.cache_bytes,
            num_threads=self.num_threads,
            prefetch=self.prefetch,
            verify=self.verify,
            label_mode=self.label_mode,
            sampler=self.sampler,
            frame_step=self.frame_step,
            crop_to_aspect_ratio=self.crop_to_aspect_ratio,
            pad_to_aspect_ratio=self.pad_to_aspect_ratio,
            workers=self.workers,
            use_multiprocessing=self.use_multiprocessing,
            max_queue_size=self.max_queue_size,
        )

    def _part(self, kind: str, files: list[tuple[str, int]]) -> VideoFrameGenerator:
        if not files:
            which = "split_val" if kind == "validation" else "split_test"
            raise ValueError(f"no {kind} files: pass {which} (a fraction of each class)")
        # no transformation or augmentation: validation and test see the data as is
        loader = self._loader.subset(
            files, f"{type(self).__name__} ({kind})", augment=None, transformation=None
        )
        part = type(self)(**self._settings(), _part=(kind, loader, self._data))
        part.paths = self.paths
        return part

    def get_validation_generator(self) -> VideoFrameGenerator:
        """The generator of the validation files (``split_val``), same settings, no augmentation."""
        return self._part("validation", self._data.split.validation)

    def get_test_generator(self) -> VideoFrameGenerator:
        """The generator of the test files (``split_test``), same settings, no augmentation."""
        return self._part("test", self._data.split.test)

    def on_epoch_end(self) -> None:
        """Called by Keras after each epoch: reshuffle and draw new augmentations."""
        self._loader.next_epoch()

    def __len__(self) -> int:
        return len(self._loader)

    def __getitem__(self, index: int) -> Any:
        """Batch ``index`` of this epoch: ``(x, y)``, or ``x`` with ``label_mode=None``."""
        return self._loader.batch(index, prefetch=self._prefetching())

    def next(self) -> Any:
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

    def _prefetching(self) -> bool:
        if self.prefetch is not None:
            return self.prefetch
        # Keras's workers (threads or processes) and tf.data's generator thread already
        # build batches ahead, in their order; prefetch for plain loops in the main thread
        in_main = threading.current_thread() is threading.main_thread()
        return in_main and not self.use_multiprocessing

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

    _sampler = "sliding"

    def __init__(self, *args: Any, sequence_time: float | None = None, **kwargs: Any) -> None:
        if sequence_time is not None and sequence_time <= 0:
            raise ValueError(f"sequence_time must be positive, got {sequence_time}")
        self.sequence_time = sequence_time
        super().__init__(*args, **kwargs)

    def _loader_options(self, seed: int) -> dict[str, Any]:
        options = super()._loader_options(seed)
        options["sampler_options"]["sequence_time"] = self.sequence_time
        return options

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "sequence_time": self.sequence_time}


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
        self.method = motion_method(method).code
        self.flowlevel = int(flowlevel)
        self.iterations = int(iterations)
        self.winsize = int(winsize)
        if len(args) > 1:  # nb_frames is keyword-only here, as in keras-video-generators
            raise TypeError("OpticalFlowGenerator takes nb_frames as a keyword argument")
        super().__init__(*args, **{**kwargs, "nb_frames": nb_frames})

    def _loader_options(self, seed: int) -> dict[str, Any]:
        options = super()._loader_options(seed)
        options["num_frames"] = self.nb_frames + 1  # a motion image between each pair
        options["motion"] = MotionOptions(
            self.method, self.flowlevel, self.winsize, self.iterations
        )
        return options

    def _settings(self) -> dict[str, Any]:
        return {
            **super()._settings(),
            "method": self.method,
            "flowlevel": self.flowlevel,
            "iterations": self.iterations,
            "winsize": self.winsize,
        }

    # keras-video-generators' methods on two images, here on this generator's settings
    def absdiff(self, images: Sequence[Any]) -> np.ndarray:
        """``|gray(a) - gray(b)|`` of two images, in every channel."""
        return self._pair(images, METHOD_ABS_DIFF)

    def make_optical_flow(self, images: Sequence[Any]) -> np.ndarray:
        """Farneback flow from the first image to the second, rendered as RGB (angle as
        hue, normalised magnitude as value), with this generator's ``flowlevel``,
        ``winsize`` and ``iterations``."""
        return self._pair(images, METHOD_OPTICAL_FLOW)

    def diff_mask(self, images: Sequence[Any]) -> np.ndarray:
        """The images' mean masked by their blurred absolute difference (``(a + b) / 2 *
        blur(|gray(a) - gray(b)|)``)."""
        return self._pair(images, METHOD_DIFF_MASK)

    def flow_mask(self, images: Sequence[Any]) -> np.ndarray:
        """The images' mean masked by their blurred optical flow rendering."""
        return self._pair(images, METHOD_FLOW_MASK)

    def _pair(self, images: Sequence[Any], method: int) -> np.ndarray:
        """``method`` between two ``(H, W, C)`` (or ``(H, W)``) images, uint8 or float32
        in [0, 1]; the result is float32 ``(H, W, C)`` in the images' scale, the same
        numbers the generator's batches hold (formulas: :func:`fastvid.ops.cpu.motion`)."""
        if len(images) != 2:
            raise ValueError(f"expected two images, got {len(images)}")
        pair = [np.asarray(image) for image in images]
        if pair[0].shape != pair[1].shape or pair[0].dtype != pair[1].dtype:
            raise ValueError(
                "the two images must share shape and dtype, got "
                f"{pair[0].shape} {pair[0].dtype} and {pair[1].shape} {pair[1].dtype}"
            )
        frames = np.stack(pair)
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.dtype != np.uint8:
            frames = frames.astype(np.float32)
        out = motion(
            frames,
            method,
            levels=self.flowlevel,
            winsize=self.winsize,
            iterations=self.iterations,
            device="cpu",
        )
        return np.asarray(out[0, 0])

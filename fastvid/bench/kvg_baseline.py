"""keras-video-generators' ``VideoFrameGenerator``, ported to run today: the baseline.

keras-video-generators 1.0.14 (the last release on PyPI) no longer imports on
NumPy 2 / Keras 3. The benchmark (``fastvid bench --suite keras``) and
``fastvid demo`` still need to measure *its* way of loading video, so this
module re-implements its data path with the same algorithm, written from a
reading of its source:

* the frame count comes from the container header
  (``CAP_PROP_FRAME_COUNT``); when the read below does not yield enough frames,
  the whole file is read once more just to count them, then read again;
* ``cv2.VideoCapture.read()`` decodes (and converts to BGR) every frame from
  the start of the file, sequentially; a frame is kept when its 1-based
  position ``i`` is 1, the last frame, or a multiple of
  ``step = floor(even(total) / (nb_frames - 1))`` (``even`` rounds an odd count
  up), until ``nb_frames`` are kept (see :func:`kvg_selected_indices`);
* each kept frame is ``cv2.resize``-d to ``target_shape`` (OpenCV's
  ``(width, height)`` order), converted with ``cv2.cvtColor`` (BGR->RGB, or
  ``COLOR_RGB2GRAY`` on the BGR frame for one channel, as the original did),
  turned into float32 and multiplied by ``rescale``;
* a video that does not yield ``nb_frames`` frames is dropped from its batch
  (the batch silently shrinks);
* the optional frame cache keeps every clip's float32 frames in a dict, with no
  bound;
* batches are ``files[indexes[i*B:(i+1)*B]]``, ``len = floor(files / B)``,
  labels one-hot in sorted class order; splits per class as the original.

Deliberate differences, none of which changes what is decoded or returned:
``use_frame_cache`` is honoured (1.0.14 filled the cache whatever the flag
said, a bug fixed later upstream, and a cache that is always on would make the
uncached baseline meaningless); randomness comes from a ``numpy.random.Generator``
seeded by ``seed`` instead of the global NumPy state; labels are float32;
``nb_frames=1`` takes the first frame where the original divided by zero;
``logging`` replaces ``print``. Only ``VideoFrameGenerator`` is ported: it is
the one the benchmark compares with.

This module imports Keras at import time; import it lazily from code that
must stay TensorFlow-free.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Sequence
from math import floor
from typing import Any

import cv2
import keras
import numpy as np

log = logging.getLogger(__name__)


def kvg_frame_step(total_frames: int, nb_frames: int) -> int:
    """The original's sampling step: ``floor(even(total) / (nb_frames - 1))``, at least 1."""
    total = total_frames + 1 if total_frames % 2 else total_frames
    return max(1, floor(total / max(1, nb_frames - 1)))


def kvg_selected_indices(
    total_frames: int, nb_frames: int, read_frames: int | None = None
) -> list[int]:
    """0-based indices of the frames the original keeps from a sequential read.

    ``total_frames`` is the count it believes (the header's, or a full count);
    ``read_frames`` is how many frames the file really yields (default: the
    same). The result may hold fewer than ``nb_frames`` indices, in which case
    the original gave up on the video (after a recount).
    """
    read_frames = total_frames if read_frames is None else read_frames
    step = kvg_frame_step(total_frames, nb_frames)
    kept: list[int] = []
    for position in range(1, read_frames + 1):
        if position == 1 or position % step == 0 or position == total_frames:
            kept.append(position - 1)
        if len(kept) == nb_frames:
            break
    return kept


class _ReadStats:
    """Frames the baseline made OpenCV decode and convert (every frame it read)."""

    def __init__(self) -> None:
        self.frames_read = 0
        self.frames_returned = 0

    def reset(self) -> None:
        self.frames_read = 0
        self.frames_returned = 0


def count_frames(
    path: str, force_no_headers: bool = False, *, cap: Any = None, stats: _ReadStats | None = None
) -> int:
    """Frame count as the original found it: the header, or a full read if asked or negative.

    ``cap`` is an open ``cv2.VideoCapture`` of ``path`` to ask for the header
    (the original asked the capture it then read from); the full count opens
    its own capture and decodes every frame.
    """
    total = -1.0
    if not force_no_headers:
        own = cap is None
        cap = cv2.VideoCapture(path) if own else cap
        total = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if own:
            cap.release()
    if total < 0 or force_no_headers:
        counter = cv2.VideoCapture(path)
        total = 0
        while counter.read()[0]:
            total += 1
        counter.release()
        if stats is not None:
            stats.frames_read += int(total)
    return int(total)


def read_clip(
    path: str,
    nb_frames: int,
    target_shape: tuple[int, int],
    *,
    nb_channel: int = 3,
    rescale: float = 1 / 255.0,
    use_headers: bool = True,
    stats: _ReadStats | None = None,
    _counts: dict[str, int] | None = None,
) -> np.ndarray | None:
    """One clip the original's way: float32 ``(nb_frames, H, W, C)``, or None when too short.

    ``target_shape`` is ``(width, height)`` as passed to ``cv2.resize``.
    ``_counts`` memoises header counts per path (the original's
    ``_framecounters``).
    """
    force = not use_headers
    for attempt in range(2):
        cap = cv2.VideoCapture(path)
        if _counts is not None and not force and path in _counts:
            total = _counts[path]
        else:
            total = count_frames(path, force_no_headers=force, cap=cap, stats=stats)
            if _counts is not None:
                _counts[path] = total
        step = kvg_frame_step(total, nb_frames)
        frames: list[np.ndarray] = []
        position = 0
        try:
            while len(frames) < nb_frames:
                grabbed, frame = cap.read()
                if not grabbed:
                    break
                position += 1
                if stats is not None:
                    stats.frames_read += 1
                if position == 1 or position % step == 0 or position == total:
                    frames.append(_convert(frame, target_shape, nb_channel, rescale))
        finally:
            cap.release()
        if len(frames) == nb_frames:
            if stats is not None:
                stats.frames_returned += nb_frames
            return np.array(frames)
        if force or attempt == 1:
            break
        # the header lied (or the file is short): recount by reading everything, then retry
        force = True
    log.error("frame count is not OK for %s: %d of %d frames", path, len(frames), nb_frames)
    return None


def _convert(
    frame: np.ndarray, shape: tuple[int, int], nb_channel: int, rescale: float
) -> np.ndarray:
    frame = cv2.resize(frame, tuple(shape))
    # the original used RGB2GRAY on a BGR frame (red and blue weights swapped); kept as is
    code = cv2.COLOR_BGR2RGB if nb_channel == 3 else cv2.COLOR_RGB2GRAY
    frame = cv2.cvtColor(frame, code)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    return frame.astype(np.float32) * rescale


def _class_regex(glob_pattern: str) -> re.Pattern[str]:
    pattern = re.escape(os.path.realpath(glob_pattern))
    pattern = pattern.replace(r"\*", ".*").replace(r"\{classname\}", "(.*?)")
    return re.compile(pattern)


class KvgVideoFrameGenerator(keras.utils.PyDataset):
    """keras-video-generators' ``VideoFrameGenerator`` data path (see the module doc).

    Same arguments and defaults as the original. Note that ``target_shape`` goes
    to ``cv2.resize`` as is, so it is ``(width, height)`` (frames come out
    ``(height, width)``); fastvid's generators take ``(height, width)``: the two
    agree on square shapes, which is what the benchmark uses. ``files`` (an explicit file
    list, used for validation/test generators) replaces its private
    ``_validation_data``/``_test_data``. ``workers``, ``use_multiprocessing``
    and ``max_queue_size`` go to ``keras.utils.PyDataset``.

    Attributes as the original: ``classes``, ``classes_count``, ``files``,
    ``files_count``, ``nbframe`` (also ``nb_frames``), ``target_shape``,
    ``batch_size``, ``validation``, ``test``; plus ``stats`` (frames read and
    returned) and :attr:`cache_nbytes`.
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
        files: Sequence[str] | None = None,
        split: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if nb_channel not in (1, 3):
            raise ValueError("nb_channel must be 1 or 3")
        if len(target_shape) != 2:
            raise ValueError("target_shape must be (width, height)")
        split_val = split if split_val is None else split_val
        for value in (split_val, split_test):
            if value is not None and not 0.0 < value < 1.0:
                raise ValueError("split factors must be in (0, 1)")
        self.glob_pattern = glob_pattern
        self._rng = np.random.default_rng(seed)
        self.classes = sorted(classes if classes is not None else self._discover_classes())
        if not self.classes:
            log.warning("no classes given or found with pattern %s", glob_pattern)
        self.rescale = rescale
        self.batch_size = batch_size
        self.nbframe = self.nb_frames = nb_frames
        self.shuffle = shuffle
        self.target_shape = tuple(target_shape)
        self.nb_channel = nb_channel
        self.transformation = transformation
        self.use_frame_cache = use_frame_cache
        self.use_video_header = use_headers
        self.stats = _ReadStats()
        self.validation: list[str] = []
        self.test: list[str] = []
        self._cache: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._random_trans: list[Any] = []
        self._regex = _class_regex(glob_pattern)
        if files is not None:
            self.files = list(files)
        else:
            self.files = self._split(split_val or 0.0, split_test or 0.0)
        self.files_count = len(self.files)
        self.classes_count = len(self.classes)
        self.indexes = np.arange(self.files_count)
        self._current = 0
        self.on_epoch_end()
        log.info("%d classes, %d files", self.classes_count, self.files_count)

    # -- dataset discovery, as the original ---------------------------------------------------
    def _discover_classes(self) -> list[str]:
        regex = _class_regex(self.glob_pattern)
        found = set()
        for name in glob.glob(self.glob_pattern.replace("{classname}", "*")):
            match = regex.findall(os.path.realpath(name))
            if match:
                found.add(match[0])
        return list(found)

    def _split(self, split_val: float, split_test: float) -> list[str]:
        files: list[str] = []
        for cls in self.classes:
            class_files = glob.glob(self.glob_pattern.format(classname=cls))
            if not (split_val > 0 or split_test > 0):
                files += class_files
                continue
            indexes = np.arange(len(class_files))
            if self.shuffle:
                self._rng.shuffle(indexes)
            nbval = nbtest = 0
            nbtrain = len(class_files)
            if split_val > 0:
                nbval = int(split_val * len(class_files))
                nbtrain = len(class_files) - nbval
                val = self._rng.permutation(indexes)[:nbval]
                indexes = np.array([i for i in indexes if i not in val])
                self.validation += [class_files[i] for i in val]
            if split_test > 0:
                nbtest = int(split_test * nbtrain)
                test = self._rng.permutation(indexes)[:nbtest]
                indexes = np.array([i for i in indexes if i not in test])
                self.test += [class_files[i] for i in test]
            files += [class_files[i] for i in indexes]
            log.info("class %s: %d validation, %d test, %d train", cls, nbval, nbtest, len(indexes))
        return files

    def _sibling(self, files: list[str]) -> KvgVideoFrameGenerator:
        return self.__class__(
            rescale=self.rescale,
            nb_frames=self.nbframe,
            classes=self.classes,
            batch_size=self.batch_size,
            use_frame_cache=self.use_frame_cache,
            target_shape=self.target_shape,
            shuffle=self.shuffle,
            nb_channel=self.nb_channel,
            glob_pattern=self.glob_pattern,
            use_headers=self.use_video_header,
            files=files,
        )

    def get_validation_generator(self) -> KvgVideoFrameGenerator:
        """A generator over the validation files (no transformation, as the original)."""
        return self._sibling(self.validation)

    def get_test_generator(self) -> KvgVideoFrameGenerator:
        """A generator over the test files."""
        return self._sibling(self.test)

    # -- Keras interface ---------------------------------------------------------------------
    def on_epoch_end(self) -> None:
        """Draw new transformations and reshuffle, as the original (called by Keras)."""
        if self.transformation is not None:
            self._random_trans = [
                self.transformation.get_random_transform(self.target_shape)
                for _ in range(self.files_count)
            ]
        if self.shuffle:
            self._rng.shuffle(self.indexes)

    def __len__(self) -> int:
        return self.files_count // self.batch_size

    @property
    def cache_nbytes(self) -> int:
        """Bytes held by the frame cache (float32 frames at the target size)."""
        return sum(a.nbytes for a in self._cache.values())

    def classname(self, video: str) -> str:
        """The class of a file, found with the glob pattern turned into a regex."""
        return self._regex.findall(os.path.realpath(video))[0]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for i in self.indexes[index * self.batch_size : (index + 1) * self.batch_size]:
            video = self.files[i]
            label = np.zeros(self.classes_count, np.float32)
            label[self.classes.index(self.classname(video))] = 1.0
            frames = self._cache.get(video)
            if frames is None:
                frames = read_clip(
                    video,
                    self.nbframe,
                    self.target_shape,
                    nb_channel=self.nb_channel,
                    rescale=self.rescale,
                    use_headers=self.use_video_header,
                    stats=self.stats,
                    _counts=self._counts,
                )
                if frames is None:
                    continue  # the original's way: the batch shrinks
                if self.use_frame_cache:
                    self._cache[video] = frames
            if self.transformation is not None:
                params = self._random_trans[i]
                frames = np.array([self.transformation.apply_transform(f, params) for f in frames])
            images.append(frames)
            labels.append(label)
        return np.array(images), np.array(labels)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch, wrapping around (and ending the epoch) as the original.

        Iterating (``for x, y in gen``) is Keras' finite pass over one epoch,
        where the original iterated forever.
        """
        batch = self[self._current]
        self._current += 1
        if self._current == len(self):
            self._current = 0
            self.on_epoch_end()
        return batch

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.next()

"""The clip loader: files and labels in, batches of clips out. No Keras in here.

:class:`ClipLoader` composes the steps of the data flow, one module each::

    fastvid.sampling  which frames each sample takes   (a Sampler, pure)
    fastvid.reader    decoding: read_clips, in a thread pool
    fastvid.cache     uint8 frames at the target size, LRU, bounded
    fastvid.ops       prepare (colour, resize, augmentation, rescale), motion, on a backend
    fastvid.augment   the user's transformation, one draw per sequence

and owns only what sits between them: the table of usable videos and their
samples, the epoch order, the failure policy and the seeds. Batch ``i`` of
epoch ``e`` is a pure function of ``(seed, e, i)``: shuffling, augmentation and
random clips repeat with the same seed, and every epoch draws anew.

The front-ends (:mod:`fastvid.keras`, :mod:`fastvid.torch`, :mod:`fastvid.grain`,
:mod:`fastvid.tfdata`) only translate their ecosystem's conventions into a
loader.

Nothing is dropped silently: every file is probed once when the loader is built
(in parallel; a progress bar from 500 files on); unreadable and short videos
follow ``short_video`` (left out with one warning and a count, padded, or
raised); a file that fails to decode mid-epoch is named in a warning and its
samples go to the next samples of the epoch, so no batch shrinks. Only a
:class:`fastvid.VideoError` (or an ``IndexError`` naming a file) counts as a bad
file: any other exception is a bug and propagates.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fastvid import _checks, _runtime, ops, sampling
from fastvid._frames import FrameSource
from fastvid._table import DatasetState, FileTable, Video, probe_files
from fastvid.augment import SequenceTransform, make_transform
from fastvid.cache import FrameCache, default_cache_bytes
from fastvid.errors import VideoError
from fastvid.ops.affine import AugmentParams
from fastvid.reader import SEEK_MODES

log = logging.getLogger(__name__)

__all__ = ["ClipLoader", "LoaderOptions", "MotionOptions", "Video", "derive_seed"]

LABEL_MODES = ("categorical", "int", None)

# purposes mixed into the per-epoch / per-batch seeds, so each stream is independent
_SHUFFLE, _AUGMENT, _TRANSFORM, _CLIP = 1, 2, 3, 4


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integers (the loader's independent random streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@dataclass(frozen=True)
class MotionOptions:
    """Motion images instead of frames (keras-video-generators' ``OpticalFlowGenerator``):
    ``method`` between consecutive decoded frames, and Farneback's parameters."""

    method: int | str = ops.METHOD_OPTICAL_FLOW
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    flow: Literal["farneback", "dis"] = "farneback"

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", ops.motion_method(self.method).code)


@dataclass(frozen=True)
class LoaderOptions:
    """What a :class:`ClipLoader` makes of its files; see :class:`ClipLoader` for each."""

    num_frames: int
    size: tuple[int, int]
    batch_size: int = 16
    aspect: Literal["stretch", "crop", "pad"] = "stretch"
    sampler: str | sampling.Sampler = "uniform"
    sampler_options: tuple[tuple[str, Any], ...] = ()
    color: Literal["rgb", "gray"] = "rgb"
    rescale: float = 1 / 255
    augment: AugmentParams | None = None
    transformation: Any = None
    motion: MotionOptions | None = None
    shuffle: bool = True
    seed: int = 0
    label_mode: Literal["categorical", "int"] | None = "categorical"
    seek_mode: Literal["exact", "keyframe"] = "exact"
    short_video: str = "skip"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    verify: bool = False

    def __post_init__(self) -> None:
        _checks.positive_int(self.num_frames, "num_frames")
        object.__setattr__(self, "size", _checks.size_hw(self.size, "size"))
        _checks.positive_int(self.batch_size, "batch_size")
        _checks.one_of(self.color, "color", ("rgb", "gray"))
        _checks.one_of(self.aspect, "aspect", ops.ASPECTS)
        _checks.one_of(self.label_mode, "label_mode", LABEL_MODES)
        _checks.one_of(self.seek_mode, "seek_mode", SEEK_MODES)
        sampling.short_video_policy(self.short_video)
        if self.augment is not None and not isinstance(self.augment, AugmentParams):
            raise TypeError(f"augment must be fastvid.AugmentParams, got {type(self.augment)}")
        if not _checks.is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: {self.seed!r}")


class ClipLoader:
    """Batches ``(x, y)`` of clips from files and labels, as NumPy or device arrays.

    ``x`` is float32 ``(B, F, H, W, C)``: ``F = num_frames`` frames (with
    ``motion``, ``num_frames - 1`` motion images), ``(H, W) = size``, ``C`` 3 for
    RGB, 1 for gray (2 for raw flow). ``y`` is one-hot float32 ``(B, classes)``
    (``label_mode="categorical"``), int32 class indices (``"int"``), or absent
    (``None``: batches are ``x`` alone).

    Args:
        files: ``(path, class index)`` pairs, in the order samples are numbered.
        classes: the class names; index ``k`` is ``classes[k]``.
        num_frames: frames each sample decodes.
        size: ``(height, width)`` of the frames; the decoder resizes to it.
        batch_size: samples per batch (the last batch of an epoch holds the rest).
        aspect: ``"stretch"`` (each axis scaled to ``size``), ``"crop"`` (the largest
            centred window of ``size``'s shape) or ``"pad"`` (the whole picture, zeros
            around): Keras's ``crop_to_aspect_ratio`` / ``pad_to_aspect_ratio``.
        sampler: a name of :data:`fastvid.sampling.SAMPLERS` (``"uniform"``,
            ``"sliding"``, ``"random_clip"``) or a :class:`fastvid.sampling.Sampler`;
            ``sampler_options`` go to the named one (``sequence_time``, ``frame_step``).
        color: ``"rgb"`` or ``"gray"``.
        rescale: multiplies pixel values (1/255 -> [0, 1]).
        augment: :class:`fastvid.AugmentParams`: one warp pass of the frames on the
            compute backend, one draw per sequence.
        transformation: a Keras layer or ``Sequential``, an ``ImageDataGenerator``
            or ``fn(frames) -> frames`` (:mod:`fastvid.augment`), on [0, 255] frames.
        motion: :class:`MotionOptions`: motion images between consecutive frames.
        shuffle: a new sample order every epoch (from ``seed``).
        seed: the root of every random stream.
        label_mode: ``"categorical"``, ``"int"`` or None.
        seek_mode: ``"exact"`` or ``"keyframe"`` (nearest keyframes: much faster on
            long videos).
        short_video: what happens to videos shorter than a sample needs and to
            unreadable files (:data:`fastvid.sampling.SHORT_VIDEO_POLICIES`).
        cache: a :class:`fastvid.cache.FrameCache` (shared with :meth:`subset` loaders),
            a byte bound for a new one (0: a quarter of the RAM), or None.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; threads: decoding threads per batch.
        verify: decode every file fully when indexing it (``VideoReader(verify=True)``).
        name: how logs and errors name this loader.
    """

    def __init__(
        self,
        files: Sequence[tuple[str, int]],
        *,
        classes: Sequence[str],
        cache: FrameCache | int | None = None,
        name: str = "ClipLoader",
        _state: DatasetState | None = None,
        **options: Any,
    ) -> None:
        if isinstance(options.get("sampler_options"), dict):
            options["sampler_options"] = tuple(sorted(options["sampler_options"].items()))
        self.options = opts = LoaderOptions(**options)
        self.name = name
        self._sampler = sampling.make_sampler(
            opts.sampler, opts.num_frames, **dict(opts.sampler_options)
        )
        self._transform: SequenceTransform | None = make_transform(opts.transformation)
        self._backend = ops.get_backend(opts.device)  # before any file is opened: fail fast
        self._input_format = self._backend.input_format(*opts.size)
        if _state is None:
            if not isinstance(cache, FrameCache | None):
                cache = FrameCache(int(cache) or default_cache_bytes())
            probes = probe_files([str(p) for p, _ in files], opts.threads, opts.verify)
            _state = DatasetState(list(classes), probes, cache)
        self._state = _state
        policy = sampling.short_video_policy(opts.short_video)
        self._table = FileTable(files, _state, self._sampler, policy, name, opts.verify)
        self._frames = FrameSource(
            _state,
            size=opts.size,
            input_format=self._input_format,
            seek_mode=opts.seek_mode,
            threads=opts.threads,
            verify=opts.verify,
            policy=policy,
            skipped=self.skipped,
            aspect=opts.aspect,
        )
        self._epoch = 0
        self._order = self.epoch_order(0)
        self._other_order: tuple[int, np.ndarray] | None = None
        self._prefetch = _Prefetch()
        _runtime.reset_after_fork(self)

    @classmethod
    def from_source(
        cls,
        source: Any,
        *,
        labels: Sequence[str | int] | None = None,
        classes: Sequence[str] | None = None,
        **options: Any,
    ) -> ClipLoader:
        """A loader of the files of ``source``: a folder with one sub-folder per class, a
        glob with ``{classname}``, a CSV of ``path,label`` rows, or a list of paths with
        ``labels`` (:func:`fastvid.dataset.discover`). ``options`` as for the loader."""
        from fastvid.dataset import discover  # noqa: PLC0415

        files, names = discover(source, labels, classes=classes)
        if any(label < 0 for _, label in files):
            options.setdefault("label_mode", None)
            if options["label_mode"] is not None:
                raise ValueError(f"{source}: the videos have no labels; pass label_mode=None")
            files = [(p, 0) for p, _ in files]
        return cls(files, classes=names, **options)

    def subset(self, files: Sequence[tuple[str, int]], name: str, **changes: Any) -> ClipLoader:
        """A loader of other files of the same dataset: probes, frame cache and the
        record of bad files are shared; ``changes`` replace options (e.g. no augmentation)."""
        options = {f: getattr(self.options, f) for f in LoaderOptions.__dataclass_fields__}
        options.update(changes)
        return ClipLoader(files, classes=self.classes, name=name, _state=self._state, **options)

    # ----------------------------------------------------------------- the table

    @property
    def classes(self) -> list[str]:
        return list(self._state.classes)

    @property
    def cache(self) -> FrameCache | None:
        """The frame cache (shared with :meth:`subset` loaders), or None."""
        return self._state.cache

    sampler = property(lambda self: self._sampler, doc="The :class:`Sampler` in use.")

    @property
    def videos(self) -> list[Video]:
        """The usable videos, in the order their samples are numbered."""
        return self._table.videos

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out, with the reason: unreadable, too short, or failed while decoding."""
        return self._table.skipped

    @property
    def samples_count(self) -> int:
        return self._table.samples_count

    def keep_files(self, paths: Sequence[str]) -> None:
        """Keep only these of the loader's files (removing, never adding) and renumber."""
        self._prefetch.cancel()
        self._table.keep(paths)
        self._order = self.epoch_order(self._epoch)
        self._other_order = None

    # ----------------------------------------------------------------- epochs

    @property
    def epoch(self) -> int:
        """The epoch batches are drawn for (``next_epoch`` advances it; settable)."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        if not _checks.is_int(value) or value < 0:
            raise ValueError(f"epoch must be a non-negative integer. Received: {value!r}")
        self._prefetch.cancel()
        self._epoch = int(value)
        self._order = self.epoch_order(self._epoch)

    def next_epoch(self) -> None:
        """Reshuffle and draw new augmentations (and random clips) for the next epoch."""
        self.epoch = self._epoch + 1

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Sample numbers in the order of ``epoch``."""
        if not self.options.shuffle:
            return np.arange(self.samples_count)
        rng = np.random.default_rng(derive_seed(self.options.seed, epoch, _SHUFFLE))
        return rng.permutation(self.samples_count)

    order = property(lambda self: self._order, doc="Sample numbers in this epoch's order.")

    def order_of(self, epoch: int) -> np.ndarray:
        """Sample numbers in the order of ``epoch`` (:meth:`epoch_order`, kept for the
        current epoch and the last other one asked: front-ends ask once per item)."""
        if epoch == self._epoch:
            return self._order
        kept = self._other_order
        if kept is None or kept[0] != epoch:
            kept = self._other_order = (epoch, self.epoch_order(epoch))
        return kept[1]

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:
        """``(F, H, W, C)`` of one sample's ``x``."""
        motion = self.options.motion
        frames = self._sampler.count - (motion is not None)
        if motion is not None and motion.method == ops.METHOD_FLOW_RAW:
            channels = 2
        else:
            channels = 3 if self.options.color == "rgb" else 1
        return (frames, *self.options.size, channels)

    def __len__(self) -> int:
        return math.ceil(self.samples_count / self.options.batch_size)

    def sample_request(self, sample: int, epoch: int | None = None) -> tuple[str, list[int]]:
        """``(path, frame indices)`` of sample number ``sample`` (before shuffling)."""
        rng = None
        if self._sampler.random:
            epoch = self._epoch if epoch is None else epoch
            rng = np.random.default_rng(derive_seed(self.options.seed, epoch, sample, _CLIP))
        return self._table.request(sample, rng)

    # ----------------------------------------------------------------- batches

    def batch(self, index: int, *, epoch: int | None = None, prefetch: bool = False) -> Any:
        """Batch ``index`` of the current epoch: ``(x, y)``, or ``x`` with ``label_mode=None``.

        ``epoch``: of that epoch instead (its order and draws), for front-ends that
        count epochs themselves; the loader's own epoch does not change.
        ``prefetch``: also start building batch ``index + 1`` in the background
        (when batches are read in order; a waiting batch is used when asked for).
        """
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"batch {index} out of range ({n} batches)")
        if epoch is not None and epoch != self._epoch:
            return self._make_batch(index, epoch, self.order_of(epoch))
        if not prefetch:
            return self._make_batch(index, self._epoch, self._order)
        return self._prefetch.get(self, index, n)

    __getitem__ = batch  # a loader reads like a Keras PyDataset: loader[i] is batch i

    def sample(self, sample: int, epoch: int | None = None) -> Any:
        """One sample, ``(frames, label)`` (``frames`` alone with ``label_mode=None``), for
        front-ends that batch themselves: ``frames`` is ``(F, H, W, C)``."""
        if not 0 <= sample < self.samples_count:
            raise IndexError(f"sample {sample} out of range ({self.samples_count} samples)")
        epoch = self._epoch if epoch is None else epoch
        out = self._build([(np.arange(self.samples_count), sample)], epoch, sample)
        if self.options.label_mode is None:
            return out[0]
        x, y = out
        return x[0], y[0]

    def _make_batch(self, index: int, epoch: int, order: np.ndarray) -> Any:
        """Batch ``index`` of ``epoch`` (``order`` is that epoch's sample order)."""
        size = self.options.batch_size
        positions = range(index * size, min((index + 1) * size, len(order)))
        return self._build([(order, p) for p in positions], epoch, index)

    def _build(self, picks: list[tuple[np.ndarray, int]], epoch: int, key: int) -> Any:
        """The batch of the samples at ``picks`` (an order and a position in it each)."""
        for _attempt in range(len(self.videos) + 1):
            samples = [self._table.pick(order, pos) for order, pos in picks]
            clips = self._frames.load([self.sample_request(s, epoch) for s in samples])
            if clips is not None:
                break  # else a file went bad: pick again, stepping over it
        else:  # pragma: no cover - every file went bad mid-epoch
            raise VideoError(self.name, "no readable video left")
        x = _process(self, clips, epoch, key)
        labels = [self._table.video_of(s).label for s in samples]
        if self.options.label_mode is None:
            return x
        if self.options.label_mode == "int":
            return x, np.asarray(labels, np.int32)
        y = np.zeros((len(samples), len(self._state.classes)), np.float32)
        y[np.arange(len(samples)), labels] = 1.0
        return x, y

    # ----------------------------------------------------------------- pickling

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_prefetch": None}  # to a worker process: no thread

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._after_fork()
        _runtime.reset_after_fork(self)

    def _after_fork(self) -> None:
        self._prefetch = _Prefetch()  # a worker process starts with no prefetch thread

    def __repr__(self) -> str:
        return (
            f"<ClipLoader {self.name}: {len(self.videos)} files, {self.samples_count} "
            f"samples, {len(self)} batches of {self.options.batch_size}>"
        )


def _process(loader: ClipLoader, clips: list[np.ndarray], epoch: int, key: int) -> Any:
    """uint8 clips -> the batch's ``x``: prepare, the user's transformation, motion."""
    opts, backend = loader.options, loader._backend
    transform, motion = loader._transform, opts.motion
    # transformations see [0, 255]; motion wants [0, 1]: rescale at the end then
    before_motion = 1 / 255.0 if motion is not None else opts.rescale
    x = ops.prepare(
        clips,
        size=opts.size,
        color=opts.color,
        rescale=1.0 if transform is not None else before_motion,
        augment=None if opts.augment is None or opts.augment.is_identity else opts.augment,
        seed=derive_seed(opts.seed, epoch, key, _AUGMENT),
        input_format=loader._input_format,
        aspect=opts.aspect,
        device=opts.device,
    )
    if transform is not None:
        if _runtime.forked_child():
            _check_fork_safe(transform)
        x = transform(backend.to_host(x), derive_seed(opts.seed, epoch, key, _TRANSFORM))
        x = _scale(x, before_motion)
    if motion is not None:
        x = ops.motion(
            x,
            motion.method,
            levels=motion.levels,
            winsize=motion.winsize,
            iterations=motion.iterations,
            flow=motion.flow,
            device=opts.device,
        )
        x = _scale(x, opts.rescale * 255.0)
    return backend.hand_off(x) if backend.owns(x) else x


def _scale(x: Any, factor: float) -> Any:
    if abs(factor - 1.0) < 1e-12:
        return x
    x *= np.float32(factor)
    return x


def _check_fork_safe(transform: SequenceTransform) -> None:
    from fastvid.augment import FORK_ALTERNATIVES, fork_unsafe  # noqa: PLC0415

    unsafe = fork_unsafe(transform)
    if unsafe:
        raise RuntimeError(f"{unsafe}, and this is a forked process: {FORK_ALTERNATIVES}")


class _Prefetch:
    """Builds the next batch in a background thread while the model uses this one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[np.ndarray, int, Future] | None = None
        self._last: int | None = None

    def cancel(self) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending[2].cancel()
            self._pending = None
            self._last = None

    def get(self, loader: ClipLoader, index: int, n: int) -> Any:
        with self._lock:
            epoch, order = loader.epoch, loader.order
            pending, self._pending = self._pending, None
            in_order = self._last is None or index == self._last + 1
            self._last = index
        # a pending batch is valid for the same order (epoch and file list) and index
        if pending is not None and pending[0] is order and pending[1] == index:
            batch = pending[2].result()
        else:
            if pending is not None:
                pending[2].cancel()
            batch = loader._make_batch(index, epoch, order)
        if in_order and index + 1 < n:
            future = _runtime.pool("prefetch", 1).submit(
                loader._make_batch, index + 1, epoch, order
            )
            with self._lock:
                if loader.order is order:
                    self._pending = (order, index + 1, future)
                else:
                    future.cancel()
        return batch

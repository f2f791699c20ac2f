"""The table behind a loader: which files are usable, and which samples they give.

Every file is probed once (frame count and rate, from its packet index, in
parallel; a progress bar from 500 files on). Unreadable and short videos
follow the short-video policy: left out with one warning and a count, kept
(their samples padded), or raised. The samples of the usable videos are
numbered in file order: sample ``s`` is window ``sample_index[s]`` of video
``sample_video[s]``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastvid import _runtime, sampling
from fastvid.cache import FrameCache
from fastvid.errors import VideoError, VideoTooShortError
from fastvid.reader import VideoReader

log = logging.getLogger(__name__)

_SHOW = 5  # how many file names a warning lists
_PROGRESS_MIN_FILES = 500  # index this many files or more: a progress bar on stderr

Probe = tuple[int, float, int, int] | str  # (frames, fps, height, width), or why it is unreadable


def names(paths: Sequence[str]) -> str:
    """The first few of ``paths`` and how many more, for a log line."""
    shown = ", ".join(paths[:_SHOW])
    return shown + (f" and {len(paths) - _SHOW} more" if len(paths) > _SHOW else "")


@dataclass(frozen=True)
class Video:
    """A usable file: its path, class index, frame count, rate and displayed size."""

    path: str
    label: int
    num_frames: int
    fps: float
    height: int = 0
    width: int = 0

    @property
    def info(self) -> sampling.VideoInfo:
        return sampling.VideoInfo(self.num_frames, self.fps, self.path)


@dataclass(eq=False)  # compared by identity: weakly tracked for fork resets
class DatasetState:
    """What the loaders of one dataset share (the train, validation and test parts):
    the probes, the frame cache and the files found bad while decoding."""

    classes: list[str]
    probes: dict[str, Probe]
    cache: FrameCache | None
    bad: dict[str, str] = field(default_factory=dict)
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


def probe(path: str, verify: bool = False) -> Probe:
    """(frame count, fps, displayed height and width) of a file, or the reason it
    cannot be read (a VideoError's)."""
    try:
        with VideoReader(path, verify=verify) as reader:
            meta = reader.metadata
    except VideoError as err:  # the file's fault; anything else is not, and propagates
        return err.reason
    if meta.num_frames <= 0:
        return "no video frames"
    return int(meta.num_frames), float(meta.fps or 0.0), int(meta.height), int(meta.width)


def probe_files(
    paths: Sequence[str], threads: int | None = None, verify: bool = False
) -> dict[str, Probe]:
    """``{path: (frames, fps, height, width) or the reason it is unreadable}``, in parallel."""
    if not paths:
        return {}
    from tqdm import tqdm  # noqa: PLC0415

    workers = max(1, min(len(paths), threads or _runtime.default_threads()))
    jobs = _runtime.pool("probe", workers).map(lambda p: probe(p, verify), paths)
    # a large dataset takes a while to index the first time: show it
    probes = tqdm(
        jobs,
        total=len(paths),
        desc="fastvid: indexing videos",
        unit="file",
        disable=len(paths) < _PROGRESS_MIN_FILES,
        leave=False,
    )
    return dict(zip(paths, probes, strict=True))


class FileTable:
    """The usable videos of ``files`` and the samples ``sampler`` makes of them."""

    def __init__(
        self,
        files: Sequence[tuple[str, int]],
        state: DatasetState,
        sampler: sampling.Sampler,
        policy: sampling.ShortVideoPolicy,
        name: str,
        verify: bool = False,
    ) -> None:
        self.state, self.sampler, self.policy, self.name = state, sampler, policy, name
        self._verify = verify
        self.skipped: dict[str, str] = {}
        self._warned_substitute = False
        self.videos = self._usable([(str(p), int(label)) for p, label in files])
        self._number_samples()

    def _probe(self, path: str) -> Probe:
        found = self.state.probes.get(path)
        if found is None:  # a file the dataset did not probe up front
            found = self.state.probes[path] = probe(path, self._verify)
        return found

    def _usable(self, files: list[tuple[str, int]]) -> list[Video]:
        unreadable: list[tuple[str, str]] = []
        short: list[str] = []
        videos: list[Video] = []
        for path, label in files:
            found = self._probe(path)
            try:
                if isinstance(found, str):
                    raise VideoError(path, found)
                video = Video(path, label, *found)
                needed = self.sampler.span(video.info)  # may need an fps the file lacks
            except VideoError as err:
                if self.policy.fail:
                    raise
                unreadable.append((path, err.reason))
                continue
            if video.num_frames < needed:
                if self.policy.fail:
                    raise VideoTooShortError(
                        path,
                        f"{video.num_frames} frames, fewer than the {needed} a sample "
                        "needs (short_video='raise')",
                        video.num_frames,
                        needed,
                    )
                if not self.policy.keep:
                    short.append(path)
                    continue
            videos.append(video)
        self._report(len(files), unreadable, short)
        if not videos and files:
            raise ValueError(f"{self.name}: no usable video left")
        return videos

    def _report(self, total: int, unreadable: list[tuple[str, str]], short: list[str]) -> None:
        if unreadable:
            log.warning(
                "%s: %d of %d files cannot be read and are left out: %s",
                self.name,
                len(unreadable),
                total,
                names([f"{p} ({why})" for p, why in unreadable]),
            )
            self.skipped.update(unreadable)
        if short:
            log.warning(
                "%s: %d of %d videos are shorter than a sample needs and are skipped "
                "(short_video='skip'; 'repeat_last' or 'loop' pads them instead): %s",
                self.name,
                len(short),
                total,
                names(short),
            )
            self.skipped.update({p: "too short" for p in short})

    def _number_samples(self) -> None:
        counts = np.array([self.sampler.num_samples(v.info) for v in self.videos], np.int64)
        self.sample_video = np.repeat(np.arange(len(self.videos)), counts)
        starts = [np.arange(c) for c in counts]
        self.sample_index = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.samples_count = int(counts.sum())

    def keep(self, paths: Sequence[str]) -> None:
        """Keep only these of the files (removing, never adding) and number the samples anew."""
        wanted = {str(p) for p in paths}
        unknown = wanted - {v.path for v in self.videos}
        if unknown:
            raise ValueError(f"files can only be removed, not added: {names(sorted(unknown))}")
        self.videos = [v for v in self.videos if v.path in wanted]
        self._number_samples()

    def video_of(self, sample: int) -> Video:
        return self.videos[int(self.sample_video[sample])]

    def request(self, sample: int, rng: np.random.Generator | None) -> tuple[str, list[int]]:
        """``(path, frame indices)`` of ``sample``; short videos padded by the policy."""
        video = self.video_of(sample)
        info = video.info
        indices = self.sampler.indices(info, int(self.sample_index[sample]), rng)
        if video.num_frames < self.sampler.span(info) or max(indices) >= video.num_frames:
            indices = sampling.pad_indices(indices, video.num_frames, self.policy.name)
        return video.path, indices

    def pick(self, order: np.ndarray, pos: int) -> int:
        """The sample at ``pos`` of ``order``, stepping over samples of files gone bad."""
        bad = self.state.bad
        for step in range(len(order)):
            sample = int(order[(pos + step) % len(order)])
            if self.video_of(sample).path not in bad:
                if step and not self._warned_substitute:
                    self._warned_substitute = True
                    log.warning(
                        "%s: samples of unreadable files are replaced by the next "
                        "samples of the epoch, so batches keep their size",
                        self.name,
                    )
                return sample
        raise VideoError(self.name, "every video of this loader is unreadable")

"""Seeded fuzzing of :class:`fastvid.VideoReader` against damaged files.

The promise under test (``DESIGN.md``, "Decoding" and "Errors and bad input"):
for any input file the reader never crashes the interpreter, never hangs,
raises only :class:`fastvid.VideoError` (``IndexError`` / ``ValueError`` /
``TypeError`` are for bad arguments, which this harness never passes), and in
exact mode ``get_frames([i])`` equals ``get_frames(range(n))[i]`` and both equal
the i-th frame of a plain sequential PyAV decode, or a ``VideoError`` says why.

How a run goes:

- **sources**: small generated files, one per codec/container of the test
  suite's table (:data:`SYNTH_SPECS` mirrors ``SPECS`` of
  ``tests/test_reader.py``; files whose encoder this machine lacks are skipped),
  plus every file of ``../shared/videos`` when that folder exists;
- **mutations**: small JSON-able dicts (:func:`draw_mutation`,
  :func:`apply_mutation`) drawn from a seed, so a case is reproduced from its
  *spec* ``{"source": ..., "mutation": {...}, "seed": ...}`` alone;
- **one case, one process** (:func:`run_case`) with a time limit: a negative
  exit status is a crash, a timeout a hang. By default each case's process is
  forked from a small single-threaded server that imported NumPy, PyAV and the
  reader once (``launcher="fork"``, a few ms per case); ``launcher="exec"``
  starts a new interpreter per case instead (~0.4 s each; same outcomes). On a
  crash or hang the report shows the phase it happened in and the
  ``faulthandler`` stack. The child (:func:`evaluate`)
  decodes the reference (:func:`reference_decode`), reads a seeded sample of
  single frames from one reader (one call each, in random order), then
  ``get_frames(range(n))`` from a fresh reader, and sends back digests of
  every picture; the parent compares them (:func:`classify`).

Outcomes (:data:`OUTCOMES`): ``ok``, ``videoerror`` (a legitimate refusal),
``index_error`` (an IndexError for an index valid when the reader opened, after
the reader revised its frame count down on meeting damage), ``count_mismatch``
(fastvid's last count is above the number of frames the reference decodes),
and the violations ``frames_lost`` (fewer frames than the reference: nothing
may be lost silently), ``wrong_frame``, ``other_exception``, ``crash`` and
``hang``. ``harness_error`` means the harness itself failed on a case (the
reference decode crashed, the child died outside the reader): never expected,
always reported.

``bench/fuzz.py`` is the command line (the long run, and ``--replay SPEC`` to
rerun one case in-process); ``tests/test_fuzz.py`` a bounded seeded run.
Nothing heavy happens at import time: PyAV and the reader are imported where
they are used.
"""

from __future__ import annotations

import faulthandler
import fnmatch
import hashlib
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- outcomes

OK = "ok"
VIDEOERROR = "videoerror"
RESIZED = "resized"
COUNT_MISMATCH = "count_mismatch"
INDEX_ERROR = "index_error"
FRAMES_LOST = "frames_lost"
WRONG_FRAME = "wrong_frame"
OTHER_EXCEPTION = "other_exception"
CRASH = "crash"
HANG = "hang"
HARNESS_ERROR = "harness_error"

OUTCOMES = (
    OK,
    VIDEOERROR,
    INDEX_ERROR,
    COUNT_MISMATCH,
    RESIZED,  # legitimate, or not a broken promise
    FRAMES_LOST,
    WRONG_FRAME,
    OTHER_EXCEPTION,
    CRASH,
    HANG,  # violations
    HARNESS_ERROR,
)
VIOLATIONS = frozenset({FRAMES_LOST, WRONG_FRAME, OTHER_EXCEPTION, CRASH, HANG})
# what makes a run fail: the violations, and any case the harness could not judge
FAILURES = VIOLATIONS | {HARNESS_ERROR}

DEFAULT_TIMEOUT = 30.0
DEFAULT_SINGLES = 8
DEFAULT_JOBS = 2
# a source's mutated cases may take this many times as long as its clean case did
# (a slow file is not a hang) before the timeout applies
SLOW_FACTOR = 8.0
DEFAULT_MEM_LIMIT_MB = 8192  # address-space limit of a case's process (0: none)
# get_frames(range(n)) is done in chunks when the whole video would exceed this
MAX_RANGE_BYTES = 2 << 30

_PHASE_PREFIX = "fuzz-phase: "
_STDERR_TAIL = 4000

# ---------------------------------------------------------------------- sources

_VFR_PTS = [int(p) for p in np.cumsum(np.random.default_rng(7).integers(1, 6, size=50))]

# name -> (file name, make_video arguments): the codecs and containers of SPECS in
# tests/test_reader.py (tests/test_fuzz.py checks the two tables name the same cases),
# with the long-GOP clip shortened so that every source decodes in well under a second
SYNTH_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "h264_bframes_mp4": ("h264_bf3.mp4", dict(num_frames=48, gop=12, bframes=3)),
    "mpeg4_avi": ("mpeg4.avi", dict(num_frames=48, codec="mpeg4", gop=12)),
    "mpeg4_bframes_avi": ("mpeg4_bf2.avi", dict(num_frames=50, codec="mpeg4", gop=12, bframes=2)),
    "mjpeg_avi": ("mjpeg.avi", dict(num_frames=30, codec="mjpeg")),
    "mpeg2_ts": ("mpeg2.ts", dict(num_frames=48, codec="mpeg2video", gop=12, bframes=2)),
    "hevc_bframes_mp4": ("hevc.mp4", dict(num_frames=48, codec="libx265", gop=24, bframes=3)),
    "vp9_webm": ("vp9.webm", dict(num_frames=48, codec="libvpx-vp9", gop=12)),
    "vfr_mkv": (
        "vfr.mkv",
        dict(num_frames=50, gop=12, bframes=2, pts=_VFR_PTS, time_base=Fraction(1, 100)),
    ),
    "audio_first_mkv": ("audio_first.mkv", dict(num_frames=40, bframes=2, audio_first=True)),
    "audio_first_mp4": ("audio_first.mp4", dict(num_frames=40, bframes=2, audio_first=True)),
    "start_pts_mp4": (
        "start100.mp4",
        dict(num_frames=40, bframes=2, pts=list(range(100, 140)), time_base=Fraction(1, 25)),
    ),
    "negative_pts_mp4": (
        "negative.mp4",
        dict(num_frames=40, bframes=2, pts=list(range(-10, 30)), time_base=Fraction(1, 25)),
    ),
    "start_pts_ts": ("start.ts", dict(num_frames=40, gop=12, bframes=2)),
    "gop1_mp4": ("gop1.mp4", dict(num_frames=30, gop=1)),
    "gop250_mp4": ("gop250.mp4", dict(num_frames=60, gop=250, bframes=3)),
    "raw_h264": ("raw.h264", dict(num_frames=40, gop=12, bframes=2)),
}

SYNTH = "synth"
REAL = "real"
FILE = "file"


@dataclass(frozen=True)
class Source:
    """One clean input file. ``name`` is ``synth:<spec>``, ``real:<file>`` or ``file:<path>``."""

    name: str
    path: Path

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def repo_root() -> Path:
    """The checkout this module belongs to (the folder holding ``fastvid/``)."""
    return Path(__file__).resolve().parents[2]


def shared_videos_dir() -> Path | None:
    """``../shared/videos`` beside the checkout (as ``tests/conftest.py`` finds it), or None."""
    path = repo_root().parent / "shared" / "videos"
    return path if path.is_dir() else None


def default_work_dir() -> Path:
    """Where generated sources are cached: ``$FASTVID_FUZZ_DATA`` or ~/.cache/fastvid/fuzz."""
    env = os.environ.get("FASTVID_FUZZ_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastvid" / "fuzz"


def _spec_tag(kwargs: Mapping[str, Any]) -> str:
    text = json.dumps({k: str(v) for k, v in sorted(kwargs.items())})
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def make_synth_sources(
    directory: str | os.PathLike[str], names: Iterable[str] | None = None
) -> list[Source]:
    """Encode (or reuse) the generated sources ``names`` (default: all of :data:`SYNTH_SPECS`).

    Files already present are kept: their names carry a digest of the encoding
    arguments. A spec whose encoder this machine lacks is skipped with a warning.
    """
    from fastvid.synth import make_video

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out: list[Source] = []
    for name in SYNTH_SPECS if names is None else names:
        fname, kwargs = SYNTH_SPECS[name]
        stem, suffix = os.path.splitext(fname)
        path = directory / f"{stem}-{_spec_tag(kwargs)}{suffix}"
        if not (path.is_file() and path.stat().st_size > 0):
            partial = path.with_name(f"{stem}-partial-{os.getpid()}{suffix}")
            kw = dict(kwargs)
            try:
                make_video(partial, kw.pop("num_frames"), **kw)
            except Exception as exc:  # no encoder for this codec here: skip that source
                log.warning("cannot make source %s (%s): %s", name, fname, exc)
                partial.unlink(missing_ok=True)
                continue
            os.replace(partial, path)
        out.append(Source(f"{SYNTH}:{name}", path))
    return out


def real_sources(
    directory: str | os.PathLike[str] | None = None, names: Iterable[str] | None = None
) -> list[Source]:
    """The files of ``../shared/videos`` (or ``directory``), all or ``names``; [] when absent."""
    folder = Path(directory) if directory is not None else shared_videos_dir()
    if folder is None or not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() != ".md")
    if names is not None:
        wanted = set(names)
        files = [p for p in files if p.name in wanted]
    return [Source(f"{REAL}:{p.name}", p) for p in files]


def all_sources(work_dir: str | os.PathLike[str] | None = None) -> list[Source]:
    """Every generated source this machine can encode, then every shared real file."""
    return make_synth_sources(work_dir or default_work_dir()) + real_sources()


def select_sources(sources: Sequence[Source], patterns: Sequence[str] | None) -> list[Source]:
    """The sources whose name matches one of the glob ``patterns`` (``synth:*``, ``real:*.avi``).

    A bare ``synth`` or ``real`` means all of that kind; a pattern that names an
    existing file adds it as a ``file:`` source.
    """
    if not patterns:
        return list(sources)
    chosen: dict[str, Source] = {}
    for pattern in patterns:
        if pattern in (SYNTH, REAL):
            pattern += ":*"
        matched = [s for s in sources if fnmatch.fnmatchcase(s.name, pattern)]
        if not matched and Path(pattern).is_file():
            matched = [Source(f"{FILE}:{Path(pattern).resolve()}", Path(pattern).resolve())]
        if not matched:
            raise ValueError(f"no source matches {pattern!r}")
        for s in matched:
            chosen.setdefault(s.name, s)
    return list(chosen.values())


def resolve_source(name: str, work_dir: str | os.PathLike[str] | None = None) -> Source:
    """The :class:`Source` a reproduction spec names (generating it if needed)."""
    kind, _, rest = name.partition(":")
    if kind == SYNTH:
        if rest not in SYNTH_SPECS:
            raise ValueError(f"unknown generated source {rest!r}; known: {sorted(SYNTH_SPECS)}")
        found = make_synth_sources(work_dir or default_work_dir(), [rest])
        if not found:
            raise ValueError(f"this machine cannot encode {name}")
        return found[0]
    if kind == REAL:
        found = real_sources(names=[rest])
        if not found:
            raise ValueError(f"{rest} not found in {shared_videos_dir() or '../shared/videos'}")
        return found[0]
    if kind == FILE and Path(rest).is_file():
        return Source(name, Path(rest))
    raise ValueError(f"cannot resolve source {name!r}")


# ---------------------------------------------------------------------- mutations

NONE = "none"
MUTATION_KINDS = ("zero", "flip", "drop", "truncate", "header", "duplicate")

_SKIP_FRACTION = 0.05  # chunk mutations start past the first 5% of the file
_CHUNK = 4096
_HEADER = 4096


def _chunk_length(size: int, rng: np.random.Generator) -> int:
    """Up to 4 KB, and at most a tenth of the file (the generated ones are small)."""
    top = max(16, min(_CHUNK, size // 10))
    return int(rng.integers(max(1, top // 4), top + 1))


def _offset_past_start(size: int, length: int, rng: np.random.Generator) -> int:
    low = int(size * _SKIP_FRACTION)
    high = max(low, size - length)
    return int(rng.integers(low, high + 1))


def _xor_bytes(low: int, high: int, rng: np.random.Generator) -> dict[str, list[int]]:
    count = int(rng.integers(1, 9))
    offsets = sorted({int(o) for o in rng.integers(low, max(low + 1, high), size=count)})
    masks = [int(m) for m in rng.integers(1, 256, size=len(offsets))]
    return {"offsets": offsets, "masks": masks}


def draw_mutation(kind: str, size: int, rng: np.random.Generator) -> dict[str, Any]:
    """A mutation of ``kind`` for a file of ``size`` bytes, drawn from ``rng``: a JSON-able dict.

    ``zero``: 4 KB (at most a tenth of the file) set to 0 past the first 5%;
    ``flip``: 1-8 bytes XORed past the first 5%; ``drop``: a chunk removed;
    ``truncate``: the file cut at a random point; ``header``: 1-8 bytes XORed in
    the first 4 KB (at most a quarter of the file); ``duplicate``: a chunk copied
    in again elsewhere.
    """
    if size <= 0:
        raise ValueError("cannot mutate an empty file")
    if kind == NONE:
        return {"kind": NONE}
    if kind in ("zero", "drop"):
        length = _chunk_length(size, rng)
        return {"kind": kind, "offset": _offset_past_start(size, length, rng), "length": length}
    if kind == "flip":
        return {"kind": kind, **_xor_bytes(int(size * _SKIP_FRACTION), size, rng)}
    if kind == "header":
        return {"kind": kind, **_xor_bytes(0, max(1, min(_HEADER, size // 4)), rng)}
    if kind == "truncate":
        low = max(1, int(size * 0.02))
        return {"kind": kind, "size": int(rng.integers(low, max(low + 1, size)))}
    if kind == "duplicate":
        length = _chunk_length(size, rng)
        offset = _offset_past_start(size, length, rng)
        at = int(rng.integers(int(size * _SKIP_FRACTION), size + 1))
        return {"kind": kind, "offset": offset, "length": length, "at": at}
    raise ValueError(f"unknown mutation kind {kind!r}; choose from {MUTATION_KINDS}")


def apply_mutation(data: bytes, mutation: Mapping[str, Any]) -> bytes:
    """``data`` changed as ``mutation`` says (offsets beyond the end are clamped)."""
    kind = mutation["kind"]
    size = len(data)
    if kind == NONE:
        return data
    if kind in ("flip", "header"):
        buf = bytearray(data)
        for offset, mask in zip(mutation["offsets"], mutation["masks"], strict=True):
            if 0 <= offset < size:
                buf[offset] ^= mask
        return bytes(buf)
    if kind == "truncate":
        return data[: mutation["size"]]
    start = min(int(mutation["offset"]), size)
    end = min(start + int(mutation["length"]), size)
    if kind == "zero":
        return data[:start] + bytes(end - start) + data[end:]
    if kind == "drop":
        return data[:start] + data[end:]
    if kind == "duplicate":
        at = min(int(mutation["at"]), size)
        return data[:at] + data[start:end] + data[at:]
    raise ValueError(f"unknown mutation kind {kind!r}")


# ---------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One fuzz case: a source, a mutation of it and the seed of the frames asked for."""

    source: Source
    mutation: dict[str, Any]
    seed: int
    number: int = 0

    @property
    def kind(self) -> str:
        return str(self.mutation["kind"])

    def spec(self) -> dict[str, Any]:
        """What reproduces the case: ``bench/fuzz.py --replay '<json of this>'``."""
        return {
            "source": self.source.name,
            "source_size": self.source.size,
            "mutation": self.mutation,
            "seed": self.seed,
        }

    def spec_json(self) -> str:
        return json.dumps(self.spec(), separators=(", ", ": "))


def case_from_spec(
    spec: Mapping[str, Any] | str, work_dir: str | os.PathLike[str] | None = None
) -> Case:
    """The :class:`Case` of a reproduction spec (a dict or its JSON)."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    source = resolve_source(str(spec["source"]), work_dir)
    expected = spec.get("source_size")
    if expected is not None and int(expected) != source.size:
        log.warning(
            "%s is %d bytes, the spec was made from %d: the case may not reproduce",
            source.name,
            source.size,
            expected,
        )
    return Case(source, dict(spec["mutation"]), int(spec["seed"]))


def make_cases(
    sources: Sequence[Source],
    count: int,
    seed: int,
    kinds: Sequence[str] = MUTATION_KINDS,
) -> list[Case]:
    """``count`` mutated cases, deterministic from ``seed``.

    Case ``k`` takes source ``s = k % S`` and mutation kind ``(s + k // S) % K``:
    each round of ``S`` cases spreads the kinds over the sources, and every
    (source, kind) pair comes up once in ``S * K`` cases. Its parameters and
    frame seed come from a generator seeded with ``(seed, k)``.
    """
    if not sources:
        return []
    cases = []
    for k in range(count):
        s = k % len(sources)
        source = sources[s]
        kind = kinds[(s + k // len(sources)) % len(kinds)]
        rng = np.random.default_rng([seed, k])
        mutation = draw_mutation(kind, source.size, rng)
        cases.append(Case(source, mutation, int(rng.integers(2**31)), number=k))
    return cases


def clean_cases(sources: Sequence[Source], seed: int) -> list[Case]:
    """One unmutated case per source: the check that fastvid matches the reference at all."""
    return [
        Case(s, {"kind": NONE}, int(np.random.default_rng([seed, 2**20 + k]).integers(2**31)), k)
        for k, s in enumerate(sources)
    ]


# ---------------------------------------------------------------------- the reference


def digest(picture: np.ndarray) -> str:
    """A digest of a picture's shape and bytes (two pictures are equal iff theirs are)."""
    arr = np.ascontiguousarray(picture)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(arr.shape).encode())
    h.update(arr.data)
    return h.hexdigest()


@dataclass
class Reference:
    """A sequential decode: a digest per frame, and how it ended."""

    digests: list[str] = field(default_factory=list)
    shapes: set[tuple[int, ...]] = field(default_factory=set)  # distinct picture shapes
    stop: str | None = None  # why reading ended early (open failed, demux error), None at EOF
    decode_errors: int = 0  # packets the decoder refused (skipped, as FFmpeg's tools do)
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # the kept ones (``keep``)


def reference_decode(path: str | os.PathLike[str], keep: Iterable[int] = ()) -> Reference:
    """Decode the best video stream of ``path`` front to back with PyAV, independent of fastvid.

    One decoding thread; empty packets skipped; a packet the decoder refuses is
    skipped; an exception from the demuxer ends the loop; the decoder is then
    flushed. Frames whose index is in ``keep`` are kept as RGB arrays.
    """
    import av

    ref = Reference()
    wanted = set(keep)
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except Exception as exc:  # not a media file (for PyAV either): no frames
        ref.stop = f"open failed: {type(exc).__name__}: {exc}"
        return ref
    with container:
        stream = container.streams.best("video")
        if stream is None:
            ref.stop = "no video stream"
            return ref
        cc = stream.codec_context
        if cc is None:  # PyAV has no decoder for the (damaged) codec id: nothing decodes
            ref.stop = "no decoder for the stream's codec"
            return ref
        cc.thread_count = 1

        def take(frames: Iterable[Any]) -> None:
            for frame in frames:
                rgb = frame.to_ndarray(format="rgb24")
                ref.shapes.add(rgb.shape)
                if len(ref.digests) in wanted:
                    ref.frames[len(ref.digests)] = rgb
                ref.digests.append(digest(rgb))

        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                try:
                    take(cc.decode(packet))
                except av.error.FFmpegError:
                    ref.decode_errors += 1
        except Exception as exc:  # the demuxer gave up: what was decoded so far stands
            ref.stop = f"demux stopped: {type(exc).__name__}: {exc}"
        try:
            take(cc.decode(None))
        except av.error.FFmpegError:
            ref.decode_errors += 1
    return ref


# ---------------------------------------------------------------------- one case, in a child


def _error_record(
    call: str, index: int | None, exc: BaseException, count: int | None = None
) -> dict[str, Any]:
    """What a call raised. ``index``: the highest index it asked for; ``count``: the
    reader's ``len()`` right after (an IndexError is legitimate only when ``index >= count``:
    a reader may revise its frame count down when it meets damage)."""
    from fastvid.errors import VideoError

    record: dict[str, Any] = {
        "call": call,
        "index": index,
        "type": type(exc).__name__,
        "videoerror": isinstance(exc, VideoError),
        "message": str(exc)[:600],
    }
    if isinstance(exc, IndexError) and not record["videoerror"]:
        record["count"] = count
        record["legit_index_error"] = index is not None and count is not None and index >= count
    if not record["videoerror"] and not record.get("legit_index_error"):
        record["traceback"] = traceback.format_exc()[-3000:]
    return record


def _count(reader: Any) -> int | None:
    try:
        return len(reader)
    except Exception:  # a reader that cannot even say its length is reported elsewhere
        return None


def pick_singles(n: int, seed: int, count: int = DEFAULT_SINGLES) -> list[int]:
    """The indices read one call each: first and last frame plus a random sample, shuffled."""
    if n <= 0 or count <= 0:
        return []
    rng = np.random.default_rng(seed)
    picks = {int(i) for i in rng.choice(n, size=min(n, max(0, count - 2)), replace=False)}
    picks |= {0, n - 1}
    order = sorted(picks)
    rng.shuffle(order)
    return order[:count] if len(order) > count else order


def evaluate(
    path: str | os.PathLike[str],
    seed: int,
    singles: int = DEFAULT_SINGLES,
    *,
    phase: Callable[[str], None] | None = None,
    max_range_bytes: int = MAX_RANGE_BYTES,
    keep: dict[tuple[str, int], np.ndarray] | None = None,
    verify: bool = False,
) -> dict[str, Any]:
    """Run one file through the reference and through fastvid; a JSON-able record of both.

    Fastvid errors are caught and recorded (``errors``), never raised; the
    record holds digests only, :func:`classify` judges it. ``keep``, when given,
    receives the pictures fastvid returned that differ from the reference, keyed
    ``("single", i)`` or ``("range", i)`` (at most 12 of each).
    """
    from fastvid.reader import VideoReader

    def mark(what: str) -> None:
        if phase is not None:
            phase(what)

    path = os.fspath(path)
    times: dict[str, float] = {}
    rec: dict[str, Any] = {"n": None, "singles": [], "range": None, "errors": [], "times": times}

    mark("reference")
    t0 = time.perf_counter()
    ref = reference_decode(path)
    times["reference"] = time.perf_counter() - t0
    rec.update(
        ref_digests=ref.digests,
        ref_stop=ref.stop,
        ref_decode_errors=ref.decode_errors,
        ref_shapes=sorted(ref.shapes),
    )

    def keep_if_wrong(call: str, i: int, picture: np.ndarray, d: str) -> None:
        if keep is None or i >= len(ref.digests) or d == ref.digests[i]:
            return
        if sum(1 for k in keep if k[0] == call) < 12:
            keep[(call, i)] = picture.copy()

    mark("open")
    t0 = time.perf_counter()
    try:
        reader = VideoReader(path, verify=verify)
    except Exception as exc:
        rec["errors"].append(_error_record("open", None, exc))
        return rec
    with reader:
        n = rec["n"] = len(reader)
        for i in pick_singles(n, seed, singles):
            mark(f"single {i}")
            try:
                got = reader.get_frames([i])
                rec["singles"].append([i, digest(got[0])])
                keep_if_wrong("single", i, got[0], rec["singles"][-1][1])
            except Exception as exc:
                rec["errors"].append(_error_record("single", i, exc, _count(reader)))
                rec["singles"].append([i, None])
        rec["n_after_singles"] = _count(reader)
    times["singles"] = time.perf_counter() - t0

    mark("open (range)")
    t0 = time.perf_counter()
    try:
        reader = VideoReader(path, verify=verify)
    except Exception as exc:
        rec["errors"].append(_error_record("open (range)", None, exc))
        return rec
    with reader:
        n = rec["n_range"] = len(reader)  # a reader may have learnt a new count from damage
        meta = reader.metadata
        frame_bytes = max(1, meta.width * meta.height * 3)
        chunk = max(1, max_range_bytes // frame_bytes)
        if chunk < n:
            rec["range_chunk"] = chunk
        digests: list[str] = []
        start = 0
        mark("range")
        try:
            for start in range(0, n, chunk) if n else []:
                out = reader.get_frames(range(start, min(n, start + chunk)))
                for f in out:
                    digests.append(digest(f))
                    keep_if_wrong("range", len(digests) - 1, f, digests[-1])
                del out
            rec["range"] = digests
        except Exception as exc:
            highest = min(n, start + chunk) - 1
            rec["errors"].append(_error_record("range", highest, exc, _count(reader)))
        rec["n_final"] = _count(reader)
    times["range"] = time.perf_counter() - t0
    return rec


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes << 20
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError) as exc:
            log.debug("cannot limit memory: %s", exc)


def _run_job(job: Mapping[str, Any]) -> int:
    """The body of a case's process (either launcher): evaluate the file, write the record."""
    os.environ.pop("FASTVID_INDEX_CACHE", None)  # mutated files stay out of persistent caches
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    faulthandler.enable()  # a crash prints the Python stack to stderr
    # a hang prints it too, shortly before the parent kills the process
    faulthandler.dump_traceback_later(max(1.0, float(job["timeout"]) - 1.5), repeat=False)
    _limit_memory(int(job.get("mem_limit_mb", 0)))

    def phase(what: str) -> None:
        print(_PHASE_PREFIX + what, file=sys.stderr, flush=True)

    selftest = job.get("selftest")  # tests/test_fuzz.py: prove that crashes and hangs are seen
    if selftest:
        phase("open")
        if selftest == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(3600)
    record = evaluate(
        job["path"],
        int(job["seed"]),
        int(job["singles"]),
        phase=phase,
        verify=bool(job.get("verify")),
    )
    phase("done")
    out = Path(job["result"])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, out)
    return 0


def _child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of an ``exec`` case process: ``argv[0]`` is the JSON job."""
    return _run_job(json.loads((sys.argv[1:] if argv is None else argv)[0]))


def _forked_main(job: Mapping[str, Any]) -> int:
    """Entry point of a ``fork`` case process: stdio away from the server's pipes first."""
    fd = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    sys.stdin = sys.stdout = open(os.devnull, "r+")  # noqa: SIM115 (this process ends soon)
    try:
        return _run_job(job)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stderr.flush()


_CHILD_CODE = "import sys; from fastvid.bench.fuzz import _child_main; sys.exit(_child_main())"
_SERVER_CODE = "from fastvid.bench.fuzz import _fork_server_main; _fork_server_main()"

# How a case's process starts. "fork": forked by a small server process that imported
# NumPy, PyAV and the reader once (a fresh process per case, a few ms to start);
# "exec": a new interpreter per case (subprocess.run of sys.executable, ~0.4 s to start).
LAUNCHERS = ("fork", "exec")
DEFAULT_LAUNCHER = "fork"


def _fork_server_main() -> None:
    """The fork server: reads ``{"id", "job", "timeout"}`` lines, answers ``{"id", "code"}``.

    Single-threaded, so forking is safe. Each job runs in a child forked from
    here; a child still running at its deadline is killed (``code`` null). EOF
    on stdin kills what still runs and ends the server.
    """
    import selectors

    import av  # noqa: F401  (preloaded for the children)

    import fastvid.reader  # noqa: F401

    out = sys.stdout
    fd = sys.stdin.fileno()
    running: dict[int, tuple[Any, float, bool]] = {}  # pid -> (id, deadline, killed)
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    pending = b""
    open_input = True

    def start(msg: dict[str, Any]) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _forked_main(msg["job"])
            finally:
                os._exit(code)
        running[pid] = (msg["id"], time.monotonic() + float(msg["timeout"]), False)

    while open_input or running:
        if open_input and sel.select(timeout=0.02):
            data = os.read(fd, 1 << 16)
            if not data:  # the parent is done (or gone): stop what still runs
                open_input = False
                for pid in running:
                    os.kill(pid, signal.SIGKILL)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                start(json.loads(line))
        elif not open_input:
            time.sleep(0.02)
        now = time.monotonic()
        for pid, (ident, deadline, killed) in list(running.items()):
            if not killed and now > deadline:
                os.kill(pid, signal.SIGKILL)
                running[pid] = (ident, deadline, True)
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            ident, _, killed = running.pop(pid)
            code = None if killed else os.waitstatus_to_exitcode(status)
            try:
                out.write(json.dumps({"id": ident, "code": code}) + "\n")
                out.flush()
            except (BrokenPipeError, ValueError):  # the parent stopped listening
                open_input = False


class _ForkServer:
    """The parent's handle on a :func:`_fork_server_main` process; ``run`` is thread-safe."""

    def __init__(self) -> None:
        env = _child_env()
        # single-threaded server: no BLAS thread pool at NumPy's import
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self._lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, tuple[threading.Event, list[int | None]]] = {}
        self._dead = False
        self._reader = threading.Thread(target=self._read, name="fuzz-fork-server", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            msg = json.loads(line)
            with self._lock:
                event, slot = self._waiting.pop(msg["id"])
            slot.append(msg["code"])
            event.set()
        with self._lock:  # the server is gone: nobody waits forever
            self._dead = True
            for event, _ in self._waiting.values():
                event.set()
            self._waiting.clear()

    def run(self, job: Mapping[str, Any], timeout: float) -> int | None:
        """Exit code of the job's process (negative: the signal), None when it timed out."""
        event, slot = threading.Event(), []
        with self._lock:
            if self._dead:
                raise RuntimeError("the fuzz fork server has died")
            ident = self._next
            self._next += 1
            self._waiting[ident] = (event, slot)
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"id": ident, "job": job, "timeout": timeout}))
            self._proc.stdin.write("\n")
            self._proc.stdin.flush()
        event.wait()
        if not slot:
            raise RuntimeError("the fuzz fork server has died")
        return slot[0]

    def close(self) -> None:
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)


def _launch(
    job: Mapping[str, Any], timeout: float, launcher: str, server: _ForkServer | None = None
) -> int | None:
    """Run the job in a new process; its exit code (negative: signal), None after a timeout."""
    if launcher == "fork":
        own = server is None
        server = server or _ForkServer()
        try:
            return server.run(job, timeout)
        finally:
            if own:
                server.close()
    if launcher != "exec":
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    with open(job["stderr"], "wb") as err:
        try:
            return subprocess.run(
                [sys.executable, "-c", _CHILD_CODE, json.dumps(job)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=timeout,
                env=_child_env(),
            ).returncode
        except subprocess.TimeoutExpired:  # run() has killed it
            return None


@dataclass(frozen=True)
class CaseOptions:
    """How each case runs: single-frame calls, memory limit (MB, 0: none), launcher, and
    whether the readers verify their index by a full decode (``VideoReader(verify=True)``)."""

    singles: int = DEFAULT_SINGLES
    mem_limit_mb: int = DEFAULT_MEM_LIMIT_MB
    launcher: str = DEFAULT_LAUNCHER
    verify: bool = False

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {LAUNCHERS}, got {self.launcher!r}")


DEFAULT_OPTIONS = CaseOptions()


# ---------------------------------------------------------------------- judging a record


def classify(rec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The outcome of a record from :func:`evaluate`, and the facts behind it.

    Frames are compared where both sides have them; the reader's last word on
    its frame count (it may revise it when decoding meets damage) decides
    between ``frames_lost`` and ``count_mismatch``.
    """
    ref: list[str] = list(rec.get("ref_digests") or [])
    ref_n = len(ref)
    n = rec.get("n")
    keys = ("n", "n_after_singles", "n_range", "n_final")
    seen = [rec[k] for k in keys if rec.get(k) is not None]
    revised = [c for k, c in enumerate(seen) if k == 0 or c != seen[k - 1]]
    final = seen[-1] if seen else None
    errors = list(rec.get("errors") or [])
    detail: dict[str, Any] = {"ref_n": ref_n, "n": n}
    if len(revised) > 1:
        detail["counts"] = revised  # the reader's frame count as it changed: open, ..., last
    if rec.get("ref_stop"):
        detail["ref_stop"] = rec["ref_stop"]
    if errors:
        detail["errors"] = [{k: v for k, v in e.items() if k != "traceback"} for e in errors[:6]]
    bad = [e for e in errors if not e["videoerror"] and not e.get("legit_index_error")]
    if bad:
        detail["exception"] = {k: v for k, v in bad[0].items() if k != "traceback"}
        detail["traceback"] = bad[0].get("traceback", "")
        return OTHER_EXCEPTION, detail
    if n is None or final is None:  # VideoError at open
        return VIDEOERROR, detail

    first_of: dict[str, int] = {}
    for j, d in enumerate(ref):
        first_of.setdefault(d, j)
    wrong: list[dict[str, Any]] = []
    got_range: list[str] | None = rec.get("range")
    for i, d in rec.get("singles") or []:
        if d is None:
            continue
        if i < ref_n and d != ref[i]:
            wrong.append({"index": i, "call": "single", "looks_like_ref": first_of.get(d)})
        elif got_range is not None and i < len(got_range) and d != got_range[i]:
            wrong.append({"index": i, "call": "single != range"})
    if got_range is not None:
        for i in range(min(len(got_range), ref_n)):
            if got_range[i] != ref[i]:
                wrong.append(
                    {"index": i, "call": "range", "looks_like_ref": first_of.get(got_range[i])}
                )
    if wrong:
        indices = sorted({w["index"] for w in wrong})
        detail["wrong_frames"] = len(indices)
        detail["wrong_by_call"] = dict(Counter(w["call"] for w in wrong))
        detail["wrong_indices"] = indices[:40]
        detail["wrong"] = wrong[:20]
        if len(rec.get("ref_shapes") or ()) > 1:
            # damage changed the picture size mid-stream: fastvid returns every frame at
            # its first picture's size (documented), so those pictures compare as different
            detail["ref_shapes"] = rec["ref_shapes"]
            return RESIZED, detail
        return WRONG_FRAME, detail
    if final < ref_n:
        detail["lost"] = ref_n - final
        return FRAMES_LOST, detail
    if final > ref_n:
        detail["extra"] = final - ref_n
        return COUNT_MISMATCH, detail
    if any(e.get("legit_index_error") for e in errors):
        return INDEX_ERROR, detail
    if errors:
        return VIDEOERROR, detail
    return OK, detail


def _error_text(err: Mapping[str, Any] | None, width: int = 160) -> str:
    if not err:
        return ""
    at = f" {err['index']}" if err.get("index") is not None else ""
    return f"{err['type']} at {err['call']}{at}: {err['message'][:width]}"


def describe(outcome: str, detail: Mapping[str, Any]) -> str:
    """One line a person reads: what went wrong in a case."""
    revised = detail.get("counts")
    mine = " -> ".join(str(c) for c in revised) if revised else str(detail.get("n"))
    counts = f"fastvid {mine} frames, reference {detail.get('ref_n')}"
    errs = detail.get("errors") or []
    where = _error_text(errs[0] if errs else None)
    also = f"; also {where}" if where else ""
    if outcome == OTHER_EXCEPTION:
        return f"{_error_text(detail.get('exception'), 240)} ({counts})"
    if outcome == WRONG_FRAME:
        calls = detail.get("wrong_by_call", {})
        idx = detail.get("wrong_indices", [])
        shown = ", ".join(str(i) for i in idx[:10]) + (" ..." if len(idx) > 10 else "")
        looks = [
            f"{w['index']}->ref {w['looks_like_ref']}"
            for w in detail.get("wrong", [])
            if w.get("looks_like_ref") is not None
        ][:4]
        text = f"{detail.get('wrong_frames')} frame(s) wrong {calls} at {shown}; {counts}"
        if looks:
            text += "; looks like " + ", ".join(looks)
        return text + also
    if outcome == RESIZED:
        shapes = ", ".join("x".join(map(str, sh)) for sh in detail.get("ref_shapes", []))
        return f"the picture size changes mid-stream ({shapes}); {counts}"
    if outcome == FRAMES_LOST:
        return f"{detail.get('lost')} frame(s) lost: {counts}{also}"
    if outcome == COUNT_MISMATCH:
        return f"{detail.get('extra')} extra frame(s): {counts}{also}"
    if outcome == INDEX_ERROR:
        legit = [e for e in errs if e.get("legit_index_error")]
        return f"{_error_text(legit[0] if legit else None)} ({counts})"
    if outcome in (CRASH, HANG, HARNESS_ERROR):
        return str(detail.get("reason", outcome))
    return f"{where} ({counts})" if where else counts


# ---------------------------------------------------------------------- running cases


@dataclass
class CaseResult:
    """What one case came to."""

    case: Case
    outcome: str
    detail: dict[str, Any]
    elapsed: float
    timeout: float

    @property
    def violation(self) -> bool:
        return self.outcome in VIOLATIONS

    @property
    def failure(self) -> bool:
        return self.outcome in FAILURES

    def summary(self) -> str:
        return describe(self.outcome, self.detail)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.case.spec(),
            "source": self.case.source.name,
            "kind": self.case.kind,
            "outcome": self.outcome,
            "summary": self.summary(),
            "signature": signature(self) if self.failure else None,
            "elapsed": round(self.elapsed, 3),
            "timeout": self.timeout,
            "detail": self.detail,
        }


@lru_cache(maxsize=64)
def _source_bytes(path: Path, size: int, mtime_ns: int) -> bytes:
    return path.read_bytes()


def write_mutated(case: Case, dest: str | os.PathLike[str]) -> Path:
    """Write the case's input file (its source, mutated) to ``dest``; returns ``dest``."""
    src = case.source.path
    st = src.stat()
    dest = Path(dest)
    dest.write_bytes(apply_mutation(_source_bytes(src, st.st_size, st.st_mtime_ns), case.mutation))
    return dest


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FASTVID_INDEX_CACHE", None)  # mutated files must not enter a persistent cache
    root = str(repo_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


def _last_phase(stderr: str) -> str:
    phases = [
        ln[len(_PHASE_PREFIX) :] for ln in stderr.splitlines() if ln.startswith(_PHASE_PREFIX)
    ]
    return phases[-1] if phases else "start"


def run_case(
    case: Case,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    tmp_dir: str | os.PathLike[str] | None = None,
    options: CaseOptions = DEFAULT_OPTIONS,
    slot: int | None = None,
    server: _ForkServer | None = None,
) -> CaseResult:
    """Run one case in its own process (see :data:`LAUNCHERS`); never raises for what it does.

    ``slot`` names its temporary files in ``tmp_dir`` (default: the case number);
    ``server`` is the fork server to use (default: one started for this case).
    """
    own_tmp = tmp_dir is None
    folder = Path(tempfile.mkdtemp(prefix="fastvid-fuzz-") if own_tmp else tmp_dir)
    label = case.source.name.replace(":", "_").replace("/", "_")[-60:]
    stem = f"case{case.number if slot is None else slot:05d}-{label}"
    video = folder / (stem + case.source.path.suffix)
    result = folder / (stem + ".json")
    errors = folder / (stem + ".stderr")
    t0 = time.perf_counter()
    try:
        write_mutated(case, video)
        job = {
            "path": str(video),
            "seed": case.seed,
            "singles": options.singles,
            "timeout": timeout,
            "result": str(result),
            "stderr": str(errors),
            "mem_limit_mb": options.mem_limit_mb,
            "verify": options.verify,
        }
        try:
            code = _launch(job, timeout, options.launcher, server)
        except RuntimeError as exc:  # the fork server died: not the case's fault
            detail = {"reason": str(exc), "phase": "start", "stderr": ""}
            return CaseResult(case, HARNESS_ERROR, detail, time.perf_counter() - t0, timeout)
        elapsed = time.perf_counter() - t0
        stderr = errors.read_text("utf-8", "replace") if errors.is_file() else ""
        phase = _last_phase(stderr)
        tail = stderr[-_STDERR_TAIL:]
        in_reference = phase == "reference"
        blame = "the reference decode (PyAV, not fastvid)"
        if code is None:
            reason = f"no result after {timeout:.0f} s, in phase '{phase}'"
            if in_reference:
                reason = f"{blame}: {reason}"
            detail = {"reason": reason, "phase": phase, "stderr": tail}
            return CaseResult(
                case, HARNESS_ERROR if in_reference else HANG, detail, elapsed, timeout
            )
        if code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            reason = f"killed by {sig} in phase '{phase}'"
            if in_reference:
                reason = f"{blame} was {reason}"
            detail = {"reason": reason, "phase": phase, "stderr": tail}
            return CaseResult(
                case, HARNESS_ERROR if in_reference else CRASH, detail, elapsed, timeout
            )
        if code != 0 or not result.is_file():
            reason = f"the case's process exited {code} without a result (phase '{phase}')"
            detail = {"reason": reason, "phase": phase, "stderr": tail}
            return CaseResult(case, HARNESS_ERROR, detail, elapsed, timeout)
        record = json.loads(result.read_text())
        outcome, detail = classify(record)
        detail["times"] = {k: round(v, 3) for k, v in record.get("times", {}).items()}
        return CaseResult(case, outcome, detail, elapsed, timeout)
    finally:
        for path in (video, result, errors):
            path.unlink(missing_ok=True)
        if own_tmp:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class FuzzReport:
    """The results of a set of cases, in case order, and their tallies."""

    results: list[CaseResult]
    wall: float = 0.0

    def tallies(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def by(self, key: Callable[[CaseResult], str]) -> dict[str, Counter[str]]:
        table: dict[str, Counter[str]] = {}
        for r in self.results:
            table.setdefault(key(r), Counter())[r.outcome] += 1
        return table

    def by_source(self) -> dict[str, Counter[str]]:
        return self.by(lambda r: r.case.source.name)

    def by_mutation(self) -> dict[str, Counter[str]]:
        return self.by(lambda r: r.case.kind)

    def violations(self) -> list[CaseResult]:
        return [r for r in self.results if r.violation]

    def failures(self) -> list[CaseResult]:
        """Violations and harness errors: what makes a run fail."""
        return [r for r in self.results if r.failure]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": len(self.results),
            "wall_s": round(self.wall, 2),
            "tallies": {k: self.tallies().get(k, 0) for k in OUTCOMES},
            "by_source": {k: dict(v) for k, v in self.by_source().items()},
            "by_mutation": {k: dict(v) for k, v in self.by_mutation().items()},
            "failures": [r.to_dict() for r in self.failures()],
            "results": [
                {
                    "spec": r.case.spec(),
                    "outcome": r.outcome,
                    "summary": r.summary(),
                    "elapsed": round(r.elapsed, 3),
                }
                for r in self.results
            ],
        }


def run_cases(
    cases: Sequence[Case],
    jobs: int = DEFAULT_JOBS,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    timeouts: Mapping[str, float] | None = None,
    options: CaseOptions = DEFAULT_OPTIONS,
    progress: Callable[[int, int, CaseResult], None] | None = None,
) -> FuzzReport:
    """Run ``cases``, ``jobs`` processes at a time; results come back in case order.

    ``timeout`` is the limit per case in seconds; ``timeouts`` may raise it per
    source name. ``progress(done, total, result)`` is called after each case.
    """
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="fastvid-fuzz-"))
    lock = threading.Lock()
    done = 0

    def one(slot: int, case: Case) -> CaseResult:
        nonlocal done
        limit = max(timeout, (timeouts or {}).get(case.source.name, 0.0))
        res = run_case(case, limit, tmp_dir=folder, options=options, slot=slot, server=server)
        with lock:
            done += 1
            if res.failure:
                log.warning("%s %s: %s", res.outcome, case.spec_json(), res.summary())
            if progress is not None:
                progress(done, len(cases), res)
        return res

    server = _ForkServer() if options.launcher == "fork" and cases else None
    try:
        # slots, not case numbers, name the temporary files: two cases never share one
        with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
            results = list(pool.map(one, range(len(cases)), cases))
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(folder, ignore_errors=True)
    return FuzzReport(results, time.perf_counter() - t0)


@dataclass
class FuzzRun:
    """A whole run: the clean check of every source, then the mutated cases."""

    sources: list[Source]
    clean: FuzzReport
    fuzz: FuzzReport
    timeouts: dict[str, float]
    seed: int

    def failures(self) -> list[CaseResult]:
        return self.clean.failures() + self.fuzz.failures()

    def clean_mismatches(self) -> list[CaseResult]:
        """Clean sources on which fastvid does not give the reference's frames."""
        return [r for r in self.clean.results if r.outcome != OK]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "sources": [
                {"name": s.name, "path": str(s.path), "size": s.size} for s in self.sources
            ],
            "timeouts": self.timeouts,
            "clean": self.clean.to_dict(),
            "fuzz": self.fuzz.to_dict(),
        }


def run_fuzz(
    sources: Sequence[Source],
    *,
    cases: int,
    seed: int = 0,
    jobs: int = DEFAULT_JOBS,
    timeout: float = DEFAULT_TIMEOUT,
    kinds: Sequence[str] = MUTATION_KINDS,
    slow_factor: float = SLOW_FACTOR,
    options: CaseOptions = DEFAULT_OPTIONS,
    progress: Callable[[int, int, CaseResult], None] | None = None,
) -> FuzzRun:
    """Check every clean source, then run ``cases`` mutated cases drawn from ``seed``.

    A source's mutated cases get ``max(timeout, slow_factor * its clean time)``:
    a long real clip that takes 10 s to check when intact is not hanging at 30 s.
    """
    sources = list(sources)
    clean = run_cases(clean_cases(sources, seed), jobs, timeout, options=options, progress=progress)
    timeouts = {
        r.case.source.name: round(max(timeout, slow_factor * r.elapsed), 1)
        for r in clean.results
        if r.outcome != HANG
    }
    fuzz = run_cases(
        make_cases(sources, cases, seed, kinds),
        jobs,
        timeout,
        timeouts=timeouts,
        options=options,
        progress=progress,
    )
    return FuzzRun(sources, clean, fuzz, timeouts, seed)


# ---------------------------------------------------------------------- reports


def _table(title: str, rows: Mapping[str, Counter[str]]) -> list[str]:
    """Outcome counts per row; rows whose name starts with a space are subtotals."""
    present = Counter[str]()
    for name, counts in rows.items():
        if not name.startswith(" "):
            present.update(counts)
    columns = [o for o in OUTCOMES if present.get(o) or o in (OK, VIDEOERROR)]
    header = [title, *columns, "total"]
    body = []
    for name, counts in [*rows.items(), ("all", present)]:
        body.append(
            [name, *(str(counts.get(c, 0) or "") for c in columns), str(sum(counts.values()))]
        )
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(header), rule, *(line(r) for r in body[:-1]), rule, line(body[-1])]


def _grouped_by_source(report: FuzzReport) -> dict[str, Counter[str]]:
    rows = report.by_source()
    out: dict[str, Counter[str]] = {}
    for kind in (SYNTH, REAL, FILE):
        names = [n for n in rows if n.startswith(kind + ":")]
        for n in names:
            out[n] = rows[n]
        if len(names) > 1:
            total = Counter[str]()
            for n in names:
                total.update(rows[n])
            out[f"  {kind} (all)"] = total
    return out


def render_case(result: CaseResult, *, stderr: bool = False) -> list[str]:
    lines = [
        f"{result.outcome}: {result.case.source.name} / {result.case.kind}: {result.summary()}",
        f"    --replay '{result.case.spec_json()}'",
    ]
    tb = result.detail.get("traceback")
    if tb:
        lines += ["    " + ln for ln in tb.strip().splitlines()[-6:]]
    if stderr and result.detail.get("stderr"):
        lines += ["    " + ln for ln in result.detail["stderr"].strip().splitlines()[-12:]]
    return lines


def signature(result: CaseResult) -> str:
    """A coarse kind of a failing case, to group a report's violations by."""
    d = result.detail
    if result.outcome == WRONG_FRAME:
        calls = "+".join(sorted(d.get("wrong_by_call", {})))
        final = (d.get("counts") or [d.get("n")])[-1]
        same = "same count as the reference" if final == d.get("ref_n") else "count differs"
        looks = [w for w in d.get("wrong", []) if w.get("looks_like_ref") is not None]
        shifted = ", pictures of other indices" if looks else ""
        return f"wrong_frame ({calls}), {same}{shifted}"
    if result.outcome == OTHER_EXCEPTION:
        exc = d.get("exception") or {}
        return f"other_exception: {exc.get('type')} in {exc.get('call')}"
    if result.outcome == FRAMES_LOST:
        revised = "after revising its count" if d.get("counts") else "counted at open"
        return f"frames_lost: fewer frames than the reference, {revised}"
    if result.outcome in (CRASH, HANG, HARNESS_ERROR):
        return f"{result.outcome} in {str(d.get('phase', '?')).split(' ')[0]}"
    return result.outcome


def render_run(run: FuzzRun) -> str:
    """The text report of a run: clean check, outcome tables, every failing case."""
    lines = [
        f"fastvid fuzz: seed {run.seed}, {len(run.sources)} sources, "
        f"{len(run.fuzz.results)} mutated cases in {run.fuzz.wall:.0f} s"
    ]
    lines += ["", "== clean sources (no mutation) against the sequential PyAV reference"]
    mismatches = run.clean_mismatches()
    ok = [r.case.source.name for r in run.clean.results if r.outcome == OK]
    lines.append(f"identical: {len(ok)} of {len(run.clean.results)}")
    for r in mismatches:
        lines += render_case(r, stderr=r.outcome in (CRASH, HANG, HARNESS_ERROR))
    lines += ["", "== mutated cases per source", *_table("source", _grouped_by_source(run.fuzz))]
    lines += ["", "== mutated cases per mutation", *_table("mutation", run.fuzz.by_mutation())]
    failing = run.fuzz.failures()
    kinds: dict[str, list[CaseResult]] = {}
    for r in failing:
        kinds.setdefault(signature(r), []).append(r)
    lines += ["", f"== kinds of violation: {len(kinds)} (count, kind, first case)"]
    for kind, members in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        lines += [f"{len(members):4d}  {kind}", f"      --replay '{members[0].case.spec_json()}'"]
    lines += ["", f"== violations and harness errors: {len(failing)}"]
    for r in failing:
        lines += render_case(r, stderr=r.outcome in (CRASH, HANG, HARNESS_ERROR))
    mismatched = [r for r in run.fuzz.results if r.outcome == COUNT_MISMATCH]
    if mismatched:
        lines += ["", f"== count mismatches (more frames than the reference): {len(mismatched)}"]
        for r in mismatched[:20]:
            lines += render_case(r)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- replay


def replay(
    spec: Mapping[str, Any] | str,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    singles: int = DEFAULT_SINGLES,
    save_to: str | os.PathLike[str] | None = None,
    verify: bool = False,
) -> tuple[CaseResult, dict[str, Any]]:
    """Rerun one case in this process (log what the reader does); the result and the raw record.

    For wrong frames the record gets ``diagnosis``: per wrong picture (the very
    calls of the case), the largest pixel difference to the reference and, on
    generated sources, which frame number each picture shows. ``save_to``
    keeps the mutated file.
    """
    case = case_from_spec(spec, work_dir)
    folder = Path(tempfile.mkdtemp(prefix="fastvid-replay-"))
    try:
        video = write_mutated(case, folder / f"replay{case.source.path.suffix}")
        if save_to is not None:
            shutil.copyfile(video, save_to)
        t0 = time.perf_counter()
        kept: dict[tuple[str, int], np.ndarray] = {}
        record = evaluate(
            video,
            case.seed,
            singles,
            phase=lambda s: log.info("phase: %s", s),
            keep=kept,
            verify=verify,
        )
        outcome, detail = classify(record)
        if kept:
            record["diagnosis"] = _diagnose(video, case, kept)
        result = CaseResult(case, outcome, detail, time.perf_counter() - t0, 0.0)
        return result, record
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _diagnose(
    path: Path, case: Case, kept: Mapping[tuple[str, int], np.ndarray]
) -> list[dict[str, Any]]:
    from fastvid.synth import frame_index

    ref = reference_decode(path, keep={i for _, i in kept})
    out = []
    for (call, i), got in sorted(kept.items()):
        entry: dict[str, Any] = {"call": call, "index": i}
        want = ref.frames.get(i)
        if want is not None and want.shape == got.shape:
            diff = np.abs(want.astype(np.int16) - got.astype(np.int16))
            entry.update(max_diff=int(diff.max()), mean_diff=round(float(diff.mean()), 3))
        elif want is not None:
            entry["shapes"] = [list(want.shape), list(got.shape)]
        if case.source.kind == SYNTH:
            entry["fastvid_shows"] = frame_index(got)
            if want is not None:
                entry["reference_shows"] = frame_index(want)
        out.append(entry)
    return out

"""Benchmark videos cut from real footage (``../shared/videos``), cached.

Synthetic videos decode far faster than camera footage, so ``fastvid bench``
cuts its dataset from real files when it finds a folder of them:

- short clips, UCF101-like (:data:`fastvid.bench.common.SHORT_SPEC`: 320x240
  mpeg4 AVI, GOP 12, 25 fps, 4-6 s), spread over the sources at different
  start offsets, interleaved so that consecutive clips come from different
  sources (the keras suite deals them round-robin into 3 classes);
- one long clip (:data:`fastvid.bench.common.LONG_SPEC`: 1280x720 h264, x264
  keyint 250, 3 B-frames, 25 fps, 64 s), the sources' frames one after another.

Frames are decoded with PyAV, centre-cropped to the target's aspect ratio,
scaled and re-encoded (no ``ffmpeg`` command). Every source frame is kept in
order and re-timed at the spec's constant rate (``fps``): no frame is dropped
or duplicated, so a 10 fps source plays faster, a 30 fps one slower.

The folder is ``$FASTVID_BENCH_FOOTAGE``, or ``../shared/videos`` beside the
checkout. Results are cached under the bench data dir, keyed by
:data:`VERSION`, the spec and each source's name, size and mtime, so a rerun
reuses them and a changed source is cut again. A cut writes each file under a
temporary name and a ``manifest.json`` last: an interrupted cut is redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fastvid.bench import common

log = logging.getLogger(__name__)

VERSION = "footage-2"  # bump when the cutting changes: old caches are then ignored
ENV = "FASTVID_BENCH_FOOTAGE"
DEFAULT_LABEL = "../shared/videos"
# camera footage and film, in order of preference; the folder's other files are used only
# when none of these is there (vidtest.ogv, av1_video.mkv and h265_video.mp4 are test
# patterns, not footage)
SHORT_SOURCES = ("vtest.avi", "box.mp4", "nasa_13013.mp4", "Megamind.avi", "cup.mp4")
LONG_SOURCES = ("vtest.avi", "box.mp4", "cup.mp4", "Megamind.avi")
# damaged or lying files (see ../shared/videos/README.md): never cut from these
EXCLUDED = frozenset({"Megamind_bugy.avi", "tree.avi"})
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".ogv", ".m4v")
# encoder settings beyond the spec: mpeg4 at about UCF101's bitrate, x264 at its default quality
ENCODER_DEFAULTS: dict[str, dict[str, str]] = {
    # no scene-change keyframes: a keyframe every `gop` frames, exactly
    "mpeg4": {"b": "500k", "sc_threshold": "1000000000"},
    "libx264": {"crf": "23"},
}


class FootageError(RuntimeError):
    """The footage folder gave no usable clip (no readable source, or all too short)."""


@dataclass(frozen=True)
class Choice:
    """Where the benchmark's videos come from: a folder of real footage, or None (synthetic)."""

    folder: Path | None
    text: str  # for the report header, e.g. "synthetic (../shared/videos not found)"


def default_dir() -> Path:
    """``<repo>/../shared/videos``, where the project keeps its real sample videos."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "videos"


def choose(explicit: str | os.PathLike[str] | None = None, *, synthetic: bool = False) -> Choice:
    """The footage folder to cut from: ``explicit``, else ``$FASTVID_BENCH_FOOTAGE``, else
    :func:`default_dir`; ``Choice(None, why)`` when synthetic videos must be used."""
    if synthetic:
        return Choice(None, "synthetic (--synthetic)")
    given = explicit if explicit is not None else os.environ.get(ENV) or None
    folder = Path(given) if given is not None else default_dir()
    label = str(folder) if given is not None else DEFAULT_LABEL
    if not folder.is_dir():
        return Choice(None, f"synthetic ({label} not found)")
    used = dict.fromkeys(
        p.name for p in [*sources(folder, SHORT_SOURCES), *sources(folder, LONG_SOURCES)]
    )
    return Choice(folder, f"real, cut from {folder} ({', '.join(used) or 'no video files'})")


def sources(folder: Path, preferred: Sequence[str]) -> list[Path]:
    """The ``preferred`` files present in ``folder``; if none is, every video file there
    (sorted), never the :data:`EXCLUDED` ones."""
    found = [folder / n for n in preferred if (folder / n).is_file() and n not in EXCLUDED]
    if found:
        return found
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and p.name not in EXCLUDED
    )


def cache_key(srcs: Sequence[Path], *parts: object) -> str:
    """A short digest of :data:`VERSION`, ``parts`` and each source's name, size and mtime."""
    h = hashlib.sha1(repr((VERSION, *parts)).encode())
    for p in srcs:
        st = p.stat()
        h.update(f"\n{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- decoding


def _count_frames(path: Path) -> int:
    """Frames of the best video stream, from a demux-only pass (packets with a timestamp)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        if stream is None:
            return 0
        return sum(1 for p in container.demux(stream) if p.size and p.pts is not None)


def _crop_box(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest centred box of ``aspect`` (w/h) inside width x height."""
    if width / height > aspect:
        w = max(2, round(height * aspect))
        return (width - w) // 2, 0, w, height
    h = max(2, round(width / aspect))
    return 0, (height - h) // 2, width, h


def _frames(path: Path) -> Iterator[Any]:
    """Every frame of ``path``'s best video stream as decoded, in presentation order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        if stream is None:
            raise FootageError(f"{path}: no video stream")
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def _fit(frame: Any, size: tuple[int, int]) -> Any:
    """``frame`` centre-cropped to the aspect ratio of ``size`` (width, height), scaled to
    it, as a yuv420p ``av.VideoFrame``."""
    import av

    x, y, w, h = _crop_box(frame.width, frame.height, size[0] / size[1])
    rgb = frame.to_ndarray(format="rgb24")
    if (w, h) != (frame.width, frame.height):
        rgb = np.ascontiguousarray(rgb[y : y + h, x : x + w])
    out = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return out.reformat(width=size[0], height=size[1], format="yuv420p")


# --------------------------------------------------------------------------- encoding


class _Writer:
    """One output file: a video stream encoded to ``spec``, written to a temporary name."""

    def __init__(self, path: Path, spec: common.ClipSpec) -> None:
        import av

        self.path = path
        self.tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
        self.container = av.open(str(self.tmp), mode="w")
        self.stream = self.container.add_stream(spec.codec, rate=spec.fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = (
            spec.width,
            spec.height,
            "yuv420p",
        )
        opts = dict(ENCODER_DEFAULTS.get(spec.codec, {}))
        if spec.codec == "libx264":
            opts["bf"] = str(spec.bframes)
        opts.update(dict(spec.options))
        self.stream.options = opts
        self.stream.codec_context.gop_size = spec.gop
        if spec.codec != "libx264" and spec.bframes:
            self.stream.codec_context.max_b_frames = spec.bframes
        self.time_base = Fraction(1, spec.fps)
        self.written = 0

    def write(self, frame: Any) -> None:
        # the same frame may go to several writers: each sets its own timestamp
        frame.pts = self.written
        frame.time_base = self.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.written += 1

    def close(self) -> Path:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already broken: the partial file goes anyway
            pass
        self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- short clips


@dataclass(frozen=True)
class Cut:
    """One short clip: ``frames`` consecutive frames of ``source`` from ``start``."""

    source: Path
    start: int
    frames: int


def plan_short(
    srcs: Sequence[Path], counts: Sequence[int], count: int, spec: common.ClipSpec, seed: int = 0
) -> list[Cut]:
    """``count`` cuts spread over the sources in proportion to their length.

    Lengths are drawn from ``spec.num_frames`` (deterministic for ``seed``); a
    source shorter than the shortest clip is not used. Within one source the
    starts are evenly spaced from its first frame to its last possible start.
    The result interleaves the sources: the first cut of each, then the second...
    """
    low, high = (
        (spec.num_frames, spec.num_frames + 1)
        if isinstance(spec.num_frames, int)
        else spec.num_frames
    )
    usable = [(s, n) for s, n in zip(srcs, counts, strict=True) if n >= low]
    if not usable or count < 1:
        raise FootageError(f"no source has {low} frames or more")
    rng = np.random.default_rng(seed)
    lengths = [int(rng.integers(low, high)) for _ in range(count)]
    # largest remainder: each source's share of the clips, by frames
    total = sum(n for _, n in usable)
    shares = [count * n / total for _, n in usable]
    per = [int(x) for x in shares]
    for k in sorted(range(len(usable)), key=lambda k: per[k] - shares[k])[: count - sum(per)]:
        per[k] += 1
    cuts: list[Cut] = []
    rank = 0
    for j in range(max(per)):
        for (src, n), m in zip(usable, per, strict=True):
            if j >= m:
                continue
            length = min(lengths[rank], n)
            rank += 1
            last = n - length
            start = round(j * last / (m - 1)) if m > 1 else last // 2
            cuts.append(Cut(src, start, length))
    return cuts


def _read_manifest(folder: Path) -> list[Path] | None:
    try:
        names = json.loads((folder / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    paths = [folder / n for n in names]
    return paths if all(p.is_file() and p.stat().st_size > 0 for p in paths) else None


def _write_manifest(folder: Path, files: Sequence[Path], **info: Any) -> None:
    tmp = folder / f".manifest-{os.getpid()}.json"
    tmp.write_text(
        json.dumps({"version": VERSION, "files": [p.name for p in files], **info}, indent=1) + "\n"
    )
    os.replace(tmp, folder / "manifest.json")


def cut_short_clips(
    folder: Path,
    out_root: Path,
    count: int,
    spec: common.ClipSpec = common.SHORT_SPEC,
    *,
    seed: int = 0,
) -> list[Path]:
    """``count`` short clips cut from ``folder`` (:data:`SHORT_SOURCES`), cached in ``out_root``.

    Each source is decoded once; its frames go to every clip whose range covers them.
    """
    srcs = sources(folder, SHORT_SOURCES)
    if not srcs:
        raise FootageError(f"{folder}: no video files")
    out = Path(out_root) / f"real_short_{spec.tag()}_n{count}_s{seed}_{cache_key(srcs, spec)}"
    cached = _read_manifest(out)
    if cached is not None:
        return cached
    out.mkdir(parents=True, exist_ok=True)
    counts = [_count_frames(s) for s in srcs]
    # a demux count can exceed what decodes by a frame or two: leave a margin
    cuts = plan_short(srcs, [max(0, n - 2) for n in counts], count, spec, seed)
    paths = [
        out / f"clip_{k:03d}_{c.source.stem}_{c.start:04d}{spec.ext}" for k, c in enumerate(cuts)
    ]
    log.info("cutting %d short clips (%s) from %s into %s", count, spec.describe(), folder, out)
    with common.progress(
        total=sum(c.frames for c in cuts), desc="cutting short clips", unit="frame"
    ) as bar:
        for src in dict.fromkeys(c.source for c in cuts):
            mine = [(c, p) for c, p in zip(cuts, paths, strict=True) if c.source == src]
            _cut_one_source(src, mine, spec, bar)
    _write_manifest(
        out,
        paths,
        cuts=[
            {"file": p.name, "source": c.source.name, "start": c.start, "frames": c.frames}
            for c, p in zip(cuts, paths, strict=True)
        ],
    )
    return paths


def _cut_one_source(
    src: Path, cuts: list[tuple[Cut, Path]], spec: common.ClipSpec, bar: Any
) -> None:
    """Decode ``src`` once, feeding each frame to the open clips that cover it."""
    todo = [(c, p) for c, p in cuts if not (p.is_file() and p.stat().st_size > 0)]
    if not todo:
        return
    end = max(c.start + c.frames for c, _ in todo)
    open_: dict[Path, tuple[Cut, _Writer]] = {}
    try:
        for i, decoded in enumerate(_frames(src)):
            if i >= end:
                break
            for c, p in todo:
                if i == c.start:
                    open_[p] = (c, _Writer(p, spec))
            if not open_:
                continue  # a frame no clip takes: not converted
            frame = _fit(decoded, (spec.width, spec.height))
            for p, (c, w) in list(open_.items()):
                w.write(frame)
                bar.update()
                if w.written == c.frames:
                    w.close()
                    del open_[p]
        for p, (c, w) in list(open_.items()):  # the source ended early: keep what it gave
            log.warning(
                "%s ended at frame %d: %s has %d of %d frames",
                src,
                c.start + w.written,
                p.name,
                w.written,
                c.frames,
            )
            w.close()
            del open_[p]
    finally:
        for _, w in open_.values():
            w.abort()
    missing = [p.name for _, p in todo if not p.is_file()]
    if missing:
        raise FootageError(f"{src}: ended before clips {', '.join(missing)} started")


# --------------------------------------------------------------------------- long clip


def cut_long_clip(folder: Path, out_root: Path, spec: common.ClipSpec = common.LONG_SPEC) -> Path:
    """One long clip: :data:`LONG_SOURCES`' frames one after another (again from the first
    when they run out) up to ``spec.num_frames``, cached in ``out_root``."""
    srcs = sources(folder, LONG_SOURCES)
    if not srcs:
        raise FootageError(f"{folder}: no video files")
    n = spec.num_frames if isinstance(spec.num_frames, int) else spec.num_frames[1]
    out = Path(out_root)
    path = out / f"real_long_{spec.tag()}_{cache_key(srcs, spec)}{spec.ext}"
    if path.is_file() and path.stat().st_size > 0:
        return path
    out.mkdir(parents=True, exist_ok=True)
    log.info(
        "cutting the long clip (%s, %d frames) from %s to %s: a minute or two, once",
        spec.describe(),
        n,
        folder,
        path,
    )
    writer = _Writer(path, spec)
    try:
        with common.progress(total=n, desc="cutting the long clip", unit="frame") as bar:
            while writer.written < n:
                before = writer.written
                for src in srcs:
                    for frame in _frames(src):
                        writer.write(_fit(frame, (spec.width, spec.height)))
                        bar.update()
                        if writer.written == n:
                            break
                    if writer.written == n:
                        break
                if writer.written == before:
                    raise FootageError(f"{folder}: the sources gave no frame")
        return writer.close()
    except BaseException:
        writer.abort()
        raise


# ------------------------------------------------------------------ a suite's dataset


def footage_choice(args: Any) -> Choice:
    """Where this run's videos come from (:class:`Choice`):
    ``args.footage`` (``--footage DIR``), ``$FASTVID_BENCH_FOOTAGE`` or ``../shared/videos``;
    synthetic with ``args.synthetic`` or when no such folder exists."""
    return choose(getattr(args, "footage", None), synthetic=bool(getattr(args, "synthetic", False)))


def footage_status(args: Any) -> str:
    """The report header's ``footage:`` line: real or synthetic, and why."""
    if getattr(args, "files", None):
        text = f"{len(args.files)} given files"
        if getattr(args, "long", None):
            text += f", long clip {args.long}"
        return text
    fallback = getattr(args, "footage_fallback", None)
    if fallback:
        return fallback
    text = footage_choice(args).text
    if getattr(args, "long", None):
        text += f"; long clip: {args.long}"
    return text


def _fall_back(args: Any, error: Exception) -> None:
    log.warning("cutting real footage failed (%s): using synthetic videos", error)
    try:
        args.footage_fallback = f"synthetic (cutting real footage failed: {error})"
    except AttributeError:  # a read-only namespace: the log line above says it
        pass


def describe_short_clips(args: Any) -> str:
    """What :func:`short_clips` gave, for a table title: given files, or the spec and
    whether the clips were cut from real footage or generated."""
    if getattr(args, "files", None):
        return "given files"
    spec = common.QUICK_SHORT_SPEC if args.quick else common.SHORT_SPEC
    real = footage_choice(args).folder is not None and not getattr(args, "footage_fallback", None)
    return f"{'real footage' if real else 'synthetic'}, {spec.describe()}"


def synthetic_short_clips(args: Any) -> list[Path]:
    """The generated (synthetic) short clips, whatever footage is available."""
    spec = common.QUICK_SHORT_SPEC if args.quick else common.SHORT_SPEC
    count = getattr(args, "clips", None) or (6 if args.quick else 18)
    return common.ensure_short_clips(args.data_dir, count, spec=spec)


def short_clips(args: Any) -> list[Path]:
    """The dataset a suite should use: the user's files, else short clips cut from real
    footage (:func:`footage_choice`), else generated ones (see :func:`footage_status`)."""
    if getattr(args, "files", None):
        return list(args.files)
    choice = footage_choice(args)
    if choice.folder is not None and not getattr(args, "footage_fallback", None):
        import av  # noqa: PLC0415

        spec = common.QUICK_SHORT_SPEC if args.quick else common.SHORT_SPEC
        count = getattr(args, "clips", None) or (6 if args.quick else 18)
        try:
            return cut_short_clips(choice.folder, args.data_dir, count, spec)
        except (FootageError, av.FFmpegError) as e:  # no usable or a broken source
            _fall_back(args, e)
    return synthetic_short_clips(args)


def synthetic_long_clip(args: Any) -> Path:
    """The generated (synthetic) long clip."""
    return common.ensure_long_clip(
        args.data_dir, spec=common.QUICK_LONG_SPEC if args.quick else common.LONG_SPEC
    )


def long_clip(args: Any) -> Path | None:
    """The long clip: ``--long FILE``, else cut from real footage or generated (as
    :func:`short_clips`), unless the user gave files or ``--no-long``."""
    if getattr(args, "long", None):
        return Path(args.long)
    if getattr(args, "files", None) or getattr(args, "no_long", False):
        return None
    choice = footage_choice(args)
    if choice.folder is not None and not getattr(args, "footage_fallback", None):
        import av  # noqa: PLC0415

        spec = common.QUICK_LONG_SPEC if args.quick else common.LONG_SPEC
        try:
            return cut_long_clip(choice.folder, args.data_dir, spec)
        except (FootageError, av.FFmpegError) as e:
            _fall_back(args, e)
    return synthetic_long_clip(args)

"""What every benchmark suite shares: timing, result rows, tables, JSON, datasets.

A suite module (``fastvid.bench.decode``, ``.process``, ``.loaders``, ``.tfrecord``)
exposes ``add_arguments(parser)`` and ``run(args) -> list[dict]``. Its rows are
:class:`Result` (one measured method) and :class:`Target` (one goal of the issue,
met or not) turned into dicts with ``.to_dict()``; a suite may also return
``{"kind": "note", "suite": ..., "text": ...}`` dicts, printed above the tables
(what the dataset is, for instance). Within one table section
(``suite`` + ``group``) the ratio column divides each median by the median of
the section's reference row (``reference=True``, else the first ``fastvid`` row),
so a ratio above 1 means slower than fastvid.

``args`` as handed to ``run`` by :mod:`fastvid.bench.cli` always has:
``files`` (list[Path], the user's videos; empty when the harness makes its own),
``long`` (Path | None), ``data_dir`` (Path), ``quick`` (bool), ``repeats`` (int),
``warmup`` (int), ``progress`` (bool), ``footage`` (Path | None: ``--footage``) and
``synthetic`` (bool). Use :func:`fastvid.bench.footage.short_clips` and
:func:`~fastvid.bench.footage.long_clip` to get the shared dataset (cut from real
footage when a folder of it exists, else synthetic;
:func:`~fastvid.bench.footage.footage_status` says which), :func:`measure` to time,
and :func:`progress` for a bar on stderr.

A ``--quick`` run is a smoke run: the report shows no targets (:data:`SMOKE_LINE`
instead). Every report shows the load average at the start and the end, and a
WARNING when the machine was busy (:func:`busy_warning`).
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_REPEATS = 5
QUICK_REPEATS = 1

# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed repeat, and what the last call returned."""

    times: tuple[float, ...]
    value: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def measure(fn: Callable[[], Any], *, repeats: int = DEFAULT_REPEATS, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Garbage is collected before each call and the collector is paused while it
    runs, so one method does not pay for another's garbage.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    value = None
    for _ in range(max(0, warmup)):
        value = fn()
    times = []
    enabled = gc.isenabled()
    try:
        for _ in range(repeats):
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t0)
            if enabled:
                gc.enable()
    finally:
        if enabled:
            gc.enable()
    return Timing(tuple(times), value)


# --------------------------------------------------------------------------- rows


@dataclass
class Result:
    """One method measured on one workload: a row of the table.

    ``median_s``/``best_s`` are seconds per ``unit`` (e.g. "clip", "call",
    "batch"). ``frames_decoded`` is None when unknown (shown as "?");
    ``decoded_estimated`` marks an estimate (shown with "~"). ``skipped`` is the
    reason a method could not run (the row is shown without numbers).
    """

    suite: str
    group: str
    method: str
    median_s: float | None = None
    best_s: float | None = None
    repeats: int = 0
    unit: str = "call"
    frames_returned: int | None = None
    frames_decoded: int | None = None
    decoded_estimated: bool = False
    reference: bool = False
    note: str = ""
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_timing(cls, suite: str, group: str, method: str, timing: Timing, **kw: Any) -> Result:
        """A row from :func:`measure`'s result (``kw``: any other field)."""
        return cls(suite, group, method, timing.median, timing.best, len(timing.times), **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = "result"
        return d


@dataclass
class Target:
    """A goal of the project: ``measured`` compared with ``required``.

    ``measured`` is usually a speed ratio (how many times faster fastvid is);
    ``comparison`` is ">=" (at least) or "<=" (at most). None when a needed
    method did not run: the target is then "not measured", or ``unavailable``
    says why instead of a verdict (e.g. "peer not installed").
    """

    suite: str
    name: str
    measured: float | None
    required: float
    comparison: str = ">="
    detail: str = ""
    unavailable: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        if self.comparison == ">=":
            return self.measured >= self.required
        if self.comparison == "<=":
            return self.measured <= self.required
        raise ValueError(f"unknown comparison {self.comparison!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = "target"
        d["met"] = self.met
        return d


def _reference(rows: Sequence[dict]) -> dict | None:
    timed = [r for r in rows if r.get("median_s") is not None]
    for r in timed:
        if r.get("reference"):
            return r
    for r in timed:
        if str(r.get("method", "")).startswith("fastvid"):
            return r
    return None


def _groups(rows: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("kind", "result") == "result":
            groups.setdefault((r.get("suite", ""), r.get("group", "")), []).append(r)
    return groups


def add_derived(rows: list[dict]) -> list[dict]:
    """Add ``ratio_to_fastvid`` and ``decoded_per_returned`` to result rows, in place."""
    for members in _groups(rows).values():
        ref = _reference(members)
        for r in members:
            ratio = None
            if ref is not None and r.get("median_s") is not None and ref["median_s"] > 0:
                ratio = r["median_s"] / ref["median_s"]
            r["ratio_to_fastvid"] = ratio
            dec, ret = r.get("frames_decoded"), r.get("frames_returned")
            r["decoded_per_returned"] = dec / ret if dec is not None and ret else None
    return rows


def find(rows: Iterable[dict], *, group: str, method: str) -> dict | None:
    """The timed row of ``group`` whose method is ``method`` (None if absent/skipped)."""
    for r in rows:
        if (
            r.get("kind", "result") == "result"
            and r.get("group") == group
            and r.get("method") == method
            and r.get("median_s") is not None
        ):
            return r
    return None


def speedup(rows: Iterable[dict], group: str, slow: str, fast: str) -> float | None:
    """median(slow) / median(fast) within ``group``; None if either is missing."""
    rows = list(rows)
    a, b = find(rows, group=group, method=slow), find(rows, group=group, method=fast)
    if a is None or b is None or not b["median_s"]:
        return None
    return a["median_s"] / b["median_s"]


# --------------------------------------------------------------------------- rendering


def format_seconds(s: float | None) -> str:
    """``0.00123`` -> ``"1.23 ms"``; None -> ``"-"``."""
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def _table(header: Sequence[str], body: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            out.append(str(c).rjust(w) if i in right else str(c).ljust(w))
        return "  ".join(out).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(b) for b in body)]


def render_results(rows: Sequence[dict]) -> str:
    """The results as text tables, one section per (suite, group)."""
    rows = add_derived([dict(r) for r in rows])
    out: list[str] = []
    for (suite, group), members in _groups(rows).items():
        show_dec = any(r.get("frames_returned") for r in members)
        units = {r.get("unit", "call") for r in members if r.get("median_s") is not None}
        unit = units.pop() if len(units) == 1 else "call"
        header = ["method", f"median/{unit}", "best", "ratio to fastvid"]
        if show_dec:
            header.append("decoded/returned")
        header.append("note")
        body = []
        for r in members:
            if r.get("skipped"):
                cells = [r["method"], "-", "-", "-"] + (["-"] if show_dec else [])
                body.append(cells + [f"skipped: {r['skipped']}"])
                continue
            ratio = r.get("ratio_to_fastvid")
            cells = [
                r["method"],
                format_seconds(r.get("median_s")),
                format_seconds(r.get("best_s")),
                "-" if ratio is None else f"{ratio:.2f}x",
            ]
            if show_dec:
                dpr = r.get("decoded_per_returned")
                if dpr is None:
                    cells.append("?" if r.get("frames_returned") else "-")
                else:
                    cells.append(("~" if r.get("decoded_estimated") else "") + f"{dpr:.2f}")
            cells.append(r.get("note", ""))
            body.append(cells)
        out.append(f"== {suite}: {group} ==")
        out.extend(_table(header, body, right={1, 2, 3, 4} if show_dec else {1, 2, 3}))
        out.append("")
    return "\n".join(out)


def render_targets(targets: Sequence[dict]) -> str:
    """The targets section: one line per goal, met / NOT MET / not measured."""
    if not targets:
        return ""
    body = []
    for t in targets:
        met = t.get("met")
        status = "met" if met else ("not measured" if met is None else "NOT MET")
        if met is None and t.get("unavailable"):
            status = t["unavailable"]
        measured = t.get("measured")
        body.append(
            [
                status,
                t.get("suite", ""),
                t["name"],
                "-" if measured is None else f"{measured:.2f}",
                f"{t.get('comparison', '>=')} {t['required']:g}",
                t.get("detail", ""),
            ]
        )
    header = ["status", "suite", "target", "measured", "required", "detail"]
    lines = ["== targets ==", *_table(header, body, right={3})]
    return "\n".join(lines) + "\n"


def load_average() -> tuple[float, float, float] | None:
    """``os.getloadavg()``: the 1, 5 and 15-minute load averages (None where unknown)."""
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def _format_load(load: Sequence[float] | str | None) -> str:
    if load is None:
        return "?"
    if isinstance(load, str):
        return load
    return ", ".join(f"{x:.2f}" for x in load)


BUSY_FRACTION = 0.5  # a 1-minute load above this share of the cores at the start: busy


def busy_warning(machine: dict[str, Any]) -> str | None:
    """A WARNING line when the 1-minute load at the start exceeded :data:`BUSY_FRACTION`
    of the usable cores (other work competed for the CPU: figures are noisy), else None."""
    load = machine.get("load_start")
    cores = machine.get("cores_usable") or machine.get("cores_logical")
    if not load or not cores or load[0] <= BUSY_FRACTION * cores:
        return None
    return (
        f"WARNING: the machine was busy: 1-minute load average {load[0]:.2f} at the start "
        f"on {cores} cores (> {BUSY_FRACTION:g} x cores); other work competed for the CPU, "
        f"so the figures are noisy"
    )


def render_machine(machine: dict[str, Any]) -> str:
    """A few header lines describing the machine, its load and the library versions."""
    v = machine.get("versions", {})
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    load = f"load average (1, 5, 15 min): start {_format_load(machine.get('loadavg'))}"
    if "load_end" in machine:
        load += f"; end {_format_load(machine.get('load_end'))}"
    lines = [
        f"fastvid bench · {machine.get('date', '')}",
        f"machine: {machine.get('cpu', '?')}, {machine.get('cores_usable', '?')} usable cores"
        f" ({machine.get('cores_logical', '?')} logical), {machine.get('memory_gb', '?')} GB,"
        f" {machine.get('platform', '')}",
        load,
        f"versions: {libs}",
    ]
    if machine.get("gpu"):
        lines.append(f"gpu: {machine['gpu']}")
    warning = busy_warning(machine)
    if warning:
        lines.append(warning)
    return "\n".join(lines) + "\n"


SMOKE_LINE = "smoke run (--quick): no verdicts"


def render_report(report: dict[str, Any]) -> str:
    """The whole text report: machine header, footage, configuration, tables, targets.

    A ``--quick`` run (``config["quick"]``) is a smoke run: no targets section, one
    line saying so instead.
    """
    parts = [render_machine(report.get("machine", {}))]
    if report.get("footage"):
        parts.append(f"footage: {report['footage']}\n")
    config = report.get("config")
    if config:
        parts.append("config: " + ", ".join(f"{k}={v}" for k, v in config.items()) + "\n")
    rows = report.get("rows", [])
    notes = [f"{r.get('suite', '')}: {r['text']}" for r in rows if r.get("kind") == "note"]
    if notes:
        parts.append("\n".join(notes) + "\n")
    parts.append(render_results([r for r in rows if r.get("kind", "result") == "result"]))
    if (config or {}).get("quick"):
        parts.append(SMOKE_LINE + "\n")
    else:
        parts.append(render_targets([r for r in rows if r.get("kind") == "target"]))
    return "\n".join(p for p in parts if p)


def write_json(path: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Write the report (machine, config, rows with derived columns) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(report)
    data["rows"] = add_derived([dict(r) for r in report.get("rows", [])])
    path.write_text(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- progress

_progress_enabled: bool | None = None  # None: only when stderr is a terminal


def set_progress(enabled: bool | None) -> None:
    """Force progress bars on/off (None: on when stderr is a terminal)."""
    global _progress_enabled
    _progress_enabled = enabled


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
) -> Any:
    """A tqdm progress bar on stderr (a no-op bar when disabled)."""
    from tqdm import tqdm

    disable = None if _progress_enabled is None else not _progress_enabled
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        leave=False,
        disable=disable,
        dynamic_ncols=True,
    )


# --------------------------------------------------------------------------- machine


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.replace("\n", "; ") or None


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, library versions and the date: the table's header.

    Versions come from package metadata, so TensorFlow and CuPy are not imported.
    """
    usable = usable_cores()
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    load = load_average()
    loadavg = _format_load(load) if load is not None else None
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in [
        ("fastvid", "fastvid"),
        ("av", "av"),
        ("opencv", "opencv-contrib-python-headless"),
        ("numpy", "numpy"),
        ("decord", "decord"),
        ("decord2", "decord2"),
        ("torch", "torch"),
        ("torchcodec", "torchcodec"),
        ("tensorflow", "tensorflow"),
        ("keras", "keras"),
        ("cupy", "cupy-cuda12x"),
    ]:
        versions[name] = _version(dist)
    if versions["opencv"] is None:
        versions["opencv"] = _version("opencv-python") or _version("opencv-python-headless")
    try:
        import av

        lav = av.library_versions.get("libavcodec")
        if lav:
            versions["libavcodec"] = ".".join(map(str, lav))
    except ImportError:
        pass
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "memory_gb": memory_gb,
        "loadavg": loadavg,
        "load_start": list(load) if load is not None else None,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "gpu": _gpu(),
        "versions": versions,
    }


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class ClipSpec:
    """How a generated benchmark video is encoded (see :func:`fastvid.synth.make_video`).

    ``num_frames`` is a count, or a ``(low, high)`` range drawn per clip.
    """

    width: int
    height: int
    num_frames: int | tuple[int, int]
    fps: int = 25
    codec: str = "mpeg4"
    gop: int = 12
    bframes: int = 0
    ext: str = ".avi"
    options: tuple[tuple[str, str], ...] = ()

    def tag(self) -> str:
        n = (
            self.num_frames
            if isinstance(self.num_frames, int)
            else "-".join(map(str, self.num_frames))
        )
        # a short digest of the encoder options keeps file names readable
        opts = f"_{zlib.crc32(repr(self.options).encode()):08x}" if self.options else ""
        return (
            f"{self.width}x{self.height}_{n}f_{self.fps}fps_{self.codec}"
            f"_g{self.gop}_bf{self.bframes}{opts}"
        )

    def describe(self) -> str:
        n = self.num_frames if isinstance(self.num_frames, int) else sum(self.num_frames) / 2
        secs = n / self.fps
        b = f", {self.bframes} B-frames" if self.bframes else ""
        return (
            f"{self.width}x{self.height} {self.codec} {self.ext.lstrip('.')}, "
            f"GOP {self.gop}{b}, {self.fps} fps, ~{secs:.0f} s"
        )


# UCF101-like: 320x240 mpeg4 AVI, GOP 12, 25 fps, 4-6 s (lengths vary like real clips)
SHORT_SPEC = ClipSpec(320, 240, (100, 151), codec="mpeg4", gop=12, ext=".avi")
# Long 720p h264 with x264's default keyint 250 and 3 B-frames. On our synthetic
# pictures x264's adaptive B-frame decision picks almost only P-frames, unlike
# camera footage, so b-adapt=0 forces the IBBBP pattern (b-pyramid keeps the
# middle B as a reference, as x264 does by default).


def x264_options(gop: int) -> tuple[tuple[str, str], ...]:
    """Encoder options for a B-frame h264 clip with keyframes every ``gop`` frames."""
    return (
        ("preset", "veryfast"),
        ("x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0:b-adapt=0"),
    )


_X264_LONG = x264_options(250)
LONG_SPEC = ClipSpec(
    1280, 720, 1600, codec="libx264", gop=250, bframes=3, ext=".mp4", options=_X264_LONG
)
# --quick: same shapes of file, shorter and smaller, for smoke runs and tests
QUICK_SHORT_SPEC = ClipSpec(320, 240, (60, 81), codec="mpeg4", gop=12, ext=".avi")
QUICK_LONG_SPEC = ClipSpec(
    640, 360, 500, codec="libx264", gop=250, bframes=3, ext=".mp4", options=_X264_LONG
)


def _encode(path: Path, num_frames: int, spec: ClipSpec, motion: tuple[int, int]) -> Path:
    """Encode to a temporary name and rename, so an interrupted run leaves no half file."""
    from fastvid.synth import make_video

    if path.exists() and path.stat().st_size > 0:
        return path
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        make_video(
            tmp,
            num_frames,
            width=spec.width,
            height=spec.height,
            fps=spec.fps,
            codec=spec.codec,
            gop=spec.gop,
            bframes=spec.bframes,
            motion=motion,
            options=dict(spec.options) or None,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def ensure_short_clips(
    directory: str | os.PathLike[str],
    count: int = 18,
    *,
    spec: ClipSpec = SHORT_SPEC,
    seed: int = 0,
) -> list[Path]:
    """``count`` UCF101-like clips under ``directory``, encoded once and reused.

    The files live in a sub-folder named after ``spec``, so changing the spec
    never reuses clips of another shape. Deterministic for a given ``seed``.
    """
    import numpy as np

    from fastvid.synth import MOTIONS

    folder = Path(directory) / f"short_{spec.tag()}_s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    motions = list(MOTIONS.values())
    paths = []
    todo = []
    for k in range(count):
        n = (
            spec.num_frames
            if isinstance(spec.num_frames, int)
            else int(rng.integers(*spec.num_frames))
        )
        path = folder / f"clip_{k:03d}{spec.ext}"
        paths.append(path)
        if not (path.exists() and path.stat().st_size > 0):
            todo.append((path, n, motions[k % len(motions)]))
    if todo:
        log.info("encoding %d short clips (%s) in %s", len(todo), spec.describe(), folder)
        for path, n, motion in progress(todo, desc="encoding short clips", unit="clip"):
            _encode(path, n, spec, motion)
    return paths


def ensure_long_clip(directory: str | os.PathLike[str], *, spec: ClipSpec = LONG_SPEC) -> Path:
    """One long clip (default 1280x720, 64 s h264, keyint 250, B-frames), encoded once."""
    path = Path(directory) / f"long_{spec.tag()}{spec.ext}"
    if not (path.exists() and path.stat().st_size > 0):
        n = spec.num_frames if isinstance(spec.num_frames, int) else spec.num_frames[1]
        log.info(
            "encoding the long clip (%s, %d frames) to %s: takes a minute or two, once",
            spec.describe(),
            n,
            path,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        _encode(path, n, spec, (3, 2))
    return path


def default_data_dir() -> Path:
    """Where generated benchmark videos are cached: ``$FASTVID_BENCH_DATA`` or ~/.cache."""
    env = os.environ.get("FASTVID_BENCH_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastvid" / "bench"

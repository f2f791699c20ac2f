"""Which videos a conversion reads, and their labels: a folder, a ``{classname}`` glob or a CSV.

Pure file-system work, no decoding. Every source gives the same thing: a sorted
list of :class:`Source` (path, label index, class name) and the class names,
index = position in the sorted list, as keras-video-generators numbers them.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

# what a folder source picks up (lower-case suffixes)
VIDEO_EXTENSIONS = frozenset(
    ".avi .mp4 .m4v .mkv .webm .mov .mpg .mpeg .wmv .flv .ogv .3gp .ts .mts .m2ts".split()
)


@dataclass(frozen=True)
class Source:
    """One video to convert: its path, label index (-1: unlabelled) and class name."""

    path: str
    label: int = -1
    class_name: str = ""


def discover(src: str | os.PathLike[str]) -> tuple[list[Source], list[str]]:
    """Videos and class names of ``src``: a folder, a glob with ``{classname}`` or a CSV.

    * folder: each sub-folder holding videos is a class (videos found recursively
      below it); a folder with videos and no sub-folders gives unlabelled videos.
    * glob: ``{classname}`` marks the path component that names the class,
      e.g. ``videos/{classname}/*.avi``; a glob without it gives unlabelled videos.
    * CSV (``.csv``): rows ``path,label``; relative paths are relative to the CSV's
      folder; a first row whose label column is ``label`` is a header. Labels that are
      all integers are class indices; otherwise they are class names.

    Raises ``FileNotFoundError`` when ``src`` matches no video.
    """
    text = os.fspath(src)
    if "{classname}" in text or glob.has_magic(text):
        sources, classes = _from_glob(text)
    elif text.lower().endswith(".csv") and os.path.isfile(text):
        sources, classes = _from_csv(Path(text))
    elif os.path.isdir(text):
        sources, classes = _from_folder(Path(text))
    else:
        raise FileNotFoundError(f"{text}: not a folder, a glob or a CSV file")
    if not sources:
        raise FileNotFoundError(f"{text}: no video found")
    return sources, classes


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _from_folder(root: Path) -> tuple[list[Source], list[str]]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    labelled = {d.name: sorted(str(p) for p in d.rglob("*") if _is_video(p)) for d in subdirs}
    classes = sorted(name for name, files in labelled.items() if files)
    if not classes:
        files = sorted(str(p) for p in root.iterdir() if _is_video(p))
        return [Source(f) for f in files], []
    sources = [Source(f, i, name) for i, name in enumerate(classes) for f in labelled[name]]
    return sorted(sources, key=lambda s: s.path), classes


def _from_glob(pattern: str) -> tuple[list[Source], list[str]]:
    if "{classname}" not in pattern:
        files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        return [Source(f) for f in files], []
    from fastvid.dataset import find_files  # noqa: PLC0415 (the generators' discovery)

    by_class = find_files(pattern)
    classes = [name for name, files in by_class.items() if files]
    sources = [Source(f, i, name) for i, name in enumerate(classes) for f in by_class[name]]
    return sorted(sources, key=lambda s: s.path), classes


def _from_csv(path: Path) -> tuple[list[Source], list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    if rows and len(rows[0]) >= 2 and rows[0][1].strip().lower() in ("label", "class"):
        rows = rows[1:]
    entries = []
    for line, row in enumerate(rows, 1):
        if len(row) < 2:
            raise ValueError(f"{path}: row {line} needs 'path,label', got {row!r}")
        video = Path(row[0].strip())
        if not video.is_absolute():
            video = path.parent / video
        entries.append((str(video), row[1].strip()))
    if all(label.isdigit() for _, label in entries):
        count = max((int(label) for _, label in entries), default=-1) + 1
        classes = [str(i) for i in range(count)]
        sources = [Source(p, int(label), label) for p, label in entries]
    else:
        classes = sorted({label for _, label in entries})
        index = {name: i for i, name in enumerate(classes)}
        sources = [Source(p, index[label], label) for p, label in entries]
    # keep CSV rows in a stable, machine-independent order (sharding depends on it)
    return sorted(sources, key=lambda s: (s.path, s.label)), classes

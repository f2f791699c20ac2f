"""Which files make the dataset: discovery from a glob pattern, labels, splits.

``glob_pattern`` is an ordinary :mod:`glob` pattern in which ``{classname}``
stands for the class: a directory (``videos/{classname}/*.avi``) or part of a
file name (``videos/{classname}_*.avi``). It may appear more than once (every
occurrence must then hold the same name). Everything else keeps its glob
meaning (``*``, ``?``, ``[...]``, ``**``); characters that are special to
regular expressions but not to glob (``( ) + . $ ^ { } |``), spaces and
non-ASCII names are taken literally. Backslashes are path separators, so a
Windows pattern written on POSIX (``foo\\bar\\{classname}_*.avi``) still works.
A literal ``[`` in a directory name must be escaped as for glob (``glob.escape``).

No file is opened here: this module only lists names.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CLASSNAME = "{classname}"


def _norm(path: str) -> str:
    """A path in one canonical spelling: ``/`` separators, no ``./`` or ``//``."""
    path = os.fspath(path).replace("\\", "/")
    if not path:
        return path
    drive = ""
    if len(path) >= 2 and path[1] == ":":  # keep "C:" out of normpath's way on POSIX
        drive, path = path[:2], path[2:]
    return drive + posixpath.normpath(path)


def _glob_to_regex(pattern: str, classes: Sequence[str] | None) -> str:
    """Translate a normalised glob pattern with ``{classname}`` into a regex."""
    if classes:
        # longest first: with "a" and "a_b" both classes, "a_b_1.avi" is "a_b"
        alternatives = sorted(set(classes), key=lambda c: (-len(c), c))
        capture = "(?P<classname>" + "|".join(re.escape(c) for c in alternatives) + ")"
    else:
        capture = "(?P<classname>[^/]+?)"
    out: list[str] = []
    seen_class = False
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith(CLASSNAME, i):
            out.append("(?P=classname)" if seen_class else capture)
            seen_class = True
            i += len(CLASSNAME)
            continue
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**/", i):
                out.append("(?:[^/]*/)*")  # recursive: zero or more directories
                i += 3
            elif pattern.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append("[^/]*")
                i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
                i += 1
                continue
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    if not seen_class:
        raise ValueError(f"glob_pattern must contain {CLASSNAME}: {pattern!r}")
    return "".join(out)


def _glob_pattern(pattern: str) -> str:
    """The pattern as :mod:`glob` should see it on this OS."""
    if os.sep == "/":
        return pattern.replace("\\", "/")
    return pattern


def classname_of(
    path: str | os.PathLike[str], glob_pattern: str, classes: Sequence[str] | None = None
) -> str | None:
    """The class of ``path`` according to ``glob_pattern``, or None if it does not match.

    With ``classes`` given, only those names can match (the longest one wins
    when several could); without, the shortest name that makes the path match
    is taken (``{classname}_*.avi`` reads ``a_b_1.avi`` as class ``a``).
    """
    pattern = _norm(glob_pattern)
    regex = re.compile(_glob_to_regex(pattern, classes), re.DOTALL)
    candidate = _norm(os.fspath(path))
    match = regex.fullmatch(candidate)
    if match is None and os.path.isabs(candidate) != os.path.isabs(pattern):
        # one absolute, one relative: compare both absolute
        regex = re.compile(_glob_to_regex(_norm(os.path.abspath(pattern)), classes), re.DOTALL)
        match = regex.fullmatch(_norm(os.path.abspath(candidate)))
    return match.group("classname") if match else None


def _glob_files(pattern: str) -> list[str]:
    return [p for p in glob.glob(_glob_pattern(pattern), recursive=True) if not os.path.isdir(p)]


def discover_classes(glob_pattern: str) -> list[str]:
    """Sorted class names found on disk for ``glob_pattern``."""
    found = set()
    for path in _glob_files(glob_pattern.replace(CLASSNAME, "*")):
        name = classname_of(path, glob_pattern)
        if name:
            found.add(name)
    return sorted(found)


def find_files(glob_pattern: str, classes: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``{class: sorted file paths}`` for every class (discovered when None).

    A file belongs to one class only: the one :func:`classname_of` reads from
    it. Classes are returned in sorted order; a class without files maps to [].
    """
    classes = sorted(set(classes)) if classes is not None else discover_classes(glob_pattern)
    by_class: dict[str, list[str]] = {c: [] for c in classes}
    if not classes:
        return by_class
    seen = set()
    for cls in classes:
        # a class name may itself hold glob characters: escape it for the glob,
        # then let the regex decide which class each file really belongs to
        for path in _glob_files(glob_pattern.replace(CLASSNAME, glob.escape(cls))):
            key = _norm(path)
            if key in seen:
                continue
            owner = classname_of(path, glob_pattern, classes)
            if owner is not None:
                seen.add(key)
                by_class[owner].append(path)
    for files in by_class.values():
        files.sort()
    return by_class


@dataclass(frozen=True)
class Split:
    """Files of each part of a split, as ``(path, class index)`` pairs."""

    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.validation), len(self.test)


def fresh_seed() -> int:
    """A seed from the OS's entropy (when the user gave none)."""
    return int(np.random.SeedSequence().generate_state(2, np.uint64)[0] >> np.uint64(1))


def _check_fraction(name: str, value: float | None) -> float:
    if value is None:
        return 0.0
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def split_files(
    files_by_class: Mapping[str, Sequence[str]],
    split_val: float | None = None,
    split_test: float | None = None,
    seed: int | None = None,
    *,
    classes: Sequence[str] | None = None,
) -> Split:
    """Split each class's files into train, validation and test, as keras-video-generators.

    For a class of ``n`` files, ``int(split_val * n)`` go to validation, then
    ``int(split_test * rest)`` of the remaining ones to test; the others train.
    Which files is drawn from ``seed`` (each class from its own stream, so
    adding a class does not reshuffle the others). Class indices follow the
    sorted class names (or the order of ``classes``, when given). Within each part
    files keep their order.
    """
    split_val = _check_fraction("split_val", split_val)
    split_test = _check_fraction("split_test", split_test)
    classes = sorted(files_by_class) if classes is None else list(classes)
    base = seed if seed is not None else fresh_seed()
    train: list[tuple[str, int]] = []
    validation: list[tuple[str, int]] = []
    test: list[tuple[str, int]] = []
    for label, cls in enumerate(classes):
        files = list(files_by_class[cls])
        n = len(files)
        tag = int.from_bytes(hashlib.blake2b(cls.encode("utf-8"), digest_size=8).digest(), "little")
        rng = np.random.default_rng([base, tag])
        perm = rng.permutation(n)
        n_val = int(split_val * n)
        n_test = int(split_test * (n - n_val))
        val_idx = set(perm[:n_val].tolist())
        test_idx = set(perm[n_val : n_val + n_test].tolist())
        for k, path in enumerate(files):
            part = validation if k in val_idx else test if k in test_idx else train
            part.append((path, label))
    return Split(train, validation, test)


def find_files_or_raise(
    glob_pattern: str, classes: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """:func:`find_files`, with a warning for classes without files and ``ValueError``
    (naming the pattern) when no file matches. An empty ``classes`` means "discover"."""
    classes = list(classes) if classes else None  # keras-video-generators' [] meant "discover"
    by_class = find_files(glob_pattern, classes)
    found = [c for c, files in by_class.items() if files]
    if classes is not None and len(found) < len(by_class):
        log.warning(
            "classes without any file for %r: %s",
            glob_pattern,
            ", ".join(c for c in by_class if not by_class[c]),
        )
    if not found:
        raise ValueError(
            f"no video file matches glob_pattern={glob_pattern!r}"
            + (f" for classes {sorted(classes)}" if classes is not None else "")
            + "; check the path and that it contains {classname}"
        )
    return by_class


def report_split(
    split: Split,
    files_by_class: Mapping[str, Sequence[str]],
    source: str,
    split_val: float | None,
    split_test: float | None,
) -> None:
    """Log a split's sizes once, and warn when a fraction gives no file at all."""
    n_train, n_val, n_test = split.sizes()
    largest = max((len(f) for f in files_by_class.values()), default=0)
    for name, fraction, count in (
        ("split_val", split_val, n_val),
        ("split_test", split_test, n_test),
    ):
        if fraction and not count:
            log.warning(
                "%s=%s gives no file: int(%s x files of a class) rounds down to 0 for every "
                "class (largest class: %d files)",
                name,
                fraction,
                fraction,
                largest,
            )
    log.info(
        "%d classes, %d files for %r: train %d, validation %d, test %d",
        len(files_by_class),
        n_train + n_val + n_test,
        source,
        n_train,
        n_val,
        n_test,
    )


# ---------------------------------------------------------------------- sources

# what a folder source picks up (lower-case suffixes)
VIDEO_EXTENSIONS = frozenset(
    ".avi .mp4 .m4v .mkv .webm .mov .mpg .mpeg .wmv .flv .ogv .3gp .ts .mts .m2ts".split()
)

Labelled = list[tuple[str, int]]  # (path, class index; -1: unlabelled)


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """A file whose suffix is one of :data:`VIDEO_EXTENSIONS`."""
    return os.path.isfile(path) and os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def discover(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    labels: Sequence[str | int] | None = None,
    *,
    classes: Sequence[str] | None = None,
) -> tuple[Labelled, list[str]]:
    """The files of a dataset with their class indices, and the class names.

    ``source`` is one of:

    * a glob with ``{classname}`` (``videos/{classname}/*.avi``): classes from the
      paths (only ``classes`` when given);
    * a folder: each sub-folder holding videos is a class (videos found
      recursively below it); a folder with videos and no sub-folders gives
      unlabelled videos (label -1);
    * a CSV file of ``path,label`` rows (relative paths are relative to the CSV's
      folder; a first row whose label column reads ``label`` or ``class`` is a
      header; ``#`` starts a comment row);
    * a list of paths, with ``labels``: one per path, class names or ints.

    Class names are sorted and numbered in that order (as keras-video-generators
    and Keras's ``image_dataset_from_directory`` do); integer labels are class
    indices themselves (names ``"0"``, ``"1"``, ...). Raises ``FileNotFoundError``
    when nothing matches, ``ValueError`` for labels that do not fit.
    """
    if not isinstance(source, str | os.PathLike):
        paths = [os.fspath(p) for p in source]
        if labels is None:
            raise ValueError("a list of paths needs labels (one per path), or pass labels=[]")
        if len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        return _label(list(zip(paths, labels, strict=True)), classes, "the paths given")
    text = os.fspath(source)
    if labels is not None:
        raise ValueError("labels= goes with a list of paths, not with a folder, glob or CSV")
    if CLASSNAME in text:
        by_class = find_files_or_raise(text, classes)
        names = sorted(by_class)  # the classes given, or those found (sorted already)
        index = {c: i for i, c in enumerate(names)}
        return sorted((p, index[c]) for c, ps in by_class.items() for p in ps), names
    if text.lower().endswith(".csv") and os.path.isfile(text):
        return _label(_read_csv(text), classes, text)
    if os.path.isdir(text):
        return _from_folder(text, classes)
    if glob.has_magic(text):
        found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not found:
            raise FileNotFoundError(f"{text}: no video found")
        return [(p, -1) for p in found], []
    raise FileNotFoundError(f"{text}: not a folder, a glob or a CSV file")


def _from_folder(root: str, classes: Sequence[str] | None) -> tuple[Labelled, list[str]]:
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    found = {}
    for name in subdirs:
        if classes is not None and name not in classes:
            continue
        videos = sorted(
            os.path.join(d, f)
            for d, _, fs in os.walk(os.path.join(root, name))
            for f in fs
            if is_video_file(os.path.join(d, f))
        )
        if videos:
            found[name] = videos
    if not found:
        files = sorted(
            os.path.join(root, f) for f in os.listdir(root) if is_video_file(os.path.join(root, f))
        )
        if not files:
            raise FileNotFoundError(f"{root}: no video found")
        return [(f, -1) for f in files], []
    names = sorted(found) if classes is None else sorted(classes)
    index = {c: i for i, c in enumerate(names)}
    return sorted((p, index[c]) for c, ps in found.items() for p in ps), names


def _read_csv(path: str) -> list[tuple[str, str | int]]:
    import csv  # noqa: PLC0415

    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    if rows and len(rows[0]) >= 2 and rows[0][1].strip().lower() in ("label", "class"):
        rows = rows[1:]
    entries: list[tuple[str, str | int]] = []
    for line, row in enumerate(rows, 1):
        if len(row) < 2:
            raise ValueError(f"{path}: row {line} needs 'path,label', got {row!r}")
        video = row[0].strip()
        if not os.path.isabs(video):
            video = os.path.join(os.path.dirname(path), video)
        entries.append((video, row[1].strip()))
    if not entries:
        raise FileNotFoundError(f"{path}: no video listed")
    return entries


def _label(
    entries: list[tuple[str, str | int]], classes: Sequence[str] | None, where: str
) -> tuple[Labelled, list[str]]:
    """(path, label) pairs whose labels are names or ints -> class indices and names."""
    values = [label for _, label in entries]
    if all(isinstance(v, int | np.integer) or str(v).isdigit() for v in values) and (
        classes is None or not any(str(v) in classes for v in values)
    ):
        ints = [int(v) for v in values]
        count = max(ints, default=-1) + 1
        names = list(classes) if classes is not None else [str(i) for i in range(count)]
        if count > len(names):
            raise ValueError(f"{where}: label {count - 1} but only {len(names)} classes")
        return sorted((p, i) for (p, _), i in zip(entries, ints, strict=True)), names
    names = sorted(classes) if classes is not None else sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({str(v) for v in values} - set(index))
    if unknown:
        raise ValueError(f"{where}: labels {unknown} are not among classes {names}")
    return sorted((p, index[str(v)]) for p, v in entries), names

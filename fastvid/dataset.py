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
) -> Split:
    """Split each class's files into train, validation and test, as keras-video-generators.

    For a class of ``n`` files, ``int(split_val * n)`` go to validation, then
    ``int(split_test * rest)`` of the remaining ones to test; the others train.
    Which files is drawn from ``seed`` (each class from its own stream, so
    adding a class does not reshuffle the others). Class indices follow the
    sorted class names. Within each part files keep their sorted order.
    """
    split_val = _check_fraction("split_val", split_val)
    split_test = _check_fraction("split_test", split_test)
    classes = sorted(files_by_class)
    base = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    train, validation, test = [], [], []
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

"""Errors raised by fastvid."""

from __future__ import annotations

import os


class VideoError(OSError):
    """A video file cannot be read, or cannot give the frames asked for.

    A subclass of :class:`OSError`, so ``except OSError`` keeps working in code
    written for OpenCV-based loaders. ``path`` is the file and ``reason`` a
    sentence a person understands; ``str(err)`` holds both.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep the (path, reason) pair through pickling (multiprocessing)
        return (type(self), (self.path, self.reason))

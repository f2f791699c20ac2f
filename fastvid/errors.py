"""Errors raised by fastvid: one base, one class per reason a video cannot be read.

Every error fastvid raises on purpose is a :class:`FastvidError`. A file that
cannot give what was asked raises a :class:`VideoError` subclass naming the
file (``.path``) and the reason in words (``.reason``); each also subclasses
the builtin that fits it, as PyAV's errors do, so ``except OSError`` or
``except FileNotFoundError`` keeps working in code that never heard of fastvid::

    FastvidError
    +-- VideoError (OSError)                 a file cannot give the frames asked for
    |   +-- VideoNotFoundError (FileNotFoundError)
    |   +-- NotAMediaFileError               not a container FFmpeg can open
    |   +-- NoVideoStreamError               no (such) video stream
    |   +-- UnsupportedCodecError            no decoder for the stream's codec (``.codec``)
    |   +-- CorruptVideoError                truncated or damaged data
    |   +-- VideoTooShortError               fewer frames than the request needs
    +-- DeviceUnavailableError (RuntimeError)  device="cuda" without CuPy or a GPU

Only decoding problems become a :class:`VideoError`: a bug in fastvid or a
``MemoryError`` propagates as itself, so it is never mistaken for a bad file.
"""

from __future__ import annotations

import errno
import os
from typing import Any


class FastvidError(Exception):
    """Base class of the errors fastvid raises on purpose."""


def _rebuild(cls: type, args: tuple, state: dict[str, Any]) -> BaseException:
    err = cls(*args)
    err.__dict__.update(state)
    return err


class VideoError(FastvidError, OSError):
    """A video file cannot be read, or cannot give the frames asked for.

    A subclass of :class:`OSError`, so ``except OSError`` keeps working in code
    written for OpenCV-based loaders. ``path`` is the file and ``reason`` a
    sentence a person understands; ``str(err)`` holds both. The subclasses say
    which reason it is, so a program can decide by type.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
        self.filename = self.path

    def __str__(self) -> str:  # OSError's own would print errno and filename fields
        return f"{self.path}: {self.reason}"

    def __reduce__(self):  # keep the arguments and attributes through pickling
        state = {k: v for k, v in self.__dict__.items() if k not in ("path", "reason")}
        return (_rebuild, (type(self), (self.path, self.reason), state))


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The file does not exist (also a :class:`FileNotFoundError`)."""

    def __init__(self, path: str | os.PathLike[str], reason: str = "file not found") -> None:
        super().__init__(path, reason)
        self.errno = errno.ENOENT


class NotAMediaFileError(VideoError):
    """FFmpeg cannot open the file as a media container (a text file, a directory...)."""


class NoVideoStreamError(VideoError):
    """The container holds no video stream, or not the one asked for."""


class UnsupportedCodecError(VideoError):
    """The stream's codec has no decoder in this FFmpeg build; ``codec`` names it."""

    def __init__(self, path: str | os.PathLike[str], reason: str, codec: str = "") -> None:
        super().__init__(path, reason)
        self.codec = codec


class CorruptVideoError(VideoError):
    """The data is truncated or damaged: frames it should hold cannot be decoded."""


class VideoTooShortError(VideoError):
    """The video has fewer frames than the request needs (``num_frames``, ``needed``)."""

    def __init__(
        self, path: str | os.PathLike[str], reason: str, num_frames: int = 0, needed: int = 0
    ) -> None:
        super().__init__(path, reason)
        self.num_frames = num_frames
        self.needed = needed


class DeviceUnavailableError(FastvidError, RuntimeError):
    """``device="cuda"`` was asked for, but CuPy or a CUDA device is missing."""

"""fastvid: a fast video input pipeline for Keras.

Light to import: the reader and the benchmark need neither TensorFlow nor
CuPy, so the names below are loaded on first use. ``fastvid.VideoReader``
imports PyAV and NumPy only; the generators import Keras when first touched.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastvid.errors import (
    CorruptVideoError,
    DeviceUnavailableError,
    FastvidError,
    NotAMediaFileError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoError,
    VideoNotFoundError,
    VideoTooShortError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "VideoReader": "fastvid.reader",
    "VideoMetadata": "fastvid.reader",
    "read_clips": "fastvid.reader",
    "prepare": "fastvid.ops",
    "motion": "fastvid.ops",
    "AugmentParams": "fastvid.ops",
    "METHOD_OPTICAL_FLOW": "fastvid.ops",
    "METHOD_FLOW_MASK": "fastvid.ops",
    "METHOD_DIFF_MASK": "fastvid.ops",
    "METHOD_ABS_DIFF": "fastvid.ops",
    "to_backend": "fastvid.bridge",
    "VideoFrameGenerator": "fastvid.keras",
    "SlidingFrameGenerator": "fastvid.keras",
    "OpticalFlowGenerator": "fastvid.keras",
    "ClipLoader": "fastvid.loader",
    "video_dataset_from_directory": "fastvid.tfdata",
}

__all__ = [
    "METHOD_ABS_DIFF",
    "METHOD_DIFF_MASK",
    "METHOD_FLOW_MASK",
    "METHOD_OPTICAL_FLOW",
    "AugmentParams",
    "ClipLoader",
    "CorruptVideoError",
    "DeviceUnavailableError",
    "FastvidError",
    "NoVideoStreamError",
    "NotAMediaFileError",
    "OpticalFlowGenerator",
    "SlidingFrameGenerator",
    "UnsupportedCodecError",
    "VideoError",
    "VideoFrameGenerator",
    "VideoMetadata",
    "VideoNotFoundError",
    "VideoReader",
    "VideoTooShortError",
    "__version__",
    "motion",
    "prepare",
    "read_clips",
    "to_backend",
    "video_dataset_from_directory",
]
assert set(_LAZY) <= set(__all__)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastvid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

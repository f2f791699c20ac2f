"""Argument checks shared by the public API: errors that name the parameter and the value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def _received(value: Any) -> str:
    return f"Received: {value!r} of type {type(value).__name__}"


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, never for ``bool``."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def size_hw(value: Any, name: str) -> tuple[int, int]:
    """``value`` as a ``(height, width)`` pair of positive ints, else ``ValueError``.

    Sizes in fastvid's Python API are ``(height, width)``, as in Keras and
    torchcodec (the command line writes them ``WxH``).
    """
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(is_int(v) and v > 0 for v in pair):
        raise ValueError(
            f"{name} must be (height, width), two positive integers. {_received(value)}"
        )
    return int(pair[0]), int(pair[1])


def cli_size(text: str) -> tuple[int, int]:
    """``"WxH"`` (as FFmpeg writes sizes) -> ``(height, width)``: the argparse type of every
    command's size option. ``argparse.ArgumentTypeError`` when it is not two positive ints."""
    import argparse  # noqa: PLC0415

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 112x112, got {text!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def positive_int(value: Any, name: str) -> int:
    """``value`` if it is an int > 0, else ``ValueError`` naming ``name``."""
    if not is_int(value) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. {_received(value)}")
    return int(value)


def one_of(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    options = list(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {options}. {_received(value)}")
    return value

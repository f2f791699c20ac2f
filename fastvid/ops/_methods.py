"""The motion methods, in one table: the CPU and GPU backends, the kernels and the CLI read it.

keras-video-generators' ``OpticalFlowGenerator`` defined four methods by number
(the constants below keep its values); fastvid adds ``"flow_raw"``, the flow
itself. Every method is a *source* image per pair of consecutive frames (their
absolute grey difference, or the dense optical flow, rendered or raw),
optionally *masked*: multiplied, after a 15x15 Gaussian blur, by the mean of
the two frames. Adding a method is one :class:`MotionMethod` here plus its
computation in the backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

METHOD_OPTICAL_FLOW = 1
METHOD_FLOW_MASK = 2
METHOD_DIFF_MASK = 3
METHOD_ABS_DIFF = 4
METHOD_FLOW_RAW = "flow_raw"

BLUR_KSIZE = 15  # keras-video-generators' GaussianBlur((15, 15), 0): sigma 2.6, reflect-101
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # R, G, B


@dataclass(frozen=True)
class MotionMethod:
    """One motion method: what it computes between two consecutive frames ``a, b``.

    Attributes:
        code: keras-video-generators' constant (1-4), or ``"flow_raw"``.
        name: the method's name, as the command line takes it.
        source: ``"diff"`` (``|gray(a) - gray(b)|``), ``"flow"`` (dense optical flow
            rendered HSV -> RGB) or ``"flow_raw"`` (the flow, 2 channels, in pixels).
        masked: the source, blurred, times ``(a + b) / 2``.
    """

    code: int | str
    name: str
    source: Literal["diff", "flow", "flow_raw"]
    masked: bool = False

    @property
    def uses_flow(self) -> bool:
        return self.source != "diff"


MOTION_METHODS: tuple[MotionMethod, ...] = (
    MotionMethod(METHOD_OPTICAL_FLOW, "optical_flow", "flow"),
    MotionMethod(METHOD_FLOW_MASK, "flow_mask", "flow", masked=True),
    MotionMethod(METHOD_DIFF_MASK, "diff_mask", "diff", masked=True),
    MotionMethod(METHOD_ABS_DIFF, "abs_diff", "diff"),
    MotionMethod(METHOD_FLOW_RAW, "flow_raw", "flow_raw"),
)
_BY_KEY = {m.code: m for m in MOTION_METHODS} | {m.name: m for m in MOTION_METHODS}


def motion_method(method: int | str | MotionMethod) -> MotionMethod:
    """The :class:`MotionMethod` for a constant (1-4, ``"flow_raw"``), a name or itself."""
    if isinstance(method, MotionMethod):
        return method
    key = method.lower().replace("-", "_") if isinstance(method, str) else method
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    found = _BY_KEY.get(key) if isinstance(key, int | str) and not isinstance(key, bool) else None
    if found is None:
        choices = ", ".join(f"{m.name} ({m.code})" for m in MOTION_METHODS)
        raise ValueError(f"unknown motion method {method!r}; choose from {choices}")
    return found

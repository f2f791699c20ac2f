"""keras-video-generators' module path ``keras_video.flow``: ``from fastvid.flow import
OpticalFlowGenerator, METHOD_OPTICAL_FLOW`` ports ``from keras_video.flow import ...``."""

from fastvid.keras import (
    METHOD_ABS_DIFF,
    METHOD_DIFF_MASK,
    METHOD_FLOW_MASK,
    METHOD_OPTICAL_FLOW,
    OpticalFlowGenerator,
)

__all__ = [
    "METHOD_ABS_DIFF",
    "METHOD_DIFF_MASK",
    "METHOD_FLOW_MASK",
    "METHOD_OPTICAL_FLOW",
    "OpticalFlowGenerator",
]

"""keras-video-generators' module path ``keras_video.generator``: ``from fastvid.generator
import VideoFrameGenerator`` ports ``from keras_video.generator import ...`` unchanged."""

from fastvid.keras import VideoFrameGenerator

__all__ = ["VideoFrameGenerator"]

"""keras-video-generators' module path ``keras_video.sliding``: ``from fastvid.sliding
import SlidingFrameGenerator`` ports ``from keras_video.sliding import ...`` unchanged."""

from fastvid.keras import SlidingFrameGenerator

__all__ = ["SlidingFrameGenerator"]

"""Helpers shared by several test files (pytest puts this folder on sys.path)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import av
import numpy as np


def smooth_plane(rng, h, w):
    """A random but smooth plane in [1, 255] (a few levels per pixel at most)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    v = np.full((h, w), 128.0)
    for _ in range(3):
        fx, fy = rng.uniform(-0.12, 0.12, 2)
        v += rng.uniform(20, 40) * np.sin(fx * xx + fy * yy + rng.uniform(0, 6.3))
    return np.clip(v, 1, 255).round().astype(np.uint8)


def smooth_clip(rng, frames, h, w, *, i420=False):
    """Random smooth pictures, never zero: RGB (F, h, w, 3) or I420 (F, h*3/2, w).

    OpenCV 4's cv2.warpAffine places sample points on a 1/32-pixel grid (INTER_BITS
    = 5): on white noise that alone moves its results by several levels from exact
    bilinear, so comparisons with the CPU backend use pictures with natural
    gradients. (OpenCV 5.0, measured, stays within 0.5 level on noise too.)
    """
    if not i420:
        return np.stack(
            [np.stack([smooth_plane(rng, h, w) for _ in range(3)], -1) for _ in range(frames)]
        )
    sizes = ((h, w), (h // 2, w // 2), (h // 2, w // 2))
    planes = [
        np.concatenate([smooth_plane(rng, *hw).ravel() for hw in sizes]) for _ in range(frames)
    ]
    return np.stack(planes).reshape(frames, h * 3 // 2, w)


def faststart_copy(src: Path, dst: Path) -> Path:
    """Copy the video stream of ``src`` into an MP4 whose index comes before the data."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream_in = inp.streams.best("video")
        stream_out = out.add_stream_from_template(stream_in)
        for packet in inp.demux(stream_in):
            if packet.dts is not None:
                packet.stream = stream_out
                out.mux(packet)
    return dst


def banded_video(path: Path, degrees: int = 0, n: int = 4) -> Path:
    """96x48 frames (2:1): a red band on the left sixth, blue on the right, gray between
    (a centred square crop keeps 8 gray columns on each side); stored with a display
    rotation of ``degrees``."""
    frame = np.full((48, 96, 3), 128, np.uint8)
    frame[:, :16] = (255, 0, 0)
    frame[:, 80:] = (0, 0, 255)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 48, "yuv420p"
        stream.set_display_rotation(degrees)
        for _ in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_in_threads(work: Callable, args: Iterable) -> list[BaseException]:
    """``work(a)`` for each ``a`` of ``args``, each on its own thread, all at once; the
    exceptions they raised (a failed assert in a thread would otherwise be lost)."""
    errors: list[BaseException] = []

    def run(a):
        try:
            work(a)
        except BaseException as exc:  # returned to the test, which asserts there are none
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors

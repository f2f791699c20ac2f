"""Synthetic videos whose pixels say which frame they are.

Tests, the benchmark and the demo all need videos with known content. Each
frame made here carries its own index as a 16-bit pattern of black and white
blocks in the top half of the picture, large enough to survive lossy codecs,
chroma subsampling and resizing; :func:`frame_index` reads it back. The bottom
half holds a bright square that moves a few pixels per frame over a gradient,
so motion operations (differences, optical flow) have something to measure.
In a dataset made by :func:`make_dataset`, the direction of that motion is
the class, so a small model can learn it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INDEX_BITS = 16
_GRID_COLS = 8
_GRID_ROWS = 2

# direction of the moving square, per class of make_dataset (dx, dy) in pixels per frame
MOTIONS: dict[str, tuple[int, int]] = {
    "right": (2, 0),
    "left": (-2, 0),
    "down": (0, 1),
    "up": (0, -1),
    "still": (0, 0),
}


def draw_frame(index: int, width: int, height: int, motion: tuple[int, int] = (2, 1)) -> np.ndarray:
    """The RGB uint8 picture (height, width, 3) of frame ``index``."""
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    img = np.empty((height, width, 3), np.uint8)
    half = height // 2
    # top half: the index, most significant bit first, row by row
    bits = [(index >> (INDEX_BITS - 1 - b)) & 1 for b in range(INDEX_BITS)]
    for b, bit in enumerate(bits):
        r, c = divmod(b, _GRID_COLS)
        y0, y1 = r * half // _GRID_ROWS, (r + 1) * half // _GRID_ROWS
        x0, x1 = c * width // _GRID_COLS, (c + 1) * width // _GRID_COLS
        img[y0:y1, x0:x1] = 235 if bit else 16
    # bottom half: a horizontal colour gradient with a moving bright square
    bottom = height - half
    xs = np.linspace(40, 200, width, dtype=np.float32)
    img[half:, :, 0] = xs.astype(np.uint8)
    img[half:, :, 1] = 90
    img[half:, :, 2] = xs[::-1].astype(np.uint8)
    side = max(2, min(width, bottom) // 3)
    span_x, span_y = max(1, width - side), max(1, bottom - side)
    cx = (width // 3 + motion[0] * index) % span_x
    cy = (bottom // 3 + motion[1] * index) % span_y
    img[half + cy : half + cy + side, cx : cx + side] = (250, 230, 60)
    return img


def frame_index(frame: np.ndarray) -> int:
    """Read back the index drawn by :func:`draw_frame`.

    ``frame`` is (H, W, C) or (H, W), uint8 in [0, 255] or float in [0, 1];
    any size, any colour order, grey included.
    """
    img = np.asarray(frame)
    if img.ndim == 3:
        img = img.mean(axis=2)
    if img.dtype != np.uint8 and img.max() <= 1.0 + 1e-6:
        img = img * 255.0
    height, width = img.shape
    half = height // 2
    value = 0
    for b in range(INDEX_BITS):
        r, c = divmod(b, _GRID_COLS)
        y = int((r + 0.5) * half / _GRID_ROWS)
        x = int((c + 0.5) * width / _GRID_COLS)
        # average a small patch at the block centre: robust to codec noise
        ry, rx = max(1, half // (_GRID_ROWS * 6)), max(1, width // (_GRID_COLS * 6))
        patch = img[max(0, y - ry) : y + ry + 1, max(0, x - rx) : x + rx + 1]
        value = (value << 1) | int(patch.mean() > 125)
    return value


def frame_indices(frames: Iterable[np.ndarray]) -> list[int]:
    """:func:`frame_index` of every frame of a (N, H, W, C) array or sequence."""
    return [frame_index(f) for f in frames]


_CODEC_DEFAULTS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "ultrafast", "crf": "18"},
    "libx265": {"preset": "ultrafast", "crf": "20", "x265-params": "log-level=error"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"},
    "libsvtav1": {"preset": "12", "crf": "12"},
    "mpeg4": {"qscale": "3"},
    "mjpeg": {"qscale": "3"},
}


def make_video(
    path: str | os.PathLike[str],
    num_frames: int,
    *,
    width: int = 64,
    height: int = 48,
    fps: int | Fraction = 25,
    codec: str = "libx264",
    gop: int = 12,
    bframes: int = 0,
    pix_fmt: str | None = None,
    motion: tuple[int, int] = (2, 1),
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    audio_first: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``num_frames`` frames of :func:`draw_frame` into ``path``.

    The container comes from the file extension (``.mp4``, ``.avi``, ``.mkv``,
    ``.webm``, ``.mov`` ...). ``gop`` is the keyframe interval and ``bframes``
    the maximum consecutive B-frames (codecs that have them). ``pts`` sets each
    frame's presentation timestamp in ``time_base`` units (default ``1/fps``):
    irregular steps give a variable-frame-rate file, a first value other than 0
    a non-zero start. ``audio_first`` adds a silent audio stream as stream 0.
    ``options`` are passed to the encoder over the defaults used here.
    """
    import av  # local: keep `import fastvid.synth` cheap

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if pts is not None and len(pts) != num_frames:
        raise ValueError("pts must have one entry per frame")
    rate = Fraction(fps)
    if pix_fmt is None:
        pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(str(path), mode="w") as container:
        audio = None
        if audio_first:
            audio = container.add_stream("aac" if path.suffix != ".webm" else "libopus", rate=48000)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        opts = dict(_CODEC_DEFAULTS.get(codec, {}))
        if codec in ("libx264", "libx265"):
            opts["bf"] = str(bframes)
            if codec == "libx264":
                opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
            else:
                opts["x265-params"] += (
                    f":keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
                )
        opts.update(options or {})
        stream.options = opts
        stream.codec_context.gop_size = gop
        if codec not in ("libx264", "libx265") and bframes:
            stream.codec_context.max_b_frames = bframes
        if time_base is not None or pts is not None:
            stream.codec_context.time_base = time_base or Fraction(1, 1) / rate
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(draw_frame(i, width, height, motion), format="rgb24")
            frame = frame.reformat(format=pix_fmt) if pix_fmt != "rgb24" else frame
            if pts is not None:
                frame.pts = int(pts[i])
                frame.time_base = stream.codec_context.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _encode_silence(audio, container, seconds=num_frames / float(rate))
    return path


def _encode_silence(stream, container, seconds: float) -> None:
    import av

    samples_per_frame = stream.codec_context.frame_size or 1024
    total = int(seconds * stream.rate)
    for start in range(0, max(total, samples_per_frame), samples_per_frame):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, samples_per_frame), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = stream.rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_dataset(
    root: str | os.PathLike[str],
    classes: Sequence[str] = ("right", "left", "down"),
    videos_per_class: int = 8,
    *,
    num_frames: int | tuple[int, int] = 48,
    width: int = 64,
    height: int = 48,
    ext: str = ".avi",
    codec: str = "mpeg4",
    gop: int = 12,
    seed: int = 0,
) -> list[Path]:
    """Write a labelled dataset ``root/<class>/<class>_<k><ext>``.

    Class names must be keys of :data:`MOTIONS` (the motion of the square is
    what distinguishes classes). ``num_frames`` may be a ``(low, high)`` range
    drawn per video, for datasets whose videos differ in length. Files that
    already exist with a non-zero size are kept, so a second call is cheap.
    """
    rng = np.random.default_rng(seed)
    paths = []
    for name in classes:
        if name not in MOTIONS:
            raise ValueError(f"unknown class {name!r}; choose from {sorted(MOTIONS)}")
        for k in range(videos_per_class):
            n = num_frames if isinstance(num_frames, int) else int(rng.integers(*num_frames))
            path = Path(root) / name / f"{name}_{k:03d}{ext}"
            if not (path.exists() and path.stat().st_size > 0):
                make_video(
                    path, n, width=width, height=height, codec=codec, gop=gop, motion=MOTIONS[name]
                )
            paths.append(path)
    log.info("dataset in %s: %d videos, %d classes", root, len(paths), len(classes))
    return paths

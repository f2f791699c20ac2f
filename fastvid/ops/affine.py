"""The affine map from output pixels to source pixels, shared by the CPU and GPU paths.

A matrix ``M`` (2x3, float64) maps an OUTPUT pixel ``(x, y)`` (pixel centres at
integers) to the SOURCE point it samples: ``(xs, ys) = M @ (x, y, 1)``. A plain
resize is ``[[w/W, 0, 0.5*w/W - 0.5], [0, h/H, 0.5*h/H - 0.5]]`` (half-pixel
centres, the convention of ``cv2.resize`` with ``INTER_LINEAR``). Augmentation is
composed in output space, about the output centre, before that resize, so resize
and augmentation cost one sampling pass: ``cv2.warpAffine(src, M, (W, H),
flags=INTER_LINEAR | WARP_INVERSE_MAP, borderMode=BORDER_REPLICATE)`` on the CPU,
the same bilinear rule in ``cuda_kernels/`` on the GPU.

Random draws: every sequence takes exactly five uniform numbers from the rng (even
for augmentations that are off), in sequence order, so the same seed gives the same
matrices whatever the batch split or which parameters are zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_DRAWS_PER_SEQUENCE = 5


@dataclass(frozen=True)
class AugmentParams:
    """Random affine augmentation, drawn once per sequence and applied to all its frames.

    Attributes:
        flip: probability of a horizontal flip (0..1).
        rotation: maximum rotation in degrees; the angle is uniform in
            ``[-rotation, rotation]``; positive turns the picture counter-clockwise
            (as ``cv2.getRotationMatrix2D``).
        zoom: maximum relative zoom; the scale is uniform in ``[1 - zoom, 1 + zoom]``,
            a scale above 1 enlarges the content (zooms in).
        shift: maximum shift as a fraction of the output width/height, drawn
            independently for x and y in ``[-shift, shift]``.
    """

    flip: float = 0.0
    rotation: float = 0.0
    zoom: float = 0.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"flip is a probability in [0, 1], got {self.flip}")
        if self.rotation < 0 or self.shift < 0:
            raise ValueError("rotation and shift must be >= 0")
        if not 0.0 <= self.zoom < 1.0:
            raise ValueError(f"zoom must be in [0, 1), got {self.zoom}")

    @property
    def is_identity(self) -> bool:
        """True when no draw can change the picture."""
        return self.flip == 0 and self.rotation == 0 and self.zoom == 0 and self.shift == 0


@dataclass(frozen=True)
class AugmentDraw:
    """One sequence's drawn augmentation (the values behind its matrix)."""

    flip: bool = False
    angle: float = 0.0  # degrees
    scale: float = 1.0
    shift_x: float = 0.0  # fraction of the output width
    shift_y: float = 0.0  # fraction of the output height

    @property
    def is_identity(self) -> bool:
        return (
            not self.flip
            and self.angle == 0
            and self.scale == 1
            and self.shift_x == 0
            and self.shift_y == 0
        )


def draw_augmentations(
    augment: AugmentParams | None, rng: np.random.Generator | None, count: int
) -> list[AugmentDraw]:
    """Draw ``count`` augmentations, one per sequence, five rng numbers each."""
    if augment is None or augment.is_identity:
        return [AugmentDraw() for _ in range(count)]
    if rng is None:
        raise ValueError("an augmentation needs an rng")
    draws = []
    for _ in range(count):
        u = rng.random(_DRAWS_PER_SEQUENCE)
        draws.append(
            AugmentDraw(
                flip=bool(u[0] < augment.flip),
                angle=float((2 * u[1] - 1) * augment.rotation),
                scale=float(1 + (2 * u[2] - 1) * augment.zoom),
                shift_x=float((2 * u[3] - 1) * augment.shift),
                shift_y=float((2 * u[4] - 1) * augment.shift),
            )
        )
    return draws


ASPECTS = ("stretch", "crop", "pad")


def resize_matrix(
    src_size: tuple[int, int], dst_size: tuple[int, int], aspect: str = "stretch"
) -> np.ndarray:
    """The resize matrix (2, 3) from output ``dst_size=(W, H)`` to source ``(w, h)``.

    ``aspect``: ``"stretch"`` scales each axis on its own (the plain resize);
    ``"crop"`` scales both alike so the output covers the largest centred window
    of the source that has its shape; ``"pad"`` scales both alike so the whole
    source fits, centred (the rest of the output is outside the source: see
    :func:`outside_source`). Keras's ``crop_to_aspect_ratio`` and
    ``pad_to_aspect_ratio``.
    """
    (w, h), (W, H) = src_size, dst_size
    sx, sy = w / W, h / H
    if aspect == "crop":
        sx = sy = min(sx, sy)
    elif aspect == "pad":
        sx = sy = max(sx, sy)
    elif aspect != "stretch":
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    # half-pixel centres, and the scaled output window centred on the source
    ox = 0.5 * sx - 0.5 + (w - W * sx) / 2
    oy = 0.5 * sy - 0.5 + (h - H * sy) / 2
    return np.array([[sx, 0.0, ox], [0.0, sy, oy]], np.float64)


def decode_size(src_hw: tuple[int, int], dst_hw: tuple[int, int], aspect: str) -> tuple[int, int]:
    """``(height, width)`` to decode a ``src_hw`` picture at, to ``aspect``-resize it to ``dst_hw``.

    ``"stretch"`` decodes at ``dst_hw`` itself. ``"crop"`` and ``"pad"`` keep the
    source's shape, scaled to cover (crop) or fit in (pad) the output, so the
    decoder never squashes the picture and the sampling pass only crops or pads;
    both sides even (I420 needs them so) and at least 2.
    """
    (h, w), (H, W) = src_hw, dst_hw
    if aspect == "stretch" or h <= 0 or w <= 0:
        return H, W
    scale = max(H / h, W / w) if aspect == "crop" else min(H / h, W / w)
    rounder = math.ceil if aspect == "crop" else round
    return tuple(max(2, 2 * int(rounder(v * scale / 2))) for v in (h, w))  # type: ignore[return-value]


def outside_source(matrix: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]):
    """bool ``(H, W)``: output pixels whose sample point lies outside the source picture
    (beyond its pixels' outer edges); with ``aspect="pad"`` they are zero."""
    (w, h), (W, H) = src_size, dst_size
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    m = np.asarray(matrix, np.float32)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    return (sx < -0.5) | (sx > w - 0.5) | (sy < -0.5) | (sy > h - 0.5)


def draw_matrix(
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
    draw: AugmentDraw,
    aspect: str = "stretch",
) -> np.ndarray:
    """The sampling matrix (2, 3) for one drawn augmentation.

    The augmentation moves output content forward by ``p' = c + t + s R F (p - c)``
    (``F`` the flip, ``R`` the rotation, ``s`` the scale, ``t`` the shift, ``c`` the
    output centre); sampling needs its inverse ``p = c + F R^-1 (p' - c - t) / s``,
    followed by the plain resize.
    """
    W, H = dst_size
    resize = resize_matrix(src_size, dst_size, aspect)
    if draw.is_identity:
        return resize
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    tx, ty = draw.shift_x * W, draw.shift_y * H
    # y points down, so a counter-clockwise turn on screen is a clockwise one in (x, y):
    # forward rotation [[cos, sin], [-sin, cos]] (cv2.getRotationMatrix2D), inverse = transpose.
    a = math.radians(draw.angle)
    cos, sin = math.cos(a), math.sin(a)
    inv_rot = np.array([[cos, -sin], [sin, cos]])
    flip = np.diag([-1.0 if draw.flip else 1.0, 1.0])
    lin = flip @ inv_rot / draw.scale
    c = np.array([cx, cy])
    off = c - lin @ (c + np.array([tx, ty]))
    aug = np.eye(3)
    aug[:2, :2] = lin
    aug[:2, 2] = off
    return (np.vstack([resize, [0.0, 0.0, 1.0]]) @ aug)[:2]


def sequence_matrices(
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
    augment: AugmentParams | None,
    rng: np.random.Generator | None,
    count: int,
) -> np.ndarray:
    """Sampling matrices, float64 ``(count, 2, 3)``, for ``count`` sequences of one size.

    Args:
        src_size: source ``(w, h)``.
        dst_size: output ``(W, H)``.
        augment: augmentation ranges, or None for a plain resize.
        rng: where the draws come from (unused when ``augment`` is None or identity).
        count: number of sequences; each takes its own draw, in order.
    """
    draws = draw_augmentations(augment, rng, count)
    out = np.empty((count, 2, 3), np.float64)
    for i, d in enumerate(draws):
        out[i] = draw_matrix(src_size, dst_size, d)
    return out


def batch_matrices(
    src_sizes: Sequence[tuple[int, int]],
    dst_size: tuple[int, int],
    augment: AugmentParams | None,
    rng: np.random.Generator | None,
    aspect: str = "stretch",
) -> np.ndarray:
    """Like :func:`sequence_matrices` for sequences of different source sizes.

    Gives the same matrices as ``sequence_matrices`` when all sizes are equal.
    """
    draws = draw_augmentations(augment, rng, len(src_sizes))
    out = np.empty((len(src_sizes), 2, 3), np.float64)
    for i, (size, d) in enumerate(zip(src_sizes, draws, strict=True)):
        out[i] = draw_matrix(size, dst_size, d, aspect)
    return out


def is_plain_resize(
    matrix: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]
) -> bool:
    """True when ``matrix`` is the plain resize (so ``cv2.resize`` may sample it)."""
    return bool(np.allclose(matrix, resize_matrix(src_size, dst_size), rtol=0, atol=1e-12))


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """An rng from a seed, an existing Generator (used as is) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)

"""The sampling matrices shared by the CPU and GPU backends (fastvid.ops.affine)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastvid.ops.affine import (
    AugmentDraw,
    AugmentParams,
    batch_matrices,
    draw_augmentations,
    draw_matrix,
    is_plain_resize,
    make_rng,
    resize_matrix,
    sequence_matrices,
)

SRC, DST = (64, 48), (32, 20)


def apply(m: np.ndarray, x: float, y: float) -> np.ndarray:
    return m @ np.array([x, y, 1.0])


def test_resize_matrix_is_half_pixel_centres():
    m = resize_matrix((100, 50), (25, 10))
    np.testing.assert_allclose(m, [[4, 0, 1.5], [0, 5, 2.0]])
    # output pixel 0 covers source pixels 0..3 (x) and 0..4 (y): its centre is 1.5, 2
    np.testing.assert_allclose(apply(m, 0, 0), [1.5, 2.0])


def test_plain_matrices_without_augment():
    ms = sequence_matrices(SRC, DST, None, None, 3)
    assert ms.shape == (3, 2, 3) and ms.dtype == np.float64
    for m in ms:
        assert is_plain_resize(m, SRC, DST)
    # identity-range augmentation needs no rng and is plain too
    ms = sequence_matrices(SRC, DST, AugmentParams(), None, 2)
    assert all(is_plain_resize(m, SRC, DST) for m in ms)


def test_resize_matrix_matches_cv2_resize():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (37, 53, 3), np.uint8)
    for dst in [(20, 15), (53, 37), (101, 77), (26, 37)]:
        m = resize_matrix((53, 37), dst)
        warped = cv2.warpAffine(
            src,
            m,
            dst,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        resized = cv2.resize(src, dst, interpolation=cv2.INTER_LINEAR)
        diff = np.abs(warped.astype(int) - resized.astype(int))
        assert diff.max() <= 1, (dst, diff.max())


def test_same_seed_same_matrices_and_sequences_differ():
    aug = AugmentParams(flip=0.5, rotation=15, zoom=0.2, shift=0.1)
    a = sequence_matrices(SRC, DST, aug, np.random.default_rng(7), 6)
    b = sequence_matrices(SRC, DST, aug, np.random.default_rng(7), 6)
    c = sequence_matrices(SRC, DST, aug, np.random.default_rng(8), 6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    for i in range(6):
        for j in range(i):
            assert not np.allclose(a[i], a[j])


def test_batch_split_and_zero_ranges_do_not_change_draws():
    aug = AugmentParams(flip=0.5, rotation=15, zoom=0.2, shift=0.1)
    whole = sequence_matrices(SRC, DST, aug, np.random.default_rng(3), 4)
    rng = np.random.default_rng(3)
    parts = np.concatenate(
        [sequence_matrices(SRC, DST, aug, rng, 1), sequence_matrices(SRC, DST, aug, rng, 3)]
    )
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(
        whole, batch_matrices([SRC] * 4, DST, aug, np.random.default_rng(3))
    )
    # every sequence takes five numbers, whatever the ranges: the rng ends in the same state
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    draw_augmentations(aug, r1, 3)
    draw_augmentations(AugmentParams(rotation=1.0), r2, 3)
    assert r1.random() == r2.random()


def test_draw_ranges():
    aug = AugmentParams(flip=0.3, rotation=10, zoom=0.1, shift=0.2)
    draws = draw_augmentations(aug, np.random.default_rng(0), 2000)
    angles = np.array([d.angle for d in draws])
    scales = np.array([d.scale for d in draws])
    shifts = np.array([[d.shift_x, d.shift_y] for d in draws])
    flips = np.mean([d.flip for d in draws])
    assert -10 <= angles.min() < -9 and 9 < angles.max() <= 10
    assert 0.9 <= scales.min() < 0.91 and 1.09 < scales.max() <= 1.1
    assert np.abs(shifts).max() <= 0.2 and np.abs(shifts).max() > 0.19
    assert 0.25 < flips < 0.35


def test_flip_mirrors_output_coordinates():
    m = draw_matrix(SRC, DST, AugmentDraw(flip=True))
    plain = resize_matrix(SRC, DST)
    w = DST[0]
    for x, y in [(0, 0), (3, 7), (w - 1, 19)]:
        np.testing.assert_allclose(apply(m, x, y), apply(plain, w - 1 - x, y), atol=1e-12)


def test_rotation_and_zoom_keep_the_centre_and_shift_moves_it():
    plain = resize_matrix(SRC, DST)
    cx, cy = (DST[0] - 1) / 2, (DST[1] - 1) / 2
    m = draw_matrix(SRC, DST, AugmentDraw(angle=30, scale=1.2))
    np.testing.assert_allclose(apply(m, cx, cy), apply(plain, cx, cy), atol=1e-12)
    # zoom in: one output pixel spans 1/1.2 of the plain step
    m = draw_matrix(SRC, DST, AugmentDraw(scale=1.2))
    step = apply(m, cx + 1, cy) - apply(m, cx, cy)
    assert np.hypot(*step) == pytest.approx(plain[0, 0] / 1.2)
    # content shifted right by 0.25 W: output (c + 0.25 W) shows what plain shows at c
    m = draw_matrix(SRC, DST, AugmentDraw(shift_x=0.25, shift_y=-0.1))
    np.testing.assert_allclose(
        apply(m, cx + 0.25 * DST[0], cy - 0.1 * DST[1]), apply(plain, cx, cy), atol=1e-12
    )


def test_rotation_direction_matches_cv2():
    # the augmentation's forward map is cv2.getRotationMatrix2D about the output centre
    size = (40, 40)
    m = draw_matrix(size, size, AugmentDraw(angle=20))
    fwd = cv2.getRotationMatrix2D(((size[0] - 1) / 2, (size[1] - 1) / 2), 20, 1.0)
    inv = cv2.invertAffineTransform(fwd)
    np.testing.assert_allclose(m, inv, atol=1e-12)


def test_params_validation_and_rng():
    with pytest.raises(ValueError):
        AugmentParams(flip=1.5)
    with pytest.raises(ValueError):
        AugmentParams(zoom=1.0)
    with pytest.raises(ValueError):
        AugmentParams(rotation=-1)
    with pytest.raises(ValueError):
        sequence_matrices(SRC, DST, AugmentParams(flip=0.5), None, 1)
    g = np.random.default_rng(1)
    assert make_rng(g) is g
    assert make_rng(4).random() == np.random.default_rng(4).random()

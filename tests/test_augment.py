"""Transformations move all the frames of a sequence together (one draw per sequence)."""

from __future__ import annotations

import numpy as np
import pytest

from fastvid.augment import (
    CallableTransform,
    KerasLayerTransform,
    LegacyTransform,
    make_transform,
    sequence_seeds,
)
from fastvid.synth import draw_frame

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend


def frozen_batch(b=6, f=4, h=20, w=24, seed=0) -> np.ndarray:
    """Every frame of a sequence identical (sequences differ): a per-frame draw shows up."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (b, 1, h, w, 3)).astype(np.float32)
    return np.repeat(x, f, axis=1)


def assert_one_draw_per_sequence(y: np.ndarray, atol=1e-3):
    for seq in y:
        for frame in seq[1:]:
            np.testing.assert_allclose(frame, seq[0], atol=atol)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.mark.parametrize(
    "make",
    [
        lambda k: k.layers.RandomFlip("horizontal"),
        lambda k: k.layers.RandomRotation(0.1),
        lambda k: k.layers.RandomZoom(0.2),
        lambda k: k.layers.RandomTranslation(0.2, 0.2),
        lambda k: k.layers.RandomContrast(0.5),
        lambda k: k.Sequential([k.layers.RandomFlip("horizontal"), k.layers.RandomRotation(0.1)]),
    ],
    ids=["flip", "rotation", "zoom", "translation", "contrast", "sequential"],
)
def test_keras_layers_draw_once_per_sequence_from_the_seed(keras, make):
    layer = make(keras)
    t = make_transform(layer)
    assert isinstance(t, KerasLayerTransform)
    x = frozen_batch()
    y = t(x, seed=11)
    assert y.shape == x.shape and y.dtype == np.float32
    assert_one_draw_per_sequence(y)
    np.testing.assert_array_equal(y, t(x, seed=11))  # the seed decides
    assert not np.allclose(y, t(x, seed=12))


def test_keras_flip_moves_distinct_frames_together(keras):
    frames = np.stack([draw_frame(i, 32, 24) for i in range(5)]).astype(np.float32)
    x = np.stack([frames] * 8)
    y = make_transform(keras.layers.RandomFlip("horizontal"))(x, seed=3)
    flipped = []
    for seq in y:
        if np.allclose(seq, frames):
            flipped.append(False)
        else:
            np.testing.assert_allclose(seq, frames[:, :, ::-1], atol=1e-4)
            flipped.append(True)
    assert any(flipped) and not all(flipped)


def test_layer_without_draw_api_is_folded_into_channels(keras):
    class Shuffle(keras.layers.Layer):  # random, and without get_random_transformation
        def call(self, x, training=None):
            return x + keras.random.uniform((keras.ops.shape(x)[0], 1, 1, 1), 0, 50)

    t = make_transform(Shuffle())
    y = t(frozen_batch(), seed=0)
    assert_one_draw_per_sequence(y)


def test_legacy_image_data_generator_once_per_sequence():
    class Fake:  # the ImageDataGenerator protocol
        def __init__(self):
            self.draws, self.applied = [], []

        def get_random_transform(self, img_shape, seed=None):
            self.draws.append((tuple(img_shape), seed))
            return {"delta": float(np.random.default_rng(seed).uniform(0, 10))}

        def apply_transform(self, x, params):
            self.applied.append(params["delta"])
            return x + params["delta"]

    fake = Fake()
    t = make_transform(fake)
    assert isinstance(t, LegacyTransform)
    x = frozen_batch(b=3, f=4)
    y = t(x, seed=9)
    assert len(fake.draws) == 3 and {s for s in fake.draws} == {
        ((20, 24, 3), s) for s in sequence_seeds(9, 3)
    }
    assert len(fake.applied) == 12
    assert_one_draw_per_sequence(y)
    np.testing.assert_array_equal(y, t(x, seed=9))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_real_image_data_generator(keras):
    legacy = pytest.importorskip("tensorflow.keras.preprocessing.image")
    idg = legacy.ImageDataGenerator(rotation_range=10, horizontal_flip=True, zoom_range=0.1)
    t = make_transform(idg)
    y = t(frozen_batch(b=4, f=3), seed=1)
    assert_one_draw_per_sequence(y)
    np.testing.assert_array_equal(y, t(frozen_batch(b=4, f=3), seed=1))


def test_callable_with_and_without_rng():
    x = frozen_batch(b=3, f=2)
    plain = make_transform(lambda frames: frames[:, ::-1])
    assert isinstance(plain, CallableTransform)
    np.testing.assert_array_equal(plain(x, 0), x[:, :, ::-1])

    def jitter(frames, rng):
        return frames + rng.uniform(0, 10)

    t = make_transform(jitter)
    y = t(x, seed=4)
    assert_one_draw_per_sequence(y)
    np.testing.assert_array_equal(y, t(x, seed=4))
    assert not np.allclose(y, t(x, seed=5))


def test_callable_must_keep_the_frames():
    with pytest.raises(ValueError, match="frames"):
        make_transform(lambda frames: frames[0])(frozen_batch(b=1, f=3), 0)


def test_what_is_not_a_transformation():
    assert make_transform(None) is None
    with pytest.raises(TypeError, match="transformation"):
        make_transform(42)


def test_sequence_seeds_are_stable():
    assert sequence_seeds(1, 3) == sequence_seeds(1, 3)
    assert len(set(sequence_seeds(1, 50))) == 50

"""End to end: a TimeDistributed(Conv2D)->GRU->Dense model trains on fastvid batches.

model.fit(train, validation_data=valid) for 2 epochs on a generated 3-class
dataset (the direction a square moves); the training loss must go down.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastvid.synth import make_dataset

keras = pytest.importorskip("keras")

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend


@pytest.fixture(scope="module")
def motion_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_dataset(
        root,
        classes=("right", "left", "down"),
        videos_per_class=8,
        num_frames=(24, 40),
        width=64,
        height=48,
        seed=1,
    )
    return root


def build_model(nb_frames, size, classes):
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((nb_frames, size, size, 3)),
            layers.TimeDistributed(
                layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")
            ),
            layers.TimeDistributed(layers.MaxPooling2D(2)),
            layers.TimeDistributed(layers.Flatten()),
            layers.TimeDistributed(layers.Dense(16, activation="relu")),
            layers.GRU(16),
            layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(3e-3), "categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.slow
def test_model_fit_loss_goes_down(motion_dataset):
    import fastvid

    keras.utils.set_random_seed(0)
    train = fastvid.VideoFrameGenerator(
        glob_pattern=str(motion_dataset / "{classname}" / "*.avi"),
        nb_frames=6,
        target_shape=(32, 32),
        batch_size=2,
        split_val=0.25,
        seed=0,
        device="cpu",
    )
    valid = train.get_validation_generator()
    assert train.files_count == 18 and valid.files_count == 6
    assert not set(train.files) & set(valid.files)
    x, y = train[0]
    assert x.shape == (2, 6, 32, 32, 3) and y.shape == (2, 3)

    model = build_model(6, 32, train.classes_count)
    history = model.fit(train, validation_data=valid, epochs=2, verbose=0)
    loss = history.history["loss"]
    assert len(loss) == 2 and all(np.isfinite(loss))
    assert loss[1] < loss[0]
    assert len(history.history["val_loss"]) == 2
    assert 0.0 <= history.history["val_accuracy"][-1] <= 1.0

"""``model.fit`` on a fastvid generator with forked Keras workers, in its own process.

Run by tests/test_loading_modes.py as ``python mp_fit.py DATA_DIR TRANSFORM READ_FIRST``
so that a hang shows as a timeout of this process, never of the test run. The
Keras backend is the one of the environment (``KERAS_BACKEND``). Prints one JSON
line: ``{"ok": true, "loss": [...]}``, or ``{"refused": message}`` when the
generator refuses the combination up front.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(data_dir: str, transform: str, read_first: bool) -> None:
    import keras

    import fastvid

    if transform == "layer":
        augmentation = keras.Sequential(
            [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)]
        )
    elif transform == "image_data_generator":
        from tensorflow.keras.preprocessing.image import ImageDataGenerator

        augmentation = ImageDataGenerator(rotation_range=10, horizontal_flip=True)
    else:
        augmentation = None
    try:
        train = fastvid.VideoFrameGenerator(
            glob_pattern=os.path.join(data_dir, "{classname}", "*.avi"),
            nb_frames=4,
            target_shape=(32, 32),
            batch_size=2,
            seed=0,
            device="cpu",
            transformation=augmentation,
            workers=2,
            use_multiprocessing=True,
        )
    except ValueError as err:
        print(json.dumps({"refused": str(err)}))
        return
    if read_first:
        train[0]  # as Keras itself does to learn the output signature
    model = keras.Sequential(
        [
            keras.Input((4, 32, 32, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(train.classes_count, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    history = model.fit(train, epochs=2, verbose=0)
    print(
        json.dumps(
            {
                "ok": True,
                "backend": keras.backend.backend(),
                "loss": [float(v) for v in history.history["loss"]],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "1")

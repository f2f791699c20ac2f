"""User transformations applied to whole sequences: one random draw per sequence.

A video sample is a sequence of frames that must move together: flipping
frame 3 but not frame 4 would teach a model motion that never happened. The
generators accept, as ``transformation``:

* a Keras 3 preprocessing layer (``RandomFlip``, ``RandomRotation``,
  ``RandomZoom``, ``RandomTranslation``, ``RandomContrast``...) or a
  ``keras.Sequential`` of them. Layers built on Keras's image preprocessing
  base (every ``keras.layers.Random*`` of Keras >= 3.6) draw their random
  parameters once per sequence from the first frames of the batch and apply
  those same parameters to every frame; the draw is seeded by the generator,
  so the same ``seed`` gives the same augmentation. Any other layer is called
  once on the sequence folded into channels ``(B, H, W, F*C)``, which makes
  one draw per sequence for per-pixel and geometric layers (its randomness is
  then the layer's own);
* a legacy ``ImageDataGenerator`` (anything with ``get_random_transform`` and
  ``apply_transform``): one ``get_random_transform`` per sequence, seeded, and
  ``apply_transform`` on each of its frames (that call reseeds NumPy's global
  generator, as it always did);
* any callable taking and returning one ``(frames, H, W, C)`` array; if it has
  a parameter named ``rng`` it receives a seeded ``numpy.random.Generator``.

fastvid's own :class:`fastvid.ops.AugmentParams` is not applied here: the
generators hand it to :func:`fastvid.ops.prepare`, which applies it as one warp
of the (target-size) frames, with the rescale, on the CPU or the GPU.

Transformations see float32 frames in ``[0, 255]``, before ``rescale`` (the
range Keras layers' default ``value_range`` and ``ImageDataGenerator``'s
brightness and channel shifts expect); the generator rescales afterwards.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from fastvid import _runtime

log = logging.getLogger(__name__)

# ImageDataGenerator.get_random_transform(seed=...) reseeds numpy's global
# generator and then draws from it: two threads must not interleave there
_LEGACY_LOCK = threading.Lock()


def _new_legacy_lock() -> None:
    global _LEGACY_LOCK
    _LEGACY_LOCK = threading.Lock()  # a forked child: a parent's thread may have held it


_runtime.reset_after_fork(_new_legacy_lock)

# Keras backends whose runtime hangs in a forked child (threads and locks of the parent's
# TensorFlow / XLA runtime do not survive fork); PyTorch registers its own fork handlers
FORK_UNSAFE_BACKENDS = ("tensorflow", "jax")


def sequence_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 32-bit seeds derived from one batch seed."""
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(count)]


class SequenceTransform:
    """Base class: ``transform(batch, seed)`` on a ``(B, F, H, W, C)`` float32 batch."""

    kind = "transform"

    def __call__(self, batch: Any, seed: int) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}>"


def _is_keras_layer(obj: Any) -> bool:
    try:
        import keras  # noqa: PLC0415 (Keras only when a layer may be involved)
    except ImportError:  # pragma: no cover - keras is a dependency
        return False
    return isinstance(obj, keras.layers.Layer)


def _has_draw_api(layer: Any) -> bool:
    return callable(getattr(layer, "get_random_transformation", None)) and callable(
        getattr(layer, "transform_images", None)
    )


def _copied(params: Any) -> Any:
    """A deep copy of drawn transformation parameters (dicts, sequences, tensors)."""
    from keras import ops  # noqa: PLC0415

    if isinstance(params, dict):
        return {k: _copied(v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return type(params)(_copied(v) for v in params)
    if params is None or isinstance(params, bool | int | float | str):
        return params
    return ops.copy(params)


class KerasLayerTransform(SequenceTransform):
    """A Keras layer or ``Sequential``, with one draw per sequence (see module doc)."""

    kind = "keras"

    def __init__(self, layer: Any) -> None:
        import keras  # noqa: PLC0415

        self.layer = layer
        if isinstance(layer, keras.Sequential):
            self.layers = list(layer.layers)
        else:
            self.layers = [layer]
        self._warned: set[int] = set()

    def __call__(self, batch: Any, seed: int) -> Any:
        from keras import ops  # noqa: PLC0415

        as_numpy = isinstance(batch, np.ndarray)
        x = ops.convert_to_tensor(batch, dtype="float32")
        for k, layer in enumerate(self.layers):
            layer_seed = sequence_seeds(seed, k + 1)[k] & 0x7FFFFFFF
            if _has_draw_api(layer):
                x = self._drawn(layer, x, layer_seed)
            else:
                x = self._folded(layer, x, k)
        return ops.convert_to_numpy(x).astype(np.float32, copy=False) if as_numpy else x

    @staticmethod
    def _drawn(layer: Any, x: Any, seed: int) -> Any:
        from keras import ops  # noqa: PLC0415

        # one draw for the batch's first frames: each sequence its own parameters,
        # then the same parameters for frame f of every sequence
        params = layer.get_random_transformation(x[:, 0], training=True, seed=seed)
        # each frame gets its own copy: some backends' transform_images change the
        # parameters they are given in place (Keras's torch affine_transform does), which
        # would turn the frames of one sequence differently
        frames = [
            layer.transform_images(x[:, f], _copied(params), training=True)
            for f in range(x.shape[1])
        ]
        return ops.cast(ops.stack(frames, axis=1), "float32")

    def _folded(self, layer: Any, x: Any, k: int) -> Any:
        from keras import ops  # noqa: PLC0415

        b, f, h, w, c = x.shape
        folded = ops.reshape(ops.transpose(x, (0, 2, 3, 1, 4)), (b, h, w, f * c))
        try:
            y = layer(folded, training=True)
        except Exception:  # noqa: BLE001 (a layer that insists on C channels)
            if k not in self._warned:
                self._warned.add(k)
                log.warning(
                    "layer %s does not accept frames folded into channels; it is applied "
                    "frame by frame and may draw differently for each frame",
                    getattr(layer, "name", layer),
                )
            y = layer(ops.reshape(x, (b * f, h, w, c)), training=True)
            return ops.cast(ops.reshape(y, (b, f, *y.shape[1:])), "float32")
        h2, w2 = y.shape[1], y.shape[2]
        y = ops.transpose(ops.reshape(y, (b, h2, w2, f, c)), (0, 3, 1, 2, 4))
        return ops.cast(y, "float32")


class LegacyTransform(SequenceTransform):
    """``ImageDataGenerator``-like: ``get_random_transform`` once per sequence."""

    kind = "ImageDataGenerator"

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    def __call__(self, batch: Any, seed: int) -> Any:
        batch = np.asarray(batch, dtype=np.float32)
        out = np.empty_like(batch)
        for b, sequence_seed in enumerate(sequence_seeds(seed, len(batch))):
            with _LEGACY_LOCK:
                params = self.generator.get_random_transform(batch.shape[2:], seed=sequence_seed)
            for f, frame in enumerate(batch[b]):
                out[b, f] = self.generator.apply_transform(frame, params)
        return out


class CallableTransform(SequenceTransform):
    """Any ``fn(frames) -> frames`` on one ``(F, H, W, C)`` sequence at a time."""

    kind = "callable"

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            params = {}
        self.takes_rng = "rng" in params

    def __call__(self, batch: Any, seed: int) -> Any:
        batch = np.asarray(batch, dtype=np.float32)
        results = []
        for b, sequence_seed in enumerate(sequence_seeds(seed, len(batch))):
            frames = batch[b].copy()  # the callable may work in place
            if self.takes_rng:
                result = self.fn(frames, rng=np.random.default_rng(sequence_seed))
            else:
                result = self.fn(frames)
            result = np.asarray(result, dtype=np.float32)
            if result.ndim != 4 or result.shape[0] != batch.shape[1]:
                raise ValueError(
                    f"transformation must return a (frames, H, W, C) array of {batch.shape[1]} "
                    f"frames, got shape {result.shape}"
                )
            results.append(result)
        return np.stack(results)


def fork_unsafe(transform: SequenceTransform | None) -> str | None:
    """Why ``transform`` cannot run in a forked worker process, or None when it can.

    A Keras layer runs the active backend's code; on TensorFlow and JAX that
    runtime is not fork-safe, and a forked Keras worker calling it hangs.
    """
    if not isinstance(transform, KerasLayerTransform):
        return None
    import keras  # noqa: PLC0415

    backend = keras.backend.backend()
    if backend not in FORK_UNSAFE_BACKENDS:
        return None
    name = getattr(transform.layer, "name", type(transform.layer).__name__)
    return (
        f"transformation={name!r} is a Keras layer, and Keras layers on the {backend} "
        f"backend hang in forked worker processes ({backend} is not fork-safe)"
    )


FORK_ALTERNATIVES = (
    "use augment=fastvid.AugmentParams(flip=..., rotation=..., zoom=..., shift=...) "
    "(the same geometric augmentation in OpenCV, fork-safe), or use_multiprocessing=False "
    "(workers are then threads, which overlap decoding as well: it runs outside the GIL), "
    "or the torch backend"
)


def make_transform(transformation: Any) -> SequenceTransform | None:
    """Wrap a user ``transformation`` (see the module doc); None stays None.

    ``AugmentParams`` is not accepted here: pass it as ``augment`` (the
    generators route it to :func:`fastvid.ops.prepare`).
    """
    if transformation is None:
        return None
    if isinstance(transformation, SequenceTransform):
        return transformation
    if _is_keras_layer(transformation):
        return KerasLayerTransform(transformation)
    if callable(getattr(transformation, "get_random_transform", None)) and callable(
        getattr(transformation, "apply_transform", None)
    ):
        return LegacyTransform(transformation)
    if callable(transformation):
        return CallableTransform(transformation)
    raise TypeError(
        "transformation must be a Keras layer or Sequential, an ImageDataGenerator, "
        f"a callable or fastvid.AugmentParams, got {type(transformation).__name__}"
    )

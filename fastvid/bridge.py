"""Hand a batch to the active Keras backend without copying it (DLPack).

``to_backend(batch)``: a NumPy batch stays NumPy (every Keras backend takes it); a
device batch (CuPy, or anything with ``__dlpack__``) becomes a tensor of the active
Keras backend (TensorFlow, JAX or PyTorch) sharing its memory, so the batch never
leaves the GPU. ``to_backend(batch, zero_copy=True)`` does the same for a NumPy batch,
on the CPU.

TensorFlow needs host buffers aligned to 64 bytes (a misaligned DLPack tensor aborts
the process on first use), so a misaligned NumPy array is first copied once into an
aligned buffer; fastvid's own CPU outputs are allocated aligned and never copied.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fastvid._arrays import ALIGNMENT, aligned_copy, empty_aligned, is_aligned

log = logging.getLogger(__name__)

TF_ALIGNMENT = ALIGNMENT
BACKENDS = ("tensorflow", "jax", "torch", "numpy")

__all__ = ["BACKENDS", "TF_ALIGNMENT", "active_backend", "empty_aligned", "is_aligned",
           "to_backend"]


def active_backend() -> str:
    """The active Keras backend's name (imports Keras; ``KERAS_BACKEND`` is honoured by it)."""
    import keras  # noqa: PLC0415 (only when a tensor must be made)

    return keras.backend.backend()


def _tf_ready(array: np.ndarray) -> np.ndarray:
    if array.flags.c_contiguous and is_aligned(array):
        return array
    log.debug("to_backend: copying a %s array to a 64-byte-aligned buffer for TensorFlow",
              array.shape)
    return aligned_copy(array)


def _from_dlpack(obj: Any, backend: str) -> Any:
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        # TensorFlow's from_dlpack takes a capsule, not a producer object
        capsule = obj.toDlpack() if hasattr(obj, "toDlpack") else obj.__dlpack__()
        return tf.experimental.dlpack.from_dlpack(capsule)
    if backend == "jax":
        import jax.dlpack  # noqa: PLC0415

        return jax.dlpack.from_dlpack(obj)
    if backend == "torch":
        import torch  # noqa: PLC0415

        return torch.from_dlpack(obj)
    raise ValueError(f"unknown Keras backend {backend!r}; expected one of {BACKENDS}")


def to_backend(batch: Any, *, zero_copy: bool = False, backend: str | None = None) -> Any:
    """The batch as what the active Keras backend eats, without a copy where possible.

    Args:
        batch: a NumPy array, a CuPy array, or any object with ``__dlpack__``.
        zero_copy: also turn a NumPy batch into a backend tensor through DLPack
            (shares memory; TensorFlow needs 64-byte alignment, see the module doc).
            A read-only array is copied once instead: DLPack cannot pass on that it
            must not be written. By default a NumPy batch is returned as is.
        backend: ``"tensorflow"``, ``"jax"``, ``"torch"`` or ``"numpy"``; default the
            active Keras backend (``keras.backend.backend()``).

    Returns:
        The NumPy array unchanged, or a backend tensor sharing the batch's memory.
        With the ``"numpy"`` backend a device batch is copied to the host.
    """
    if isinstance(batch, np.ndarray):
        if not zero_copy:
            return batch
        name = backend or active_backend()
        if name == "numpy":
            return batch
        if not batch.flags.writeable:
            # DLPack (before its versioned form, which these consumers do not take) cannot
            # say "read-only", and a tensor made writable over read-only memory could crash
            # the process: hand over a private copy instead
            log.debug("to_backend: copying a read-only %s array", batch.shape)
            batch = aligned_copy(batch)
        if name == "tensorflow":
            batch = _tf_ready(batch)
        elif not batch.flags.c_contiguous:
            batch = np.ascontiguousarray(batch)
        return _from_dlpack(batch, name)
    if not hasattr(batch, "__dlpack__"):
        raise TypeError(
            f"to_backend takes a NumPy array or a DLPack producer (CuPy), got {type(batch)!r}"
        )
    name = backend or active_backend()
    if name == "numpy":
        return batch.get() if hasattr(batch, "get") else np.from_dlpack(batch)
    return _from_dlpack(batch, name)

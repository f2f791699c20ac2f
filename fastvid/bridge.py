"""Hand a batch to the active Keras backend without copying it (DLPack).

``to_backend(batch)``: a NumPy batch stays NumPy (every Keras backend takes it); a
device batch (CuPy, or anything with ``__dlpack__``) becomes a tensor of the active
Keras backend (TensorFlow, JAX or PyTorch) sharing its memory, so the batch never
leaves the GPU. ``to_backend(batch, zero_copy=True)`` does the same for a NumPy batch,
on the CPU.

TensorFlow needs host buffers aligned to 64 bytes (a misaligned DLPack tensor aborts
the process on first use), so a misaligned NumPy array is first copied once into an
aligned buffer; fastvid's own CPU outputs are allocated aligned and never copied.

How each consumer is handed a device array (the DLPack protocol, ``__dlpack__``):

* PyTorch and JAX take the producer object itself and pass their stream to its
  ``__dlpack__(stream=...)``; the producer (CuPy) makes that stream wait for the
  work queued on its current stream, so the consumer never reads early.
* TensorFlow takes only a capsule, and only the unversioned kind (``"dltensor"``):
  CuPy 14's ``toDlpack()`` makes a versioned one (``"dltensor_versioned"``) that
  TensorFlow rejects. The bridge asks ``__dlpack__()`` without ``max_version``
  (which the protocol answers with ``"dltensor"``), checks the capsule's name, and
  first waits for the producer's current stream on the host, since TensorFlow
  cannot say which stream it will read on.
* A Keras backend that sees no GPU (plain ``tensorflow`` without its CUDA extra, a
  CPU build of PyTorch or JAX) cannot take a CUDA tensor: the batch is copied to the
  host instead, and a warning says so once.
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache
from typing import Any

import numpy as np

from fastvid._arrays import ALIGNMENT, aligned_copy, empty_aligned, is_aligned

log = logging.getLogger(__name__)

TF_ALIGNMENT = ALIGNMENT
BACKENDS = ("tensorflow", "jax", "torch", "numpy")
LEGACY_CAPSULE = "dltensor"
VERSIONED_CAPSULE = "dltensor_versioned"
# DLPack device types whose memory a host-only consumer cannot read
_DL_DEVICE_GPU = {2: "CUDA", 10: "ROCm", 13: "CUDA managed"}

__all__ = [
    "BACKENDS",
    "TF_ALIGNMENT",
    "active_backend",
    "capsule_name",
    "device_batches_unsupported",
    "empty_aligned",
    "is_aligned",
    "to_backend",
]

_capsule_get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
    ("PyCapsule_GetName", ctypes.pythonapi)
)


def capsule_name(capsule: Any) -> str | None:
    """The name of a PyCapsule (``"dltensor"``, ``"dltensor_versioned"``, ...); None for
    anything else."""
    if type(capsule).__name__ != "PyCapsule":
        return None
    raw = _capsule_get_name(capsule)
    return None if raw is None else raw.decode()


def active_backend() -> str:
    """The active Keras backend's name (imports Keras; ``KERAS_BACKEND`` is honoured by it)."""
    import keras  # noqa: PLC0415 (only when a tensor must be made)

    return keras.backend.backend()


def _tf_ready(array: np.ndarray) -> np.ndarray:
    if array.flags.c_contiguous and is_aligned(array):
        return array
    log.debug(
        "to_backend: copying a %s array to a 64-byte-aligned buffer for TensorFlow", array.shape
    )
    return aligned_copy(array)


def _dlpack_device_type(obj: Any) -> int:
    device = getattr(obj, "__dlpack_device__", None)
    return int(device()[0]) if device is not None else 1


def _legacy_capsule(obj: Any) -> Any:
    """An unversioned (``"dltensor"``) capsule of ``obj``, as TensorFlow takes it."""
    if _dlpack_device_type(obj) in _DL_DEVICE_GPU and type(obj).__module__.startswith("cupy"):
        import cupy  # noqa: PLC0415 (only for a CuPy array, so CuPy is there)

        # TensorFlow gives no stream to order against: finish the producer's work first
        cupy.cuda.get_current_stream().synchronize()
    try:
        capsule = obj.__dlpack__(stream=None)  # no max_version: the unversioned kind
    except TypeError:  # a producer older than the stream keyword
        capsule = obj.__dlpack__()
    name = capsule_name(capsule)
    if name != LEGACY_CAPSULE:
        raise TypeError(
            f"TensorFlow takes only {LEGACY_CAPSULE!r} DLPack capsules; {type(obj).__name__}"
            f".__dlpack__() gave {name!r}. Received: {type(obj)!r}"
        )
    return capsule


def _from_dlpack(obj: Any, backend: str) -> Any:
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        # TensorFlow's from_dlpack takes a capsule, not a producer object
        return tf.experimental.dlpack.from_dlpack(_legacy_capsule(obj))
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
        A device batch is copied to the host for the ``"numpy"`` backend, and for a
        backend that sees no GPU (:func:`device_batches_unsupported`; warned once).
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
        return _host_copy(batch)
    device = _dlpack_device_type(batch)
    if device in _DL_DEVICE_GPU:
        reason = device_batches_unsupported(name)
        if reason is not None:
            _warn_host_copy(name, reason)
            return _host_copy(batch)
    return _from_dlpack(batch, name)


def _host_copy(batch: Any) -> np.ndarray:
    if hasattr(batch, "get"):  # CuPy (and fastvid's hand-off wrapper of it)
        return batch.get()
    if _dlpack_device_type(batch) == 1:
        return np.from_dlpack(batch)
    return np.from_dlpack(batch, device="cpu", copy=True)


@cache
def _warn_host_copy(backend: str, reason: str) -> None:
    log.warning(
        "to_backend: %s; device batches are copied to the host for it (pass "
        "device='cpu' to fastvid to skip the GPU, or give %s a GPU)",
        reason,
        backend,
    )


@cache
def device_batches_unsupported(backend: str) -> str | None:
    """Why the Keras backend ``backend`` cannot take a CUDA tensor, or None when it can.

    Asked of the framework in this process (it imports it), once per backend; call it
    once CUDA is in use here anyway, since the framework may initialise CUDA.
    """
    try:
        if backend == "torch":
            import torch  # noqa: PLC0415

            if not torch.cuda.is_available():
                build = torch.version.cuda or "none (a CPU build)"
                return f"PyTorch sees no CUDA device (its CUDA version: {build})"
        elif backend == "jax":
            import jax  # noqa: PLC0415

            if not any(d.platform in ("gpu", "cuda") for d in jax.devices()):
                return "JAX sees no GPU (install jax[cuda12] for one)"
        elif backend == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415

            if not tf.config.list_physical_devices("GPU"):
                return (
                    "TensorFlow sees no GPU (the plain tensorflow package needs "
                    "tensorflow[and-cuda] for one)"
                )
        else:
            return f"{backend} takes no device tensors"
    except Exception as exc:  # a broken framework install: say so rather than crash
        return f"{backend} could not be asked about its GPU ({type(exc).__name__}: {exc})"
    return None

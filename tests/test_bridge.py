"""fastvid.bridge: batches handed to the Keras backend through DLPack, without a copy."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastvid.bridge import empty_aligned, is_aligned, to_backend

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend


def test_numpy_stays_numpy():
    x = np.ones((2, 3), np.float32)
    assert to_backend(x) is x
    assert to_backend(x, zero_copy=True, backend="numpy") is x


def test_empty_aligned():
    for shape in [(1,), (3, 5, 7), (2, 4, 9, 11, 3)]:
        a = empty_aligned(shape, np.float32)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert is_aligned(a)


def test_prepare_and_motion_outputs_are_aligned():
    import fastvid.ops as ops

    out = ops.prepare([np.zeros((2, 9, 7, 3), np.uint8)], size=(5, 3), device="cpu")
    assert is_aligned(out)
    for method in (4, 3, 1, 2, "flow_raw"):
        assert is_aligned(ops.motion(out, method, device="cpu"))


def test_rejects_other_objects():
    with pytest.raises(TypeError):
        to_backend([1, 2, 3])


class _Producer:
    """A foreign DLPack producer (what a CuPy array is to the bridge)."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, **kw):
        return self.array.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_producer_to_numpy_backend():
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(to_backend(_Producer(x), backend="numpy"), x)


_TF_CHECK = r"""
import numpy as np
from fastvid.bridge import empty_aligned, to_backend
import tensorflow as tf

# aligned (as fastvid's outputs are): shares memory
x = empty_aligned((2, 3, 4, 5, 3), np.float32)
x[...] = np.arange(x.size, dtype=np.float32).reshape(x.shape)
t = to_backend(x, zero_copy=True, backend="tensorflow")
assert isinstance(t, tf.Tensor) and t.shape == x.shape and t.dtype == tf.float32
x[0, 0, 0, 0, 0] = 1234.0
assert float(t[0, 0, 0, 0, 0]) == 1234.0, "copied"
assert float(tf.reduce_sum(t)) == float(x.sum())

# misaligned: copied once into an aligned buffer (TensorFlow would abort on it otherwise)
raw = np.zeros(4 * 61 + 4, np.uint8)
off = 4 if raw.ctypes.data % 64 == 0 else 0
y = raw[off:off + 4 * 61].view(np.float32)
y[:] = 2.0
u = to_backend(y, zero_copy=True, backend="tensorflow")
assert float(tf.reduce_sum(u)) == 122.0

# a producer object (CuPy-like): through its capsule
class P:
    def __init__(self, a): self.a = a
    def __dlpack__(self, **kw): return self.a.__dlpack__(**kw)
    def __dlpack_device__(self): return self.a.__dlpack_device__()
v = to_backend(P(x), backend="tensorflow")
x[1, 0, 0, 0, 0] = -5.0
assert float(v[1, 0, 0, 0, 0]) == -5.0

# no backend named: the active Keras backend's tensor
import keras
assert keras.backend.backend() == "tensorflow"
assert isinstance(to_backend(x, zero_copy=True), tf.Tensor)
print("ok")
"""


@pytest.mark.slow  # imports TensorFlow in a subprocess
def test_numpy_to_tensorflow_without_copy():
    pytest.importorskip("tensorflow")
    # a subprocess: a misaligned DLPack tensor would abort the interpreter, not raise
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    res = subprocess.run([sys.executable, "-c", _TF_CHECK], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


def test_numpy_to_torch_without_copy():
    torch = pytest.importorskip("torch")
    x = empty_aligned((2, 3, 4), np.float32)
    x[...] = 1.0
    t = to_backend(x, zero_copy=True, backend="torch")
    assert isinstance(t, torch.Tensor) and t.data_ptr() == x.ctypes.data
    x[0, 0, 0] = 7.0
    assert float(t[0, 0, 0]) == 7.0


def test_numpy_to_jax():
    jax = pytest.importorskip("jax")
    x = empty_aligned((2, 3, 4), np.float32)
    x[...] = 3.0
    t = to_backend(x, zero_copy=True, backend="jax")
    assert isinstance(t, jax.Array) and float(t.sum()) == 72.0


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_read_only_array_is_handed_over_as_a_copy(backend):
    """DLPack cannot say "read-only": the consumer gets a private copy, not a BufferError."""
    pytest.importorskip(backend)
    x = empty_aligned((2, 3), np.float32)
    x[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    x.flags.writeable = False
    tensor = to_backend(x, zero_copy=True, backend=backend)
    got = tensor.numpy() if hasattr(tensor, "numpy") else np.asarray(tensor)
    np.testing.assert_array_equal(got, x)
    writable = empty_aligned((2, 3), np.float32)
    writable[:] = 1.0
    shared = to_backend(writable, zero_copy=True, backend=backend)
    writable[0, 0] = 7.0  # a writable array is still shared, not copied
    got = shared.numpy() if hasattr(shared, "numpy") else np.asarray(shared)
    assert got[0, 0] == 7.0

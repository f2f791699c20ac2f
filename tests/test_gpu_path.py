"""The GPU path's bookkeeping, checked on a CPU (issue 12).

No GPU here, so the checks stand on what a CPU can show:

* the device probe (fork-safe: its CUDA calls run in a subprocess; a fake ``cupy``
  package on disk stands in for CuPy there) and the fallback it reports;
* fork: nothing here makes a CUDA call before a fork, a child whose parent used CUDA
  says so, and the Keras generator refuses ``device="cuda"`` with forked workers;
* the DLPack hand-off: the capsule kind TensorFlow gets, the stream PyTorch and JAX
  pass, the host copy for a framework without a GPU, outputs kept alive until the
  consumer's stream is done with them;
* :mod:`fastvid.ops.cuda` over a stand-in CuPy whose streams are deferred like a
  GPU's (tests/emulation.py): non-blocking per-thread streams, events in the right
  places, the pinned buffer's reuse and growth, the bounded pool, kernels looked up
  once, per-device state, ``cv2.cuda`` flow on device memory and its fallback;
* the colour conversion: a loader on the stand-in CUDA backend gives the CPU
  loader's batches (within 1/255), and ``bench/gpu_check.sh``'s no-GPU exit.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
from emulation import build_emulated_lib, fake_cupy
from helpers import run_in_threads
from test_kernels_emulated import AUGMENT, random_clip, ref_prepare

import fastvid.ops as ops
from fastvid import bridge
from fastvid.errors import DeviceUnavailableError
from fastvid.ops import _backend, device, kernels
from fastvid.ops import flow as flowmod
from fastvid.ops.affine import batch_matrices, make_rng

REPO = Path(__file__).resolve().parents[1]
TOL = 1 / 255 + 1e-6


@pytest.fixture(scope="module")
def emu_lib(tmp_path_factory):
    return build_emulated_lib(tmp_path_factory.mktemp("emulated_kernels"))


@pytest.fixture
def cuda_backend(emu_lib, monkeypatch):
    """fastvid.ops.cuda imported over the stand-in CuPy, and forgotten afterwards."""
    cp = fake_cupy(emu_lib)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    for name in FRAMEWORK_VARS:  # unset while fastvid.ops.cuda loads, restored afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    sys.modules.pop("fastvid.ops.cuda", None)
    module = importlib.import_module("fastvid.ops.cuda")
    yield module
    sys.modules.pop("fastvid.ops.cuda", None)
    if "cuda" in vars(ops):
        delattr(ops, "cuda")
    _backend._load.cache_clear()


FRAMEWORK_VARS = ("TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE")


def _clips(rng, fmt="rgb", frames=3, sources=((38, 24), (30, 32))):
    return [random_clip(rng, frames, h, w, i420=fmt == "yuv420p") for w, h in sources]


def _prepare_kw(sources=((38, 24), (30, 32)), fmt="rgb", seed=5):
    mats = batch_matrices(list(sources), (19, 13), AUGMENT, make_rng(seed))
    return dict(height=13, width=19, color="rgb", rescale=1 / 255, matrices=mats, input_format=fmt)


def _host(cp, x):
    cp.cuda.get_current_stream().synchronize()
    return np.asarray(x)


# --------------------------------------------------------------------------- the probe

FAKE_CUPY_ON_DISK = '''
"""A stand-in CuPy package for the probe subprocess: no GPU needed."""
import os
__version__ = "14.0.0-fake"

class _Arr:
    def __init__(self, n):
        self.values = [0.0] * n
    def get(self):
        class _L(list):
            def tolist(self):
                return list(self)
        return _L(self.values)

def zeros(n, dtype=None):
    return _Arr(n)

float32 = float
def int32(v):
    return int(v)

class RawModule:
    def __init__(self, code, options=()):
        failure = os.environ.get("FAKE_CUPY_COMPILE_ERROR")
        if failure:
            raise RuntimeError(failure)
        self.code, self.options = code, options
    def get_function(self, name):
        assert name in self.code
        def run(grid, block, args):
            out, n = args
            for i in range(n):
                out.values[i] = 2.0 * i + 1.0
        return run

class _Runtime:
    def getDeviceCount(self):
        return int(os.environ.get("FAKE_CUPY_DEVICES", "1"))
    def driverGetVersion(self):
        return 12090
    def runtimeGetVersion(self):
        return 12090
    def getDeviceProperties(self, i):
        return {"name": b"Fake GPU", "totalGlobalMem": 80 << 30}

class _Device:
    id = 0
    compute_capability = "90"

class _Nvrtc:
    def getVersion(self):
        return (12, 9)

class cuda:
    runtime = _Runtime()
    nvrtc = _Nvrtc()
    Device = _Device
'''


@pytest.fixture
def fake_cupy_dir(tmp_path, monkeypatch):
    """A fake ``cupy`` package on disk, visible to subprocesses only."""
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(FAKE_CUPY_ON_DISK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO)]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(device, "cupy_missing", lambda: None)
    monkeypatch.setattr(device, "_driver_missing", lambda: None)
    device.probe_cuda.cache_clear()
    _backend._auto.cache_clear()
    yield tmp_path
    device.probe_cuda.cache_clear()
    _backend._auto.cache_clear()


def test_probe_runs_cuda_in_a_subprocess_only(fake_cupy_dir):
    assert "cupy" not in sys.modules
    probe = device.probe_cuda()
    assert probe.ok, probe.reason
    assert probe.details["name"] == "Fake GPU" and probe.details["nvrtc"] == [12, 9]
    assert ops.resolve_device("auto") == "cuda"
    assert ops.resolve_device("cuda") == "cuda"
    assert "cupy" not in sys.modules  # this process never imported CuPy, let alone CUDA


def test_probe_failure_is_the_reason_and_auto_falls_back_once(fake_cupy_dir, monkeypatch, caplog):
    monkeypatch.setenv(
        "FAKE_CUPY_COMPILE_ERROR", "Failed to find CUDA headers; pip install cupy-cuda12x[ctk]"
    )
    with caplog.at_level(logging.INFO, logger="fastvid.ops._backend"):
        assert ops.resolve_device("auto") == "cpu"
        assert ops.resolve_device("auto") == "cpu"
    said = [r for r in caplog.records if "does not use cuda" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING  # CuPy is there: a warning
    assert "cupy-cuda12x[ctk]" in said[0].getMessage()
    with pytest.raises(DeviceUnavailableError, match="compile.*cupy-cuda12x\\[ctk\\]"):
        ops.resolve_device("cuda")


def test_probe_without_a_device(fake_cupy_dir, monkeypatch):
    monkeypatch.setenv("FAKE_CUPY_DEVICES", "0")
    reason = device.probe_cuda().reason
    assert reason and "no usable CUDA device" in reason


@pytest.mark.parametrize("value", ["", "-1"])
def test_cuda_visible_devices_hides_every_device(monkeypatch, value):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    device.probe_cuda.cache_clear()
    try:
        assert "CUDA_VISIBLE_DEVICES" in device.probe_cuda().reason
    finally:
        device.probe_cuda.cache_clear()


def test_no_cupy_is_an_install_hint(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(
        device, "cupy_missing", lambda: f"CuPy is not installed; {device.INSTALL_HINT}"
    )
    device.probe_cuda.cache_clear()
    try:
        assert "fastvid[cuda]" in device.probe_cuda().reason
    finally:
        device.probe_cuda.cache_clear()


# --------------------------------------------------------------------------- fork

_FORK_SCRIPT = textwrap.dedent("""
    import os, sys
    from fastvid.ops import device, resolve_device
    from fastvid.errors import DeviceUnavailableError
    device.cupy_missing = lambda: None
    device._driver_missing = lambda: None
    print("parent", resolve_device("auto"), "cupy" in sys.modules, flush=True)
    if sys.argv[1] == "used":
        device.mark_cuda_initialised()  # what fastvid.ops.cuda does on its first CUDA call
    pid = os.fork()
    if pid == 0:
        line = ["child", resolve_device("auto")]
        try:
            resolve_device("cuda")
            line.append("cuda-ok")
        except DeviceUnavailableError as exc:
            line.append("refused:forked" if "forked" in str(exc) else f"refused:{exc}")
        print(*line, flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("status", status, flush=True)
""")


@pytest.mark.parametrize("parent", ["probed", "used"])
def test_fork_after_resolving_the_device(fake_cupy_dir, parent):
    """Resolving ``auto`` makes no CUDA call, so a child forked after it can use CUDA;
    once the parent has used CUDA, the child falls back (``auto``) or says why (``cuda``)."""
    res = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, parent],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.split("\n")
    assert "parent cuda False" in lines  # chose CUDA without importing CuPy
    if parent == "probed":
        assert "child cuda cuda-ok" in lines
    else:
        assert "child cpu refused:forked" in lines
    assert "status 0" in lines


@pytest.mark.keras
def test_generator_refuses_cuda_with_forked_workers(dataset_dir, monkeypatch, caplog):
    import fastvid.keras as fk

    monkeypatch.setattr(fk, "_forks_workers", lambda: True)
    pattern = str(dataset_dir / "{classname}" / "*.avi")
    with pytest.raises(ValueError, match="device='cuda' cannot run in forked Keras workers"):
        fk.VideoFrameGenerator(
            glob_pattern=pattern,
            nb_frames=4,
            batch_size=2,
            target_shape=(24, 32),
            device="cuda",
            workers=2,
            use_multiprocessing=True,
        )
    monkeypatch.setattr(ops, "resolve_device", lambda d="auto": "cuda")
    with caplog.at_level(logging.WARNING, logger="fastvid.keras"):
        gen = fk.VideoFrameGenerator(
            glob_pattern=pattern,
            nb_frames=4,
            batch_size=2,
            target_shape=(24, 32),
            device="auto",
            workers=2,
            use_multiprocessing=True,
        )
    assert gen.device == "cpu" and gen._settings()["device"] == "cpu"
    assert any("uses the CPU" in r.getMessage() for r in caplog.records)
    threads = fk.VideoFrameGenerator(
        glob_pattern=pattern,
        nb_frames=4,
        batch_size=2,
        target_shape=(24, 32),
        device="auto",
        workers=2,
    )
    assert threads.device == "auto"  # worker threads: CUDA stays possible


def test_forked_child_state_is_reset(cuda_backend):
    dev = cuda_backend.device()
    assert cuda_backend._states
    cuda_backend._after_fork()
    assert not cuda_backend._states and cuda_backend.device() is not dev


# --------------------------------------------------------------------------- DLPack


class _VersionedProducer:
    """Like a CuPy 14 array over host memory: ``toDlpack()`` and ``__dlpack__`` with a
    ``max_version`` give versioned capsules, ``__dlpack__()`` the unversioned kind."""

    def __init__(self, array, always_versioned=False):
        self.array, self.always = array, always_versioned
        self.calls = []

    def toDlpack(self):  # noqa: N802 (CuPy's name)
        self.calls.append("toDlpack")
        return self.array.__dlpack__(max_version=(1, 0))

    def __dlpack__(self, *, stream=None, max_version=None, **kw):
        self.calls.append(("__dlpack__", stream, max_version))
        if self.always:
            max_version = (1, 0)
        return (
            self.array.__dlpack__(max_version=max_version)
            if max_version
            else self.array.__dlpack__()
        )

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def _fake_tf(monkeypatch):
    got = []
    tf = types.ModuleType("tensorflow")
    tf.experimental = types.SimpleNamespace(
        dlpack=types.SimpleNamespace(
            from_dlpack=lambda capsule: got.append(bridge.capsule_name(capsule)) or "tensor"
        )
    )
    tf.config = types.SimpleNamespace(list_physical_devices=lambda kind: ["GPU:0"])
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    bridge.device_batches_unsupported.cache_clear()
    return got


def test_capsule_names():
    x = np.ones(3, np.float32)
    assert bridge.capsule_name(x.__dlpack__()) == "dltensor"
    assert bridge.capsule_name(x.__dlpack__(max_version=(1, 0))) == "dltensor_versioned"
    assert bridge.capsule_name(x) is None


def test_tensorflow_gets_an_unversioned_capsule(monkeypatch):
    got = _fake_tf(monkeypatch)
    producer = _VersionedProducer(np.arange(6, dtype=np.float32))
    assert bridge.to_backend(producer, backend="tensorflow") == "tensor"
    assert got == ["dltensor"]
    assert "toDlpack" not in producer.calls  # CuPy 14's toDlpack() is versioned


def test_a_producer_that_only_gives_versioned_capsules_is_refused_clearly(monkeypatch):
    _fake_tf(monkeypatch)
    with pytest.raises(TypeError, match="only 'dltensor'.*dltensor_versioned"):
        bridge.to_backend(
            _VersionedProducer(np.zeros(2), always_versioned=True), backend="tensorflow"
        )


def test_real_tensorflow_takes_a_cupy14_like_producer():
    tf = pytest.importorskip("tensorflow")
    x = bridge.empty_aligned((2, 3), np.float32)
    x[:] = 5.0
    t = bridge.to_backend(_VersionedProducer(x), backend="tensorflow")
    assert float(tf.reduce_sum(t)) == 30.0  # read by the consumer


class _FakeTorch:
    """torch.from_dlpack as PyTorch calls a producer: its stream, max_version (1, 0)."""

    STREAM = 0x5000

    def __init__(self, gpu=True):
        self.tensors = []
        self.cuda = types.SimpleNamespace(is_available=lambda: gpu)
        self.version = types.SimpleNamespace(cuda="12.9" if gpu else None)

    def from_dlpack(self, obj):
        assert obj.__dlpack_device__()[0] == 2
        tensor = types.SimpleNamespace(
            capsule=obj.__dlpack__(stream=self.STREAM, max_version=(1, 0))
        )
        self.tensors.append(tensor)
        return tensor


def _install_torch(monkeypatch, gpu=True):
    torch = _FakeTorch(gpu)
    module = types.ModuleType("torch")
    module.from_dlpack, module.cuda, module.version = torch.from_dlpack, torch.cuda, torch.version
    monkeypatch.setitem(sys.modules, "torch", module)
    bridge.device_batches_unsupported.cache_clear()
    return torch


def test_a_backend_without_a_gpu_gets_a_host_copy(cuda_backend, monkeypatch, caplog):
    _install_torch(monkeypatch, gpu=False)
    cp = sys.modules["cupy"]
    x = cuda_backend.prepare(_clips(np.random.default_rng(1)), **_prepare_kw())
    with caplog.at_level(logging.WARNING, logger="fastvid.bridge"):
        a = bridge.to_backend(cuda_backend.HANDOFFS.export(x), backend="torch")
        bridge.to_backend(x, backend="torch")
    assert type(a) is np.ndarray
    np.testing.assert_array_equal(a, _host(cp, x))
    assert sum("copied to the host" in r.getMessage() for r in caplog.records) == 1
    bridge.device_batches_unsupported.cache_clear()


def test_hand_off_keeps_outputs_until_the_consumer_stream_is_done(cuda_backend, monkeypatch):
    cp = sys.modules["cupy"]
    torch = _install_torch(monkeypatch)
    monkeypatch.setattr(bridge, "active_backend", lambda: "torch")
    handoffs = cuda_backend.HANDOFFS
    handoffs.reset()
    x = cuda_backend.prepare(_clips(np.random.default_rng(2)), **_prepare_kw())
    alive = weakref.ref(x)
    tensor = cuda_backend.BACKEND.hand_off(x)
    assert ("dlpack", _FakeTorch.STREAM, (1, 0)) in cp.log  # the consumer's stream
    del x
    consumer = cp.cuda.ExternalStream(_FakeTorch.STREAM)
    consumer.enqueue(lambda: None)  # a read the consumer queued and that has not run yet
    assert handoffs.collect() == 1 and alive() is not None  # the consumer holds it
    torch.tensors.clear()
    del tensor
    gc.collect()
    assert handoffs.collect() == 1 and alive() is not None  # dropped, its read not done
    assert ("record", _FakeTorch.STREAM) in cp.log  # the event is on the consumer's stream
    consumer.flush()
    assert handoffs.collect() == 0
    gc.collect()
    assert alive() is None  # back to the pool only now


def test_tensorflow_hand_off_waits_for_the_callers_stream(cuda_backend, monkeypatch):
    cp = sys.modules["cupy"]
    got = _fake_tf(monkeypatch)
    monkeypatch.setattr(bridge, "active_backend", lambda: "tensorflow")
    x = cuda_backend.prepare(_clips(np.random.default_rng(3)), **_prepare_kw())
    cp.log.clear()
    assert cuda_backend.BACKEND.hand_off(x) == "tensor"
    assert got == ["dltensor"]
    kinds = [e[0] for e in cp.log]
    assert ("sync", 0) in cp.log and kinds.index("sync") < kinds.index("dlpack")
    bridge.device_batches_unsupported.cache_clear()


# --------------------------------------------------------------------------- memory


def test_memory_settings_and_bounded_pool(cuda_backend, monkeypatch):
    cp = sys.modules["cupy"]
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")  # the user's choice stays
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in cuda_backend.share_gpu_memory()
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"
    cuda_backend.prepare(_clips(np.random.default_rng(4)), **_prepare_kw())
    assert ("pool_limit", ("fraction", cuda_backend.DEFAULT_MEMORY_FRACTION)) in cp.log
    allocs = [e for e in cp.log if e[0] == "alloc"]
    assert allocs and all(e[2] == "fastvid" for e in allocs)  # from fastvid's own pool
    monkeypatch.setenv(cuda_backend.ENV_MEMORY_FRACTION, "0.5")
    assert cuda_backend.memory_fraction() == 0.5
    monkeypatch.setenv(cuda_backend.ENV_MEMORY_FRACTION, "1.5")
    with pytest.raises(ValueError, match="FASTVID_CUDA_MEMORY_FRACTION"):
        cuda_backend.memory_fraction()


def test_out_of_memory_names_the_settings(cuda_backend, monkeypatch):
    cp = sys.modules["cupy"]

    def full(*a, **k):
        raise cp.cuda.memory.OutOfMemoryError("out of memory allocating 1 bytes")

    monkeypatch.setattr(kernels, "prepare_batch", full)
    with pytest.raises(MemoryError, match="TF_FORCE_GPU_ALLOW_GROWTH.*PREALLOCATE"):
        cuda_backend.prepare([], **_prepare_kw())


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("fmt", ["rgb", "yuv420p"])
def test_prepare_over_stand_in(cuda_backend, fmt):
    cp = sys.modules["cupy"]
    rng = np.random.default_rng(12)
    clips = _clips(rng, fmt)
    clips[1] = np.asfortranarray(clips[1])  # any strides: copied into pinned memory as is
    kw = _prepare_kw(fmt=fmt)
    got = cuda_backend.prepare(clips, **kw)
    dev = cuda_backend.device()
    assert dev.stream.is_non_blocking and dev.stream.ptr != 0
    ours = dev.stream.ptr
    assert [e[:2] for e in cp.log if e[0] == "h2d"] == [("h2d", ours)] * 2
    assert ("sync", ours) not in cp.log  # no host wait inside prepare
    assert cp.log[-1] == ("wait", 0, ours)  # the caller's stream waits for it instead
    want = ref_prepare(clips, kw["matrices"], (19, 13), "rgb", 1 / 255, fmt == "yuv420p")
    np.testing.assert_allclose(_host(cp, got), want, rtol=1e-5, atol=1e-5)
    # a device clip goes in with a device copy, after the caller's stream
    cp.log.clear()
    again = cuda_backend.prepare([cp.asarray(clips[0]), clips[1]], **kw)
    assert cp.log.index(("wait", ours, 0)) < cp.log.index(("launch", ours, kernels_name(fmt)))
    assert [e[0] for e in cp.log if e[0] in ("h2d", "d2d")] == ["d2d", "h2d"]
    np.testing.assert_array_equal(_host(cp, again), _host(cp, got))


def kernels_name(fmt):
    return "prepare_i420" if fmt == "yuv420p" else "prepare_rgb"


def test_host_inputs_do_not_wait_for_the_callers_stream(cuda_backend):
    cp = sys.modules["cupy"]
    cuda_backend.prepare(_clips(np.random.default_rng(5)), **_prepare_kw())
    ours = cuda_backend.device().stream.ptr
    assert ("wait", ours, 0) not in cp.log  # a training step queued there does not delay it


def test_pinned_buffer_is_not_rewritten_under_a_pending_copy(cuda_backend):
    """Two batches without a host wait between them: the first batch's copies out of the
    pinned buffer must have run before the second batch rewrites it."""
    cp = sys.modules["cupy"]
    rng = np.random.default_rng(6)
    kw = _prepare_kw()
    first, second = _clips(rng), _clips(rng)
    a = cuda_backend.prepare(first, **kw)
    b = cuda_backend.prepare(second, **kw)
    want_a = ref_prepare(first, kw["matrices"], (19, 13), "rgb", 1 / 255, False)
    want_b = ref_prepare(second, kw["matrices"], (19, 13), "rgb", 1 / 255, False)
    np.testing.assert_allclose(_host(cp, a), want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_host(cp, b), want_b, rtol=1e-5, atol=1e-5)


def test_the_stand_in_catches_a_missing_pinned_wait(cuda_backend, monkeypatch):
    """The same run with the wait taken out goes wrong: the check above has teeth."""
    cp = sys.modules["cupy"]
    monkeypatch.setattr(cuda_backend._Pinned, "wait", lambda self: None)
    rng = np.random.default_rng(6)
    kw = _prepare_kw()
    first, second = _clips(rng), _clips(rng)
    a = cuda_backend.prepare(first, **kw)
    cuda_backend.prepare(second, **kw)
    want_a = ref_prepare(first, kw["matrices"], (19, 13), "rgb", 1 / 255, False)
    assert np.abs(_host(cp, a) - want_a).max() > 0.1


def test_pinned_buffer_grows_geometrically(cuda_backend):
    cp = sys.modules["cupy"]
    dev = cuda_backend.device()
    assert dev.pinned_size == 0
    rng = np.random.default_rng(7)
    sizes = []
    for frames, side in [(2, 16), (2, 16), (4, 300), (6, 400)]:
        clips = [random_clip(rng, frames, side, side + 2)]
        kw = _prepare_kw(sources=((side + 2, side),))
        out = cuda_backend.prepare(clips, **kw)
        sizes.append(dev.pinned_size)
        assert dev.pinned_size >= clips[0].nbytes
        want = ref_prepare(clips, kw["matrices"], (19, 13), "rgb", 1 / 255, False)
        np.testing.assert_allclose(_host(cp, out), want, rtol=1e-5, atol=1e-5)
    assert sizes[0] == sizes[1] == cuda_backend.PINNED_MIN_BYTES  # reused, not regrown
    assert sizes[2] == max(4 * 300 * 302 * 3, int(sizes[1] * 1.5))  # grown geometrically
    assert sizes[3] == max(6 * 400 * 402 * 3, int(sizes[2] * 1.5)) == 6 * 400 * 402 * 3
    assert [e[1] for e in cp.log if e[0] == "pinned"] == sorted(set(sizes))


def test_threads_get_distinct_non_blocking_streams(cuda_backend):
    cp = sys.modules["cupy"]
    rng = np.random.default_rng(8)
    clips, kw = _clips(rng), _prepare_kw()
    want = _host(cp, cuda_backend.prepare(clips, **kw))
    streams, results = {}, []

    def work(k):
        streams[k] = cuda_backend.device().stream
        for _ in range(3):
            results.append(_host(cp, cuda_backend.prepare(clips, **kw)))

    assert not run_in_threads(work, range(8))
    ptrs = {s.ptr for s in streams.values()}
    assert len(ptrs) == 8 and 0 not in ptrs and all(s.is_non_blocking for s in streams.values())
    assert cuda_backend.device().stream.ptr not in ptrs
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_pinned_memory_goes_with_its_thread(cuda_backend):
    held = []

    def work():
        cuda_backend.prepare(_clips(np.random.default_rng(9)), **_prepare_kw())
        held.append(cuda_backend.device()._pinned)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    del t
    gc.collect()
    assert held[0].memory is None and held[0].size == 0


def test_scale_runs_on_fastvids_stream_between_the_callers_work(cuda_backend):
    cp = sys.modules["cupy"]
    x = cuda_backend.prepare(_clips(np.random.default_rng(10)), **_prepare_kw())
    before = _host(cp, x).copy()
    ours = cuda_backend.device().stream.ptr
    cp.log.clear()
    cuda_backend.BACKEND.scale(x, 255.0)
    assert cp.log[0] == ("record", 0) and cp.log[1] == ("wait", ours, 0)
    assert cp.log[-1] == ("wait", 0, ours)
    np.testing.assert_allclose(_host(cp, x), before * np.float32(255), rtol=1e-6)


def test_kernels_are_compiled_and_looked_up_once(cuda_backend):
    cp = sys.modules["cupy"]
    rng = np.random.default_rng(11)
    for _ in range(3):
        cuda_backend.prepare(_clips(rng), **_prepare_kw())
    assert [e for e in cp.log if e[0] == "get_function"] == [("get_function", "prepare_rgb")]
    assert sum(e[0] == "compile" for e in cp.log) == 1


def test_work_runs_on_the_callers_current_device(cuda_backend):
    cp = sys.modules["cupy"]
    first = cuda_backend.device()
    cp.fake.device_id = 1
    try:
        second = cuda_backend.device()
        cuda_backend.prepare(_clips(np.random.default_rng(12)), **_prepare_kw())
    finally:
        cp.fake.device_id = 0
    assert first.state.id == 0 and second.state.id == 1 and second is not first
    assert second.stream is not first.stream and second.state.pool is not first.state.pool


@pytest.mark.parametrize("dtype", [np.uint8, np.float32], ids=["uint8", "float"])
@pytest.mark.parametrize("method", [ops.METHOD_DIFF_MASK, ops.METHOD_FLOW_MASK])
def test_motion_over_stand_in(cuda_backend, method, dtype):
    cp = sys.modules["cupy"]
    rng = np.random.default_rng(13)
    u8 = rng.integers(1, 256, (2, 4, 13, 21, 3), dtype=np.uint8)[..., 1:-1, :]  # strided
    frames = u8 if dtype == np.uint8 else (u8 / np.float32(255)).astype(np.float32)
    got = cuda_backend.motion(
        frames, ops.motion_method(method), levels=2, winsize=9, iterations=2, flow="dis"
    )
    want = ops.motion(frames, method, levels=2, winsize=9, iterations=2, flow="dis", device="cpu")
    got = _host(cp, got)
    assert not np.isnan(got).any()
    scale = 255.0 if dtype == np.uint8 else 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


# --------------------------------------------------------------------------- cv2.cuda flow


class _FakeGpuMat:
    def __init__(self, rows, cols, cv_type, ptr, step):
        self.rows, self.cols, self.type_, self.ptr, self.step = rows, cols, cv_type, ptr, step

    def cudaPtr(self):  # noqa: N802 (OpenCV's name)
        return self.ptr

    def array(self):
        import ctypes

        dtype, channels = (np.uint8, 1) if self.type_ == cv2.CV_8UC1 else (np.float32, 2)
        n = self.rows * self.cols * channels
        buf = (ctypes.c_byte * (n * np.dtype(dtype).itemsize)).from_address(self.ptr)
        shape = (self.rows, self.cols) if channels == 1 else (self.rows, self.cols, 2)
        return np.frombuffer(buf, dtype).reshape(shape)


class _FakeCvCuda:
    """cv2.cuda with a device: Farneback (the CPU one) on wrapped device memory, in the
    order of the wrapped stream like the real one."""

    def __init__(self, cp, with_flow=True):
        self.cp, self.created, self.streams = cp, 0, []
        if with_flow:
            self.FarnebackOpticalFlow = types.SimpleNamespace(create=self._create)
        self.createGpuMatFromCudaMemory = _FakeGpuMat
        self.GpuMat = _FakeGpuMat

    def getCudaEnabledDeviceCount(self):  # noqa: N802
        return 1

    def wrapStream(self, ptr):  # noqa: N802
        self.streams.append(ptr)
        return self.cp.cuda.ExternalStream(ptr)

    def _create(self, **params):
        self.created += 1
        outer = self

        class Algo:
            def calc(self, prev, nxt, flow, stream=None):
                assert outer.streams and stream is not None

                def run():
                    flow.array()[...] = cv2.calcOpticalFlowFarneback(
                        prev.array().copy(),
                        nxt.array().copy(),
                        None,
                        params["pyrScale"],
                        params["numLevels"],
                        params["winSize"],
                        params["numIters"],
                        params["polyN"],
                        params["polySigma"],
                        0,
                    )

                stream.flush()  # what runs before it on its stream (the gray kernels)
                run()  # then itself, in order (CuPy's pool keeps the frames meanwhile)
                return flow

        return Algo()


class _CvProxy(types.ModuleType):
    def __init__(self, cuda):
        super().__init__("cv2")
        self.cuda = cuda

    def __getattr__(self, name):
        return getattr(cv2, name)


@pytest.fixture
def cv_cuda(cuda_backend, monkeypatch):
    def install(with_flow=True):
        fake = _FakeCvCuda(sys.modules["cupy"], with_flow)
        monkeypatch.setattr(flowmod, "cv2", _CvProxy(fake))
        flowmod._cuda_farneback_unavailable.cache_clear()
        flowmod._warn_cpu_flow.cache_clear()
        flowmod._local.__dict__.pop("farneback", None)
        return fake

    yield install
    flowmod._cuda_farneback_unavailable.cache_clear()
    flowmod._warn_cpu_flow.cache_clear()
    flowmod._local.__dict__.pop("farneback", None)


def _moving(rng):
    from helpers import smooth_clip

    base = smooth_clip(rng, 1, 40, 48)[0]
    seq = np.stack([base[k : k + 32, 2 * k : 2 * k + 40] for k in range(4)])
    return (np.stack([seq, np.roll(seq, 1, axis=2)]) / np.float32(255)).astype(np.float32)


def test_cuda_flow_runs_on_device_memory_and_fastvids_stream(cv_cuda, cuda_backend, monkeypatch):
    cp = sys.modules["cupy"]
    fake = cv_cuda()

    def no_host_flow(*a, **k):
        raise AssertionError("frames went to the host for flow")

    frames = _moving(np.random.default_rng(14))[..., :1].copy()  # gray: the same uint8 in
    want = ops.motion(frames, "flow_raw", levels=2, winsize=9, iterations=2, device="cpu")
    monkeypatch.setattr(flowmod, "compute_flows", no_host_flow)
    kw = dict(levels=2, winsize=9, iterations=2, flow="farneback")
    got = cuda_backend.motion(frames, ops.motion_method("flow_raw"), **kw)
    cuda_backend.motion(frames, ops.motion_method(ops.METHOD_FLOW_MASK), **kw)
    np.testing.assert_allclose(_host(cp, got), want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).max() > 0.1  # something moved
    assert fake.created == 1  # one Farneback object for both calls
    assert set(fake.streams) == {cuda_backend.device().stream.ptr}


def test_opencv_with_cuda_but_no_flow_module_falls_back(cv_cuda, cuda_backend, caplog):
    cp = sys.modules["cupy"]
    cv_cuda(with_flow=False)
    assert "optical-flow module" in flowmod.cuda_flow_unavailable("farneback")
    frames = _moving(np.random.default_rng(15))
    with caplog.at_level(logging.INFO, logger="fastvid.ops.flow"):
        got = cuda_backend.motion(
            frames,
            ops.motion_method("flow_raw"),
            levels=2,
            winsize=9,
            iterations=2,
            flow="farneback",
        )
    assert any(
        "runs on the CPU (this OpenCV has CUDA but not its optical-flow module" in r.getMessage()
        for r in caplog.records
    )
    want = ops.motion(frames, "flow_raw", levels=2, winsize=9, iterations=2, device="cpu")
    np.testing.assert_array_equal(_host(cp, got), want)


def test_this_opencv_says_why_flow_stays_on_the_cpu():
    if flowmod.cuda_flow_available():
        pytest.skip("OpenCV has CUDA here")
    assert "no CUDA support" in flowmod.cuda_flow_unavailable("farneback")
    assert "no CUDA dis" in flowmod.cuda_flow_unavailable("dis")


# --------------------------------------------------------------------------- colour


def test_both_backends_decode_the_same_colours(cuda_backend):
    from fastvid.ops import cpu

    for h, w in [(112, 112), (224, 160), (33, 47)]:
        assert cuda_backend.BACKEND.input_format(h, w) == cpu.BACKEND.input_format(h, w)


@pytest.mark.keras
def test_loader_batches_match_across_devices(cuda_backend, dataset_dir, monkeypatch):
    """A ClipLoader on the (stand-in) CUDA backend gives the CPU loader's batches: the
    same decoded colours, the same draws, samplers within 1/255."""
    from fastvid.loader import ClipLoader

    monkeypatch.setattr(device, "cuda_unavailable", lambda: None)
    _backend._load.cache_clear()
    monkeypatch.setattr(
        cuda_backend.CudaBackend, "hand_off", lambda self, x: _host(sys.modules["cupy"], x)
    )
    opts = dict(num_frames=4, size=(24, 32), batch_size=3, seed=7, augment=AUGMENT, shuffle=True)
    batches = {}
    for dev in ("cpu", "cuda"):
        loader = ClipLoader.from_source(str(dataset_dir), device=dev, **opts)
        batches[dev] = [loader.batch(i) for i in range(2)]
    assert type(batches["cuda"][0][0]) is np.ndarray
    for (xc, yc), (xg, yg) in zip(batches["cpu"], batches["cuda"], strict=True):
        np.testing.assert_array_equal(yc, yg)
        assert np.abs(xc - xg).max() <= TOL


def test_the_i420_kernel_is_not_what_swscale_gives(shared_videos):
    """Why the CUDA backend decodes RGB: on real footage cv2's BT.601 I420 conversion (the
    kernel's, bit-exact) is levels away from swscale's RGB (the CPU backend's input)."""
    import av
    from av.video.reformatter import VideoReformatter

    with av.open(str(shared_videos / "cup.mp4")) as c:
        frame = next(c.decode(video=0))
    conv = VideoReformatter()
    rgb = conv.reformat(frame, width=112, height=112, format="rgb24").to_ndarray()
    i420 = conv.reformat(frame, width=112, height=112, format="yuv420p").to_ndarray()
    via_kernel = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    assert np.abs(rgb.astype(int) - via_kernel.astype(int)).max() > 1


# --------------------------------------------------------------------------- the GPU check


@pytest.mark.parametrize("how", ["hidden", "as-is"])
def test_gpu_check_script_without_a_gpu(tmp_path, how):
    env = {**os.environ, "FASTVID_GPU_CHECK_OUT": str(tmp_path / "gpu.txt")}
    env["PYTHON"] = sys.executable  # this environment: no CuPy, or no device for it
    if how == "hidden":
        env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu_check: no GPU"), res.stdout[-2000:]
    assert not (tmp_path / "gpu.txt").exists()  # nothing measured, nothing written

"""The CUDA kernels and the bits of CuPy fastvid uses, emulated on the CPU (no GPU).

* :func:`build_emulated_lib`: the very ``cuda_kernels/*.cu`` sources compiled for the
  host with g++ (``cuda_kernels/host_launcher.cpp``), launched through ctypes.
* :class:`EmulatedDevice`: :class:`fastvid.ops.kernels.Device` over NumPy and that
  library (every buffer poisoned, so unwritten elements show).
* :func:`fake_cupy`: a stand-in ``cupy`` module for :mod:`fastvid.ops.cuda`. Its
  streams are *deferred*, like a GPU's: copies and kernel launches are queued on their
  stream and run only at a synchronisation point (an event or stream synchronised on
  the host, a host copy, a NumPy operation reading a device array), in stream order,
  with ``wait_event`` ordering one stream after another. So a host buffer rewritten
  before the copy reading it has run, or a result read without waiting for its stream,
  gives wrong numbers here as it would on a GPU. Every stream, event, wait and launch
  is also logged in ``cupy.log`` for the tests to check the bookkeeping.

It checks fastvid's side of the contract (arguments, offsets, streams, events, pinned
buffers, memory pools, DLPack hand-off), not CuPy's behaviour, which tests/test_cuda.py
checks on a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import shutil
import subprocess
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from fastvid.ops import kernels

LAUNCHES = {"strided": (32, 5), "exact": (64, kernels.MAX_BLOCKS)}  # (block, max blocks)


def build_emulated_lib(folder: Path) -> ctypes.CDLL:
    """The kernels compiled for the host, loaded with ctypes (skips without g++)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    src = kernels.kernel_dir()
    lib_path = folder / "fastvid_kernels.so"
    cmd = [gxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-ffp-contract=off"]
    cmd += ["-Wall", "-Wextra", "-Werror", "-I", str(src), str(src / "host_launcher.cpp")]
    cmd += ["-o", str(lib_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(lib_path))
    uint3 = ctypes.c_uint * 3
    lib.fv_launch.argtypes = [ctypes.c_char_p, uint3, uint3, ctypes.POINTER(ctypes.c_void_p)]
    lib.fv_launch.restype = ctypes.c_int
    lib.fv_kernel_name.argtypes = [ctypes.c_int]
    lib.fv_kernel_name.restype = ctypes.c_char_p
    return lib


class EmulatedDevice:
    """:class:`fastvid.ops.kernels.Device` over NumPy and the emulated kernels."""

    xp = np
    use_cuda_flow = False

    def __init__(self, lib, launch="strided", byte_poison=0xA5):
        self.lib = lib
        self.block, self.max_blocks = LAUNCHES[launch]
        self.byte_poison = byte_poison
        self.allocated: list[np.ndarray] = []
        self.launched: list[str] = []

    def empty(self, shape, dtype):
        a = np.empty(shape, dtype)
        a.fill(np.nan if a.dtype.kind == "f" else self.byte_poison)
        self.allocated.append(a)
        return a

    def launch(self, name, total, args):
        args = kernels.kernel_args(name, args)
        blocks, block = kernels.launch_config(total, self.block, self.max_blocks)
        run_kernel(self.lib, name, (blocks, block), args)
        self.launched.append(name)

    def upload(self, arrays, offsets, nbytes):
        buf = self.empty((nbytes,), np.uint8)
        for a, off in zip(arrays, offsets, strict=True):
            raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            buf[int(off) : int(off) + raw.size] = raw
        return buf

    def to_device(self, array):
        return np.array(array, order="C", copy=True)

    def to_host(self, array):
        return np.array(array, copy=True)

    def assert_all_written(self):
        """No float buffer the kernels wrote still holds the NaN poison."""
        for a in self.allocated:
            if a.dtype.kind == "f":
                assert not np.isnan(a).any(), f"unwritten elements in a {a.shape} buffer"


def run_kernel(lib, name, config, args):
    """Launch emulated kernel ``name`` with ``(blocks, threads)`` on checked ``args``."""
    blocks, block = config
    values = [
        ctypes.c_void_p(np.asarray(a).ctypes.data)
        if isinstance(a, np.ndarray)
        else np.ctypeslib.as_ctypes_type(a.dtype)(a.item())
        for a in args
    ]
    ptrs = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    grid, blk = (ctypes.c_uint * 3)(blocks, 1, 1), (ctypes.c_uint * 3)(block, 1, 1)
    assert lib.fv_launch(name.encode(), grid, blk, ptrs) == 0, name


# --------------------------------------------------------------------------- fake CuPy


class FakeCuda:
    """State of one fake CuPy: its log, streams by pointer, the current stream per thread."""

    def __init__(self):
        self.log: list[tuple] = []
        self.local = threading.local()
        self.ptrs = itertools.count(0x1000, 0x10)
        self.by_ptr: dict[int, FakeStream] = {}
        self.lock = threading.RLock()
        self.null = FakeStream(self, ptr=0)
        self.legacy = self.by_ptr[1] = FakeStream(self, ptr=1)
        self.device_id = 0
        self.pools: list[FakeMemoryPool] = []

    def current(self):
        stack = getattr(self.local, "streams", None)
        return stack[-1] if stack else self.null

    def flush_all(self):
        for stream in [self.null, *self.by_ptr.values()]:
            stream.flush()


class FakeStream:
    """A deferred stream: work runs in order at synchronisation points."""

    def __init__(self, fake: FakeCuda, non_blocking=False, ptr=None):
        self.fake = fake
        self.non_blocking = non_blocking
        self.ptr = next(fake.ptrs) if ptr is None else ptr
        self.ops: list = []
        self.done_count = 0
        self.synchronized = 0
        if ptr is None:
            fake.by_ptr[self.ptr] = self
            fake.log.append(("stream", self.ptr, non_blocking, threading.get_ident()))

    def enqueue(self, op):
        with self.fake.lock:
            self.ops.append(op)

    def flush(self, upto=None):
        with self.fake.lock:
            upto = len(self.ops) if upto is None else upto
            while self.done_count < upto:
                op, self.ops[self.done_count] = self.ops[self.done_count], None
                self.done_count += 1
                op()  # (its slot is cleared: a queue holds no array once it has run)

    def record(self, event=None):
        event = FakeEvent(self.fake) if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        self.fake.log.append(("wait", self.ptr, event.stream.ptr if event.stream else None))
        if event.stream is not None and event.stream is not self:
            source, marker = event.stream, event.marker
            self.enqueue(lambda: source.flush(marker))

    def synchronize(self):
        self.synchronized += 1
        self.fake.log.append(("sync", self.ptr))
        self.flush()

    @property
    def done(self):
        return self.done_count == len(self.ops)

    @property
    def is_non_blocking(self):  # CuPy's name
        return self.non_blocking

    def __enter__(self):
        stack = getattr(self.fake.local, "streams", None)
        if stack is None:
            stack = self.fake.local.streams = []
        stack.append(self)
        return self

    def __exit__(self, *exc):
        self.fake.local.streams.pop()


class FakeEvent:
    def __init__(self, fake: FakeCuda, block=False, disable_timing=False, interprocess=False):
        self.fake, self.stream, self.marker = fake, None, 0
        self.synchronized = 0

    def record(self, stream=None):
        stream = self.fake.current() if stream is None else stream
        self.stream, self.marker = stream, len(stream.ops)
        self.fake.log.append(("record", stream.ptr))

    @property
    def done(self):
        return self.stream is None or self.stream.done_count >= self.marker

    def synchronize(self):
        self.synchronized += 1
        if self.stream is not None:
            self.stream.flush(self.marker)


class FakePointer:
    def __init__(self, array, offset=0):
        self.array, self.offset = array, offset

    @property
    def ptr(self):
        return self.array.ctypes.data + self.offset

    def __add__(self, offset):
        return FakePointer(self.array, self.offset + int(offset))

    def copy_from_host_async(self, src, size, stream):
        dst, src, size, keep = self.ptr, int(src), int(size), self.array
        stream.fake.log.append(("h2d", stream.ptr, size))
        stream.enqueue(lambda: keep is not None and ctypes.memmove(dst, src, size))

    def copy_from_device_async(self, src, size, stream):
        dst, src_ptr, size, keep = self.ptr, src.ptr, int(size), (self.array, src.array)
        stream.fake.log.append(("d2d", stream.ptr, size))
        stream.enqueue(lambda: keep is not None and ctypes.memmove(dst, src_ptr, size))


class FakeArray(np.ndarray):
    """Stands in for cupy.ndarray: device memory (reads wait for every stream)."""

    fake: FakeCuda | None = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        FakeArray.fake.flush_all()  # a NumPy operation reads device memory: wait for it
        inputs = [np.asarray(x) if isinstance(x, FakeArray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(
                np.asarray(x) if isinstance(x, FakeArray) else x for x in kwargs["out"]
            )
        result = getattr(ufunc, method)(*inputs, **kwargs)
        return result.view(FakeArray) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func, types_, args, kwargs):
        FakeArray.fake.flush_all()
        return super().__array_function__(func, types_, args, kwargs)

    @property
    def data(self):
        return FakePointer(self)

    @property
    def device(self):
        return FakeDevice(0)

    def get(self, stream=None):
        FakeArray.fake.flush_all()
        return np.array(self)

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA

    def __dlpack__(self, *, stream=None, max_version=None, **kwargs):
        FakeArray.fake.log.append(("dlpack", stream, max_version))
        FakeArray.fake.flush_all()
        host = self.view(np.ndarray)
        return host.__dlpack__(max_version=max_version) if max_version else host.__dlpack__()


class FakeDevice:
    def __init__(self, device_id=None):
        self.id = 0 if device_id is None else device_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    compute_capability = "90"


class FakeMemoryPool:
    def __init__(self):
        self.limit = None
        self.freed = 0
        self.mallocs = 0
        FakeArray.fake.pools.append(self)

    def set_limit(self, size=None, fraction=None):
        self.limit = ("fraction", fraction) if fraction is not None else ("size", size)
        FakeArray.fake.log.append(("pool_limit", self.limit))

    def get_limit(self):
        return int((self.limit[1] or 0) * 80e9) if self.limit else 0

    def malloc(self, size):
        self.mallocs += 1

    def free_all_blocks(self):
        self.freed += 1


class OutOfMemoryError(MemoryError):
    pass


def fake_cupy(lib):
    """A NumPy stand-in for the bits of CuPy fastvid.ops.cuda uses; kernels run emulated."""
    fake = FakeCuda()
    FakeArray.fake = fake
    cp = types.ModuleType("cupy")
    cp.__version__ = "14.0.0-fake"
    cp.fake = fake
    cp.log = fake.log
    cp.ndarray = FakeArray

    def empty(shape, dtype):
        fake.log.append(("alloc", fake.current().ptr, _allocator_name()))
        return np.full(shape, np.nan if np.dtype(dtype).kind == "f" else 7, dtype).view(FakeArray)

    cp.empty = empty
    cp.asarray = lambda a: np.array(a).view(FakeArray)

    def asnumpy(a, stream=None):
        (stream or fake.current()).synchronize()
        fake.flush_all()
        return np.array(a)

    cp.asnumpy = asnumpy

    def ascontiguousarray(a, dtype=None):
        fake.flush_all()  # reads device memory (NumPy's array constructors do not dispatch)
        return np.ascontiguousarray(a, dtype).view(FakeArray)

    cp.ascontiguousarray = ascontiguousarray
    cp.where = np.where

    class RawModule:
        def __init__(self, code, options=()):
            assert options == kernels.NVRTC_OPTIONS
            self.names = kernels.parse_signatures(code)
            fake.log.append(("compile", tuple(sorted(self.names))))

        def get_function(self, name):
            assert name in self.names
            fake.log.append(("get_function", name))

            def run(grid, block, args):
                stream = fake.current()
                assert stream is not fake.null, "launch on the default stream"
                assert isinstance(args, tuple)
                for arg, param in zip(args, kernels.signatures()[name][1], strict=True):
                    assert param.pointer or type(arg) is param.dtype.type  # exact C types
                fake.log.append(("launch", stream.ptr, name))
                host_args = [np.asarray(a) if isinstance(a, FakeArray) else a for a in args]
                stream.enqueue(lambda: run_kernel(lib, name, (grid[0], block[0]), host_args))

            return run

    cp.RawModule = RawModule

    allocator = threading.local()

    def _allocator_name():
        return getattr(allocator, "name", "default")

    @contextlib.contextmanager
    def using_allocator(malloc=None):
        previous = _allocator_name()
        allocator.name = "fastvid" if malloc is not None else "default"
        try:
            yield
        finally:
            allocator.name = previous

    class PinnedMemory:
        def __init__(self, size, flags=0):
            self.size = size
            fake.log.append(("pinned", size))

    class PinnedMemoryPointer(bytearray):  # a host buffer NumPy can wrap, as CuPy's is
        def __init__(self, mem, offset):
            super().__init__(mem.size - offset)
            self.mem = mem

    runtime = types.SimpleNamespace(
        streamLegacy=1,
        streamPerThread=2,
        getDevice=lambda: fake.device_id,
        getDeviceCount=lambda: 1,
    )

    def external_stream(ptr, device_id=-1):
        found = fake.by_ptr.get(int(ptr))
        if found is None:
            found = fake.by_ptr[int(ptr)] = FakeStream(fake, ptr=int(ptr))
        return found

    cp.cuda = types.SimpleNamespace(
        Stream=lambda non_blocking=False: FakeStream(fake, non_blocking=non_blocking),
        ExternalStream=external_stream,
        Event=lambda **kw: FakeEvent(fake, **kw),
        get_current_stream=fake.current,
        Device=FakeDevice,
        MemoryPool=FakeMemoryPool,
        using_allocator=using_allocator,
        PinnedMemory=PinnedMemory,
        PinnedMemoryPointer=PinnedMemoryPointer,
        runtime=runtime,
        memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
    )
    return cp

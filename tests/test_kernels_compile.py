"""The CUDA sources compile for the GPUs we claim (sm_80: A100, sm_90: H100), with no
warning, as nvcc and as NVRTC (what CuPy's RawModule uses at run time) see them.

nvcc tests skip when nvcc is absent; the NVRTC test skips when no libnvrtc is found
(CuPy users get it from the CUDA toolkit or the ``nvidia-cuda-nvrtc-cu12`` wheel).
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from fastvid.ops import kernels

ARCHS = ("80", "90")
SOURCES = kernels.KERNEL_FILES


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        for root in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
            if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
                return os.path.join(root, "bin", "nvcc")
        pytest.skip("nvcc not found")
    return nvcc


def test_nvcc_supports_claimed_archs():
    out = subprocess.run([_nvcc(), "--list-gpu-arch"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for arch in ARCHS:
        assert f"compute_{arch}" in out.stdout.split(), f"this nvcc dropped sm_{arch}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES)
def test_nvcc_compiles(tmp_path, source, arch):
    cubin = tmp_path / f"{source}.sm_{arch}.cubin"
    cmd = [_nvcc(), f"-arch=sm_{arch}", "-cubin", "--Werror", "all-warnings"]
    cmd += ["-o", str(cubin), str(kernels.kernel_dir() / source)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert cubin.stat().st_size > 0


def test_sources_fit_nvrtc_and_the_emulation():
    """No #include (NVRTC has no system headers) and nothing the host emulation cannot
    run faithfully one thread at a time (shared memory, barriers, warp ops, atomics)."""
    banned = re.compile(r"#\s*include|__shared__|__syncthreads|__shfl|atomic\w*\s*\(|__ballot")
    for source in SOURCES:
        text = kernels.kernel_source(source)
        code = re.sub(r"//[^\n]*", "", text)  # comments may mention them
        assert not banned.search(code), f"{source}: {banned.search(code).group(0)}"
        assert kernels.parse_signatures(text), f'{source} defines no extern "C" kernel'


def _libnvrtc() -> ctypes.CDLL:
    names = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]
    for base in sys.path:  # the nvidia-cuda-nvrtc-* wheels
        names += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib", "libnvrtc.so*")))
    names += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    for name in names:
        if "builtins" in name or "alt" in os.path.basename(name):
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    pytest.skip("libnvrtc not found")


def _nvrtc_compile(lib: ctypes.CDLL, name: str, text: str, opts: list[str]) -> tuple[int, str]:
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), text.encode(), name.encode(), 0, None, None)
    assert rc == 0
    raw = [o.encode() for o in opts]
    rc = lib.nvrtcCompileProgram(prog, len(raw), (ctypes.c_char_p * len(raw))(*raw))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return rc, log.value.decode()


def _cupy_options(arch: str) -> list[str]:
    """The options CuPy 14's RawModule gives NVRTC that change what the code means: ours,
    -ftz=true, a cubin for the device's sm, device as the default execution space. (It
    adds --pch from NVRTC 12.8 too: a compile-time cache, left out here since it writes
    its files into the working folder.)"""
    return list(kernels.NVRTC_OPTIONS) + [
        "-ftz=true",
        f"-arch=sm_{arch}",
        "--device-as-default-execution-space",
    ]


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles(arch):
    lib = _libnvrtc()
    for source in SOURCES:
        for opts in (
            [f"-arch=sm_{arch}", "-ftz=true", *kernels.NVRTC_OPTIONS],
            _cupy_options(arch),
        ):
            rc, log = _nvrtc_compile(lib, source, kernels.kernel_source(source), opts)
            assert rc == 0, log
            assert "warning" not in log.lower(), log


def test_the_probe_kernel_compiles():
    """The device probe (fastvid.ops.device) compiles this kernel as fastvid's are
    compiled: a failure there must mean the toolchain, never the probe's own source."""
    from fastvid.ops.device import PROBE_KERNEL as src

    lib = _libnvrtc()
    assert "fastvid_probe" in src
    rc, log = _nvrtc_compile(lib, "probe.cu", src, _cupy_options(ARCHS[-1]))
    assert rc == 0, log

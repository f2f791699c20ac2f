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


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles(arch):
    lib = _libnvrtc()
    for source in SOURCES:
        prog = ctypes.c_void_p()
        text = kernels.kernel_source(source).encode()
        rc = lib.nvrtcCreateProgram(ctypes.byref(prog), text, source.encode(), 0, None, None)
        assert rc == 0
        # as cupy.RawModule compiles (CuPy 14): cubin for the device's sm, -ftz=true
        opts = [f"-arch=sm_{arch}".encode(), b"-ftz=true"]
        opts += [o.encode() for o in kernels.NVRTC_OPTIONS]
        rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
        assert rc == 0, log.value.decode()
        assert "warning" not in log.value.decode().lower(), log.value.decode()

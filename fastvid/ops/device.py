"""Can the CUDA backend run here? Answered without initialising CUDA in this process.

A process that has initialised CUDA cannot use it again in a child it forks, and
Keras's ``use_multiprocessing=True`` (like a PyTorch ``DataLoader`` on Linux) forks
its workers after the parent has built the generator. So the probe never makes a
CUDA call in the calling process:

1. cheap checks here, none of which initialises CUDA: ``CUDA_VISIBLE_DEVICES``
   hides every device; CuPy is not installed; the driver library cannot be loaded;
2. one short subprocess (:data:`PROBE_SCRIPT`) that imports CuPy, counts the devices,
   compiles a tiny kernel with NVRTC exactly as fastvid's kernels are compiled
   (``cupy.RawModule`` with :data:`fastvid.ops.kernels.NVRTC_OPTIONS`, which is
   where CuPy 14 without the CUDA headers fails) and launches it.

Its answer (a :class:`CudaProbe`: the reason it cannot run, or the versions it
found) is kept for the life of the process. A forked child does not trust it: in
a child CUDA works only if the parent never initialised it, so the child asks
CUDA itself (in-process, which is safe there) and says why not when it cannot.

(What happens when CUDA can run is :mod:`fastvid.ops.cuda`; which backend runs is
:mod:`fastvid.ops._backend`.)
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fastvid import _runtime

log = logging.getLogger(__name__)

INSTALL_HINT = "install the CUDA extra: pip install 'fastvid[cuda]' (cupy-cuda12x[ctk])"
HEADERS_HINT = (
    "CuPy 14 needs the CUDA runtime headers to compile any kernel: "
    "pip install 'cupy-cuda12x[ctk]' (or 'fastvid[cuda]')"
)
FORK_HINT = (
    "use threads instead of forked processes (Keras: use_multiprocessing=False; PyTorch "
    "DataLoader: multiprocessing_context='spawn'), or device='cpu'"
)
PROBE_TIMEOUT_S = 180.0  # a first NVRTC compile on a cold disk cache takes seconds, not minutes
PROBE_TAG = "FASTVID_CUDA_PROBE "

__all__ = [
    "CudaProbe",
    "PROBE_KERNEL",
    "PROBE_SCRIPT",
    "cuda_unavailable",
    "cupy_missing",
    "is_cupy_array",
    "mark_cuda_initialised",
    "probe_cuda",
]

# The kernel the probe compiles and launches (tests/test_kernels_compile.py compiles it too)
PROBE_KERNEL = r"""
extern "C" __global__ void fastvid_probe(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 2.0f * (float)i + 1.0f;
}
"""

# Runs in a fresh interpreter: argv[1] is the JSON list of NVRTC options, argv[2] the
# kernel. Prints one line, PROBE_TAG + JSON, whatever happens (CuPy may print around it).
PROBE_SCRIPT = r"""
import json, sys
out = {"ok": False, "stage": "import"}
src = sys.argv[2]
try:
    import cupy
    out["cupy"] = cupy.__version__
    try:
        import cuda.pathfinder as pathfinder
        out["headers"] = pathfinder.find_nvidia_header_directory("cudart")
    except Exception as exc:
        out["headers"] = f"unknown ({type(exc).__name__})"
    out["stage"] = "device"
    rt = cupy.cuda.runtime
    out["devices"] = count = rt.getDeviceCount()
    out["driver"] = rt.driverGetVersion()
    out["runtime"] = rt.runtimeGetVersion()
    if count < 1:
        raise RuntimeError("no CUDA device")
    dev = cupy.cuda.Device()
    props = rt.getDeviceProperties(dev.id)
    name = props.get("name", b"?")
    out["name"] = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    out["compute_capability"] = dev.compute_capability
    out["memory_bytes"] = int(props.get("totalGlobalMem", 0))
    out["stage"] = "compile"
    out["nvrtc"] = list(cupy.cuda.nvrtc.getVersion())
    fn = cupy.RawModule(code=src, options=tuple(json.loads(sys.argv[1]))).get_function(
        "fastvid_probe")
    out["stage"] = "launch"
    x = cupy.zeros(40, cupy.float32)
    fn((2,), (32,), (x, cupy.int32(40)))
    got = x.get().tolist()
    if got != [2.0 * i + 1.0 for i in range(40)]:
        raise RuntimeError(f"the probe kernel computed {got[:4]}...")
    out["ok"] = True
    out["stage"] = "done"
except BaseException as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
print("FASTVID_CUDA_PROBE " + json.dumps(out), flush=True)
"""


@dataclass(frozen=True)
class CudaProbe:
    """What the probe found: ``reason`` is None when the CUDA backend can run.

    ``details`` holds what the probe subprocess reported (CuPy, driver, runtime and
    NVRTC versions, the header folder, the device's name and compute capability).
    """

    reason: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None


def _hidden_by_env() -> str | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    text = value.strip()
    if not text or text.startswith("-1") or text.lower() == "nodevfiles":
        return f"CUDA_VISIBLE_DEVICES={value!r} hides every CUDA device"
    return None


def _driver_missing() -> str | None:
    """Whether the driver library loads (loading it does not initialise CUDA)."""
    if not sys.platform.startswith("linux"):
        return None  # the subprocess finds out
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return f"no NVIDIA driver: libcuda.so.1 cannot be loaded ({exc})"
    return None


def _reason_from(report: dict[str, Any]) -> str | None:
    if report.get("ok"):
        return None
    stage, error = report.get("stage", "?"), report.get("error", "unknown error")
    if stage == "import":
        return f"CuPy is installed but does not import ({error}); {INSTALL_HINT}"
    if stage == "device":
        return f"CuPy finds no usable CUDA device ({error})"
    if stage == "compile":
        hint = HEADERS_HINT if "header" in error.lower() or "ctk" in error else INSTALL_HINT
        return f"CuPy cannot compile a CUDA kernel with NVRTC ({error}); {hint}"
    return f"a CUDA test kernel failed at the {stage} step ({error})"


def run_probe_subprocess(timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Run :data:`PROBE_SCRIPT` in a new interpreter; its report (``ok``, ``stage``, ...)."""
    from fastvid.ops.kernels import NVRTC_OPTIONS  # noqa: PLC0415 (no CuPy there)

    cmd = [sys.executable, "-c", PROBE_SCRIPT, json.dumps(list(NVRTC_OPTIONS)), PROBE_KERNEL]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "stage": "probe", "error": f"no answer within {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(PROBE_TAG):
            return json.loads(line[len(PROBE_TAG) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {
        "ok": False,
        "stage": "probe",
        "error": f"exit status {proc.returncode}: {' | '.join(tail) or 'no output'}",
    }


@cache
def probe_cuda() -> CudaProbe:
    """The CUDA probe of this process (cheap checks, then the subprocess; cached)."""
    for check in (_hidden_by_env, cupy_missing, _driver_missing):
        reason = check()
        if reason is not None:
            return CudaProbe(reason)
    report = run_probe_subprocess()
    probe = CudaProbe(_reason_from(report), report)
    if probe.ok:
        log.info(
            "fastvid.ops: CUDA probe: %s (compute %s), CuPy %s, driver %s, runtime %s, "
            "NVRTC %s, headers %s",
            report.get("name"),
            report.get("compute_capability"),
            report.get("cupy"),
            report.get("driver"),
            report.get("runtime"),
            report.get("nvrtc"),
            report.get("headers"),
        )
    return probe


def cupy_missing() -> str | None:
    """Why CuPy cannot be imported here (it is not installed), or None; imports nothing."""
    try:
        found = importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"CuPy is not installed; {INSTALL_HINT}"


# ------------------------------------------------------------------------------ fork

_initialised_in: int | None = None  # pid of the process where fastvid initialised CUDA


def mark_cuda_initialised() -> None:
    """Called by :mod:`fastvid.ops.cuda` when it first makes a CUDA call in this process."""
    global _initialised_in
    if _initialised_in is None:
        _initialised_in = os.getpid()


@cache
def _child_reason() -> str | None:
    """In a forked child: can CUDA be used here? (Asked in-process: the child's own
    initialisation can no longer harm a parent.)"""
    if _initialised_in is not None and _initialised_in != os.getpid():
        return (
            f"CUDA was initialised in the parent process (pid {_initialised_in}) before "
            f"this process was forked, and CUDA cannot be used in a forked child then; "
            f"{FORK_HINT}"
        )
    for check in (_hidden_by_env, cupy_missing, _driver_missing):
        reason = check()
        if reason is not None:
            return reason
    try:
        import cupy  # noqa: PLC0415

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy finds no CUDA device"
    except Exception as exc:  # initialisation error: the parent had initialised CUDA
        return (
            f"CUDA does not work in this forked process ({exc}): another library "
            f"probably initialised CUDA in the parent before the fork; {FORK_HINT}"
        )
    return None


def _after_fork() -> None:
    _child_reason.cache_clear()


_runtime.reset_after_fork(_after_fork)


def cuda_unavailable() -> str | None:
    """None when the CUDA backend can run in this process, else the reason it cannot."""
    if _runtime.forked_child():
        return _child_reason()
    return probe_cuda().reason


def is_cupy_array(x: object) -> bool:
    """True for a CuPy array, without importing CuPy."""
    return type(x).__module__.split(".")[0] == "cupy"

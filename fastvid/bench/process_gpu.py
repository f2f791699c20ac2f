"""GPU columns of the processing benchmark: frames/s of the CUDA backend.

Safe to import anywhere (no CuPy at import). :func:`gpu_results` returns table rows
(:class:`fastvid.bench.common.Result` dicts, suite ``"process"``): measured ones when
CuPy sees a device, else one skipped row per operation saying "not measured" and why.
The measurement itself is :func:`fastvid.ops.cuda.benchmark`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastvid.bench.common import Result

SIZES = ((112, 112), (224, 224))
OPS = ("prepare", "prepare+augment", "abs_diff", "diff_mask")
METHOD = "fastvid cuda"


def gpu_unavailable() -> str | None:
    """None when the CUDA backend can run, else why not (CuPy or a device missing)."""
    from fastvid.ops.device import cuda_unavailable  # noqa: PLC0415

    return cuda_unavailable()


def gpu_results(
    *,
    sizes: Sequence[tuple[int, int]] = SIZES,
    batch: int = 8,
    frames: int = 16,
    source: tuple[int, int] = (320, 240),
    repeats: int = 5,
    warmup: int = 2,
) -> list[dict[str, Any]]:
    """Rows for the GPU: group ``"gpu <op> <W>x<H>"``, one per input format measured.

    ``median_s``/``best_s`` are seconds per batch of ``batch`` clips of ``frames``
    frames decoded at ``source`` size (uint8 in host memory; the upload is timed);
    ``extra["frames_per_s"]`` is the throughput.
    """
    reason = gpu_unavailable()
    if reason is not None:
        return [
            Result(
                "process",
                f"gpu {op} {w}x{h}",
                METHOD,
                unit="batch",
                skipped=f"not measured: {reason}",
            ).to_dict()
            for w, h in sizes
            for op in OPS
        ]
    from fastvid.ops import cuda  # noqa: PLC0415 (imports CuPy)

    rows = cuda.benchmark(
        sizes=sizes, batch=batch, frames=frames, source=source, repeats=repeats, warmup=warmup
    )
    return [
        Result(
            "process",
            f"gpu {r['op']} {r['size']}",
            f"{METHOD} ({r['input']})",
            median_s=r["median_s"],
            best_s=r["best_s"],
            repeats=repeats,
            unit="batch",
            frames_returned=r["frames"],
            extra={"frames_per_s": r["frames_per_s"]},
        ).to_dict()
        for r in rows
    ]

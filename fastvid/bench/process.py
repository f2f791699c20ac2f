"""The process suite: fastvid.ops against the per-frame OpenCV code of keras-video-generators.

Decoding is out of the picture: every method gets the same decoded uint8 frames in
memory (UCF101-like 320x240 RGB, a smooth texture moving a few pixels per frame)
and turns them into the float32 batch a model eats, at 112x112 and 224x224.

Sections:

* ``prepare`` (resize, colour, float, rescale) with and without augmentation:
  ``fastvid cpu`` (all cores; also 1 thread and from I420 planes) against a port of
  keras-video-generators' per-frame loop (``cv2.resize``, ``cv2.cvtColor``, float
  conversion, one frame at a time in the calling thread, OpenCV's own threads as
  it had them); with augmentation, the same loop
  plus a per-frame ``cv2.warpAffine``, and keras' ``ImageDataGenerator.apply_transform``
  per frame as keras-video-generators did, when Keras and SciPy import;
* ``motion`` for each method and flow algorithm: ``fastvid cpu`` (all cores and 1
  thread) against a port of keras-video-generators' ``OpticalFlowGenerator`` per-pair
  code (float frames, one pair at a time in the calling thread); raw flow and DIS
  against a plain per-pair loop.

``fastvid cuda`` rows are filled when CuPy sees a device, "not measured" otherwise.
Targets: prepare on the CPU at least 2x the naive path; flow scales with cores.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from fastvid.bench import common

log = logging.getLogger(__name__)

SUITE = "process"
SOURCE_SIZE = (320, 240)  # (width, height) of the decoded frames
SIZES = (112, 224)
AUGMENT = dict(flip=0.5, rotation=10.0, zoom=0.1, shift=0.1)
MOTION_CASES: dict[str, tuple[Any, str]] = {
    "abs_diff": (4, "farneback"),
    "diff_mask": (3, "farneback"),
    "optical_flow": (1, "farneback"),
    "flow_mask": (2, "farneback"),
    "flow_raw": ("flow_raw", "farneback"),
    "optical_flow dis": (1, "dis"),
    "flow_raw dis": ("flow_raw", "dis"),
}
NOT_MEASURED = "not measured (no CuPy or no CUDA device)"


# --------------------------------------------------------------------------- inputs


def make_clips(num: int, frames: int, size: tuple[int, int] = SOURCE_SIZE, seed: int = 0):
    """``num`` uint8 RGB clips ``(frames, h, w, 3)``: a smooth texture moving (2, 1) px/frame."""
    w, h = size
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(num):
        pad = 2 * frames + 8
        noise = rng.integers(0, 256, (h + pad, w + pad, 3), np.uint8)
        tex = cv2.GaussianBlur(noise, (0, 0), 2.5)
        tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
        clips.append(np.stack([tex[f : f + h, 2 * f : 2 * f + w] for f in range(frames)]))
    return clips


def to_i420(clips: list[np.ndarray]) -> list[np.ndarray]:
    return [np.stack([cv2.cvtColor(fr, cv2.COLOR_RGB2YUV_I420) for fr in c]) for c in clips]


# --------------------------------------------------------------------------- naive ports
# Written from a reading of keras-video-generators' generator.py and flow.py: one frame
# (or one pair) at a time, in the calling thread, with the same OpenCV calls.


def naive_prepare(clips: list[np.ndarray], size: tuple[int, int], rescale: float = 1 / 255):
    """keras-video-generators' per-frame loop: resize, cvtColor, float32, times rescale."""
    batch = []
    for clip in clips:
        frames = []
        for frame in clip:
            x = cv2.resize(frame, size)
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)  # its frames came from VideoCapture (BGR)
            frames.append(np.asarray(x, dtype=np.float32) * rescale)
        batch.append(np.array(frames))
    return np.array(batch)


def naive_prepare_warp(clips, size, matrices, rescale: float = 1 / 255):
    """The per-frame loop plus a per-frame cv2.warpAffine of each sequence's augmentation."""
    batch = []
    for clip, m in zip(clips, matrices, strict=True):
        frames = []
        for frame in clip:
            x = cv2.resize(frame, size)
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
            x = cv2.warpAffine(
                x,
                m,
                size,
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            frames.append(np.asarray(x, dtype=np.float32) * rescale)
        batch.append(np.array(frames))
    return np.array(batch)


def keras_augmenter() -> Any:
    """keras' ImageDataGenerator with the suite's ranges, or None when it cannot be built."""
    try:
        import scipy.ndimage  # noqa: F401, PLC0415 (apply_transform needs it)

        try:  # Keras 2 (what keras-video-generators used)
            from keras.preprocessing.image import ImageDataGenerator  # noqa: PLC0415
        except ImportError:  # Keras 3 has it only through TensorFlow's public tf.keras
            from tensorflow.keras.preprocessing.image import (  # noqa: PLC0415
                ImageDataGenerator,
            )
    except Exception as exc:  # Keras/TensorFlow/SciPy missing or broken
        log.info("keras ImageDataGenerator unavailable: %s", exc)
        return None
    return ImageDataGenerator(
        horizontal_flip=True,
        rotation_range=AUGMENT["rotation"],
        zoom_range=AUGMENT["zoom"],
        width_shift_range=AUGMENT["shift"],
        height_shift_range=AUGMENT["shift"],
    )


def naive_prepare_keras(clips, size, augmenter, rescale: float = 1 / 255):
    """keras-video-generators with ``transformation=``: one draw per clip, scipy per frame."""
    batch = []
    for clip in clips:
        params = augmenter.get_random_transform((size[1], size[0], 3))
        frames = []
        for frame in clip:
            x = cv2.resize(frame, size)
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
            x = np.asarray(x, dtype=np.float32) * rescale
            frames.append(augmenter.apply_transform(x, params))
        batch.append(np.array(frames))
    return np.array(batch)


def _kvg_gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.shape[-1] == 3 else img


def _kvg_absdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.absdiff(_kvg_gray(a), _kvg_gray(b)), cv2.COLOR_GRAY2RGB)


def _kvg_flow_rgb(a, b, levels: int = 3, winsize: int = 15, iterations: int = 3):
    hsv = np.zeros_like(a)
    hsv[..., 1] = 255
    flow = cv2.calcOpticalFlowFarneback(
        _kvg_gray(a), _kvg_gray(b), None, 0.5, levels, winsize, iterations, 5, 1.1, 0
    )
    mag, ang = cv2.cartToPolar(flow[..., 0], flow[..., 1])
    hsv[..., 0] = ang * 180 / np.pi / 2
    hsv[..., 2] = cv2.normalize(mag, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _kvg_diff_mask(a, b):
    mask = cv2.GaussianBlur(_kvg_absdiff(a, b), (15, 15), 0)
    return cv2.multiply(cv2.addWeighted(a, 0.5, b, 0.5, 0), mask)


def _kvg_flow_mask(a, b):
    mask = cv2.GaussianBlur(_kvg_flow_rgb(a, b) / 255.0, (15, 15), 0).astype(np.float32)
    return cv2.multiply(cv2.addWeighted(a, 0.5, b, 0.5, 0), mask)


_KVG_PAIR: dict[Any, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    4: _kvg_absdiff,
    3: _kvg_diff_mask,
    1: _kvg_flow_rgb,
    2: _kvg_flow_mask,
}


def naive_motion(frames: np.ndarray, method: Any, algorithm: str = "farneback") -> np.ndarray:
    """keras-video-generators' OpticalFlowGenerator loop over float frames, pair by pair.

    ``"flow_raw"`` (which it lacked) is the plain per-pair loop of the flow call alone.
    """
    batch = []
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for seq in frames:
        out = []
        for a, b in zip(seq[:-1], seq[1:], strict=True):
            if method == "flow_raw" or algorithm == "dis":
                ga = np.clip(_kvg_gray(a) * 255, 0, 255).astype(np.uint8)
                gb = np.clip(_kvg_gray(b) * 255, 0, 255).astype(np.uint8)
                if algorithm == "dis":
                    flow = dis.calc(ga, gb, None)
                else:
                    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.1, 0)
                if method == "flow_raw":
                    out.append(flow)
                    continue
                mag, ang = cv2.cartToPolar(flow[..., 0], flow[..., 1], angleInDegrees=True)
                hsv = np.dstack(
                    [ang, np.ones_like(mag), cv2.normalize(mag, None, 0, 1, cv2.NORM_MINMAX)]
                )
                out.append(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
                continue
            out.append(np.asarray(_KVG_PAIR[method](a, b), dtype=np.float32))
        batch.append(np.array(out))
    return np.array(batch)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """fastvid's pool and OpenCV's own threads both at 1, restored after."""
    from fastvid.ops import cpu  # noqa: PLC0415

    before = cv2.getNumThreads()
    cpu.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cpu.set_num_threads(None)
        cv2.setNumThreads(before)


def cuda_reason() -> str | None:
    """None when the CUDA backend can run, else why not."""
    try:
        from fastvid.ops import resolve_device  # noqa: PLC0415

        return None if resolve_device("auto") == "cuda" else NOT_MEASURED
    except Exception as exc:
        return f"not measured ({exc})"


def _synced(fn: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        import cupy  # noqa: PLC0415

        out = fn()
        cupy.cuda.get_current_stream().synchronize()
        return out

    return call


def _row(
    group: str,
    method: str,
    fn: Callable[[], Any],
    frames: int,
    args: Any,
    *,
    reference: bool = False,
    note: str = "",
    size: int = 0,
    case: str = "",
) -> dict:
    t = common.measure(fn, repeats=args.repeats, warmup=args.warmup)
    fps = frames / t.median if t.median > 0 else float("inf")
    extra = {"frames": frames, "frames_per_s": fps, "size": f"{size}x{size}", "case": case}
    r = common.Result.from_timing(
        SUITE,
        group,
        method,
        t,
        unit="batch",
        reference=reference,
        note=(f"{fps:,.0f} frames/s" + (f"; {note}" if note else "")),
        extra=extra,
    ).to_dict()
    r["frames_per_s"] = fps
    return r


def _skip(group: str, method: str, why: str) -> dict:
    return common.Result(SUITE, group, method, skipped=why).to_dict()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- suite


def add_arguments(parser: argparse._ActionsContainer) -> None:
    """The suite's options (prefixed, so they never clash with another suite's)."""
    parser.add_argument(
        "--process-sizes",
        default=",".join(map(str, SIZES)),
        help="output sizes (square), comma-separated (default 112,224)",
    )
    parser.add_argument(
        "--process-batch", type=int, default=None, help="sequences per batch (default 8, --quick 2)"
    )
    parser.add_argument(
        "--process-frames",
        type=int,
        default=None,
        help="frames per sequence (default 16, --quick 4)",
    )
    parser.add_argument(
        "--process-no-keras",
        action="store_true",
        help="skip the keras ImageDataGenerator row (importing Keras is slow)",
    )
    parser.add_argument(
        "--process-motion",
        default="all",
        help=f"motion cases: {','.join(MOTION_CASES)}, all or none",
    )


def _sizes(args: Any) -> list[int]:
    return [int(s) for s in str(getattr(args, "process_sizes", "112,224")).split(",") if s]


def _motion_cases(args: Any) -> list[str]:
    text = str(getattr(args, "process_motion", "all"))
    if text == "all":
        return list(MOTION_CASES)
    if text == "none":
        return []
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in MOTION_CASES]
    if unknown:
        raise ValueError(f"unknown motion case(s) {unknown}; choose from {list(MOTION_CASES)}")
    return names


def _prepare_rows(clips, yuv, size: int, args: Any, cuda_why: str | None) -> list[dict]:
    import fastvid.ops as ops  # noqa: PLC0415
    from fastvid.ops.affine import make_rng, sequence_matrices  # noqa: PLC0415

    dst = (size, size)
    frames = sum(len(c) for c in clips)
    rows = []
    kw = dict(size=size, case="prepare")
    g = f"prepare rgb @{size}x{size}"
    rows.append(
        _row(
            g,
            "fastvid cpu",
            lambda: ops.prepare(clips, size=dst, device="cpu"),
            frames,
            args,
            reference=True,
            note=f"{_cores()} threads",
            **kw,
        )
    )
    with single_thread():
        rows.append(
            _row(
                g,
                "fastvid cpu 1 thread",
                lambda: ops.prepare(clips, size=dst, device="cpu"),
                frames,
                args,
                **kw,
            )
        )
    rows.append(
        _row(
            g,
            "fastvid cpu, I420 input",
            lambda: ops.prepare(yuv, size=dst, input_format="yuv420p", device="cpu"),
            frames,
            args,
            **kw,
        )
    )
    rows.append(
        _row(
            g,
            "naive per-frame (keras-video-generators)",
            lambda: naive_prepare(clips, dst),
            frames,
            args,
            **kw,
        )
    )
    if cuda_why is None:
        rows.append(
            _row(
                g,
                "fastvid cuda",
                _synced(lambda: ops.prepare(clips, size=dst, device="cuda")),
                frames,
                args,
                note="includes the upload",
                **kw,
            )
        )
        rows.append(
            _row(
                g,
                "fastvid cuda, I420 input",
                _synced(lambda: ops.prepare(yuv, size=dst, input_format="yuv420p", device="cuda")),
                frames,
                args,
                note="includes the upload",
                **kw,
            )
        )
    else:
        rows.append(_skip(g, "fastvid cuda", cuda_why))

    aug = ops.AugmentParams(**AUGMENT)
    g = f"prepare rgb + augment @{size}x{size}"
    kw = dict(size=size, case="prepare+augment")

    def fv() -> Any:
        return ops.prepare(clips, size=dst, augment=aug, seed=0, device="cpu")

    rows.append(_row(g, "fastvid cpu", fv, frames, args, reference=True, **kw))
    with single_thread():
        rows.append(_row(g, "fastvid cpu 1 thread", fv, frames, args, **kw))
    mats = sequence_matrices(dst, dst, aug, make_rng(0), len(clips))
    rows.append(
        _row(
            g,
            "naive per-frame + cv2.warpAffine",
            lambda: naive_prepare_warp(clips, dst, mats),
            frames,
            args,
            note="two interpolations",
            **kw,
        )
    )
    augmenter = None if getattr(args, "process_no_keras", False) else keras_augmenter()
    if augmenter is not None:
        rows.append(
            _row(
                g,
                "keras-video-generators + ImageDataGenerator",
                lambda: naive_prepare_keras(clips, dst, augmenter),
                frames,
                args,
                note="scipy per frame",
                **kw,
            )
        )
    else:
        why = (
            "--process-no-keras"
            if getattr(args, "process_no_keras", False)
            else "keras or scipy not importable"
        )
        rows.append(_skip(g, "keras-video-generators + ImageDataGenerator", why))
    if cuda_why is None:
        rows.append(
            _row(
                g,
                "fastvid cuda",
                _synced(lambda: ops.prepare(clips, size=dst, augment=aug, seed=0, device="cuda")),
                frames,
                args,
                note="includes the upload",
                **kw,
            )
        )
    else:
        rows.append(_skip(g, "fastvid cuda", cuda_why))
    return rows


def _motion_rows(
    prepared: np.ndarray, size: int, cases: list[str], args: Any, cuda_why: str | None
) -> list[dict]:
    import fastvid.ops as ops  # noqa: PLC0415

    frames = prepared.shape[0] * (prepared.shape[1] - 1)
    rows = []
    device_batch = None
    if cuda_why is None:
        import cupy  # noqa: PLC0415

        device_batch = cupy.asarray(prepared)
    for case in cases:
        method, algorithm = MOTION_CASES[case]
        g = f"motion {case} @{size}x{size}"
        kw = dict(size=size, case=case)

        def fv(m: Any = method, a: str = algorithm) -> Any:
            return ops.motion(prepared, m, flow=a, device="cpu")

        rows.append(
            _row(
                g, "fastvid cpu", fv, frames, args, reference=True, note=f"{_cores()} threads", **kw
            )
        )
        with single_thread():
            rows.append(_row(g, "fastvid cpu 1 thread", fv, frames, args, **kw))
        label = (
            "naive per-pair loop"
            if method == "flow_raw" or algorithm == "dis"
            else "naive per-pair (keras-video-generators)"
        )
        rows.append(
            _row(
                g,
                label,
                lambda m=method, a=algorithm: naive_motion(prepared, m, a),
                frames,
                args,
                **kw,
            )
        )
        if device_batch is not None:
            rows.append(
                _row(
                    g,
                    "fastvid cuda",
                    _synced(
                        lambda m=method, a=algorithm: ops.motion(
                            device_batch, m, flow=a, device="cuda"
                        )
                    ),
                    frames,
                    args,
                    note="batch already on the device",
                    **kw,
                )
            )
        else:
            rows.append(_skip(g, "fastvid cuda", cuda_why or NOT_MEASURED))
    return rows


def _targets(rows: list[dict], sizes: list[int]) -> list[dict]:
    out = []
    for s in sizes:
        g = f"prepare rgb @{s}x{s}"
        out.append(
            common.Target(
                SUITE,
                f"prepare cpu vs naive per-frame @{s}x{s} (x faster)",
                common.speedup(rows, g, "naive per-frame (keras-video-generators)", "fastvid cpu"),
                2.0,
                detail=f"{_cores()} cores",
            ).to_dict()
        )
    cores = _cores()
    for s in sizes:
        g = f"motion flow_raw @{s}x{s}"
        if common.find(rows, group=g, method="fastvid cpu") is None:
            continue
        measured = common.speedup(rows, g, "fastvid cpu 1 thread", "fastvid cpu")
        if cores < 2:
            measured = None
        # "scales with cores": at least 60% of linear speed-up over one thread
        out.append(
            common.Target(
                SUITE,
                f"Farneback flow @{s}x{s}: all cores vs 1 thread (x faster)",
                measured,
                round(0.6 * cores, 2),
                detail=f"{cores} cores; required 0.6 x cores",
            ).to_dict()
        )
    return out


def run(args: Any) -> list[dict]:
    """Measure every case at every size; rows for the table, then targets."""
    quick = bool(getattr(args, "quick", False))
    batch = getattr(args, "process_batch", None) or (2 if quick else 8)
    nframes = getattr(args, "process_frames", None) or (4 if quick else 16)
    sizes = _sizes(args)
    cases = _motion_cases(args)
    cuda_why = cuda_reason()
    clips = make_clips(batch, nframes + 1)
    yuv = to_i420([c[:nframes] for c in clips])
    prep_clips = [c[:nframes] for c in clips]
    rows: list[dict] = [
        {
            "kind": "note",
            "suite": SUITE,
            "text": f"{batch} sequences x {nframes} frames of "
            f"{SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} RGB uint8 in memory",
        }
    ]
    import fastvid.ops as ops  # noqa: PLC0415

    # one-time costs (the thread pool, OpenCV's lazy set-up) are paid once per process,
    # not per batch: pay them before any timing, even with --warmup 0
    warm = ops.prepare(
        prep_clips[:1], size=(16, 16), augment=ops.AugmentParams(flip=1.0), device="cpu"
    )
    ops.motion(warm, ops.METHOD_DIFF_MASK, device="cpu")

    with common.progress(total=len(sizes) * (1 + len(cases)), desc="process", unit="case") as bar:
        for size in sizes:
            rows.extend(_prepare_rows(prep_clips, yuv, size, args, cuda_why))
            bar.update(1)
            # motion input: prepared frames in [0, 1], F + 1 per sequence (motion batch
            # halved: flow is the slowest thing here)
            mb = max(1, batch // 2)
            prepared = ops.prepare(clips[:mb], size=(size, size), device="cpu")
            for case in cases:
                rows.extend(_motion_rows(prepared, size, [case], args, cuda_why))
                bar.update(1)
    rows.extend(_targets(rows, sizes))
    return rows

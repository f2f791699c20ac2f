"""Look at what a generator feeds the model: :func:`show_sample` and ``fastvid preview``.

:func:`show_sample` is keras-video-generators' ``keras_video.utils.show_sample``
without matplotlib: it draws one batch as a grid image (one row per sample,
one column per frame, the class name at the left of each row), returns it
and writes it as a PNG when given a path. ``fastvid preview`` does the same
from the command line with generator arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fastvid._checks import cli_size

log = logging.getLogger(__name__)

_GAP = 2  # pixels between cells
_BACKGROUND = 255
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _to_numpy(x: Any) -> np.ndarray:
    """NumPy view of a batch that may live on a GPU (CuPy) or in a framework tensor."""
    if hasattr(x, "get") and not isinstance(x, np.ndarray):  # cupy
        return np.asarray(x.get())
    if hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    return np.asarray(x)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Displayable uint8 RGB ``(..., H, W, 3)`` from a generator's frames.

    Floats in [0, 1] (``rescale=1/255``) are scaled by 255, values already in
    [0, 255] are kept, anything else (signed flow, other rescales) is stretched
    from its minimum to its maximum. One channel becomes grey RGB; two
    channels (raw optical flow dx, dy) are shown as red and green.
    """
    x = np.asarray(frames)
    if x.dtype != np.uint8:
        x = x.astype(np.float32)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0 + 1e-6:
            x = x * 255.0
        elif lo < 0.0 or hi > 255.0:
            x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    channels = x.shape[-1]
    if channels == 1:
        x = np.repeat(x, 3, axis=-1)
    elif channels == 2:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
    elif channels != 3:
        raise ValueError(f"cannot display frames with {channels} channels")
    return x


def _label_names(labels: Any, count: int, classes: Any) -> list[str]:
    if labels is None:
        return [""] * count
    y = _to_numpy(labels)
    names = []
    for row in y.reshape(len(y), -1)[:count]:
        k = int(np.argmax(row))
        names.append(str(classes[k]) if classes is not None and k < len(classes) else str(k))
    return names


def _draw_text(img: np.ndarray, text: str, x: int, y: int, scale: float) -> None:
    cv2.putText(img, text, (x, y), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def make_grid(
    sequences: Any,
    labels: list[str] | None = None,
    *,
    cell_height: int | None = None,
) -> np.ndarray:
    """A grid image (RGB uint8) of ``(B, F, H, W, C)`` frames, one row per sequence.

    ``labels`` (one string per row) are written in a left margin; column
    headers give the frame's position in the sequence. ``cell_height`` scales
    every frame to that height (nearest neighbour, so pixels stay visible);
    by default frames keep their size but are enlarged to at least 64 pixels.
    """
    x = to_uint8(_to_numpy(sequences))
    if x.ndim != 5:
        raise ValueError(f"expected (batch, frames, height, width, channels), got {x.shape}")
    rows, cols, h, w = x.shape[:4]
    if cell_height is None:
        cell_height = max(h, 64)
    cell_w = max(1, round(w * cell_height / h))
    cell_h = cell_height
    labels = list(labels) if labels is not None else [""] * rows
    scale = 0.4 if cell_h < 96 else 0.5
    (tw, th), _ = cv2.getTextSize("0", _FONT, scale, 1)
    margin = max([cv2.getTextSize(s, _FONT, scale, 1)[0][0] for s in labels] + [0]) + 8
    header = th + 8
    height = header + rows * (cell_h + _GAP)
    width = margin + cols * (cell_w + _GAP)
    grid = np.full((height, width, 3), _BACKGROUND, np.uint8)
    for c in range(cols):
        _draw_text(grid, str(c), margin + c * (cell_w + _GAP) + 2, th + 3, scale)
    for r in range(rows):
        y0 = header + r * (cell_h + _GAP)
        _draw_text(grid, labels[r], 4, y0 + (cell_h + th) // 2, scale)
        for c in range(cols):
            x0 = margin + c * (cell_w + _GAP)
            cell = x[r, c]
            if cell.shape[:2] != (cell_h, cell_w):
                cell = cv2.resize(cell, (cell_w, cell_h), interpolation=cv2.INTER_NEAREST)
            grid[y0 : y0 + cell_h, x0 : x0 + cell_w] = cell
    return grid


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (creating folders); OSError when it cannot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise OSError(f"cannot encode a PNG for {path}")
    path.write_bytes(data.tobytes())  # imencode + write: works with any path, Unicode included
    return path


def show_sample(
    gen: Any,
    index: int = 0,
    random: bool = False,
    row_width: float = 22,
    row_height: float = 5,
    *,
    path: str | os.PathLike[str] | None = None,
    show: bool | None = None,
    max_samples: int | None = None,
    cell_height: int | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Show batch ``index`` of a generator, keras-video-generators' way, and return it as a grid.

    Rows are the samples of the batch (at most ``max_samples``), columns their
    frames, each labelled with its class name (from ``gen.classes`` and the
    label). ``random=True`` picks a random batch instead (from ``seed``, else
    NumPy's global generator), as keras-video-generators did.

    ``show``: draw a matplotlib figure ``row_width`` inches wide and ``row_height``
    inches per row and ``plt.show()`` it; None (default) does so when matplotlib is
    installed and its backend can display (a desktop or a notebook, not a headless
    ``agg``). ``path``: also write the grid as a PNG.

    Works with any object whose ``gen[i]`` returns ``(x, y)`` or ``x`` of shape
    ``(B, F, H, W, C)``. Returns the grid, RGB uint8 ``(height, width, 3)``.
    """
    total = len(gen)
    if total == 0:
        raise ValueError("the generator has no batch to show")
    if random:
        index = int(
            np.random.default_rng(seed).integers(total)
            if seed is not None
            else np.random.randint(total)
        )
    if not -total <= index < total:
        raise IndexError(f"batch {index} out of range: the generator has {total}")
    batch = gen[index]
    x, y = (batch[0], batch[1]) if isinstance(batch, tuple | list) else (batch, None)
    x = _to_numpy(x)
    if max_samples is not None:
        x = x[:max_samples]
    names = _label_names(y, len(x), getattr(gen, "classes", None))
    grid = make_grid(x, names, cell_height=cell_height)
    if path is not None:
        written = save_png(path, grid)
        log.info("batch %d (%s) drawn to %s", index, "x".join(map(str, x.shape)), written)
    if show or (show is None and can_display()):
        _plot(x, names, row_width, row_height)
    return grid


_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def can_display() -> bool:
    """True when matplotlib is installed and its backend shows figures (not headless)."""
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        return False
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE


def _plot(x: np.ndarray, names: list[str], row_width: float, row_height: float) -> None:
    """keras-video-generators' figure: one subplot per frame, titled with the class."""
    try:
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise ImportError(
            "show=True needs matplotlib: pip install matplotlib (or fastvid[plot])"
        ) from None
    frames = to_uint8(x)
    rows, cols = frames.shape[:2]
    fig = plt.figure(figsize=(row_width, row_height * rows))
    for r in range(rows):
        for c in range(cols):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.set_title(names[r])
            ax.imshow(frames[r, c])
            ax.axis("off")
    plt.show()


# --------------------------------------------------------------------------- fastvid preview


def _method(text: str) -> int | str:
    from fastvid.ops import motion_method  # noqa: PLC0415

    try:
        return motion_method(text).code
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _preview_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastvid preview",
        description="Draw one batch of a fastvid generator as a PNG grid "
        "(rows = samples, columns = frames, labelled with the class).",
    )
    p.add_argument("glob", nargs="?", help="same as --glob-pattern")
    p.add_argument(
        "--glob-pattern",
        default=None,
        help="videos, with {classname} in the path (default ./videos/{classname}/*.avi)",
    )
    p.add_argument(
        "--generator",
        choices=("frame", "sliding", "flow"),
        default="frame",
        help="VideoFrameGenerator, SlidingFrameGenerator or OpticalFlowGenerator",
    )
    p.add_argument("--nb-frames", type=int, default=5, help="frames per sample (default 5)")
    p.add_argument(
        "--target-shape",
        type=cli_size,
        default=(112, 112),
        metavar="WxH",
        help="frame size (default 112x112)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="samples in the batch (default 4)")
    p.add_argument("--nb-channel", type=int, choices=(1, 3), default=3, help="1 = grey")
    p.add_argument(
        "--method",
        type=_method,
        default=None,
        help="flow generator only: optical_flow, flow_mask, diff_mask, abs_diff (1-4) or flow_raw",
    )
    p.add_argument(
        "--sequence-time",
        type=float,
        default=None,
        help="sliding generator only: seconds spanned by one sample",
    )
    p.add_argument("--seek-mode", choices=("exact", "keyframe"), default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--index", type=int, default=0, help="which batch (default 0)")
    p.add_argument("--no-shuffle", action="store_true", help="files in sorted order")
    p.add_argument("--seed", type=int, default=None, help="seed for shuffling")
    p.add_argument("--cell-height", type=int, default=None, help="pixel height of each frame")
    p.add_argument(
        "--output", "-o", default="preview.png", help="PNG to write (default preview.png)"
    )
    return p


def _build_loader(args: argparse.Namespace) -> Any:
    """The generator's batches, from a Keras-free :class:`fastvid.ClipLoader`."""
    from fastvid.dataset import find_files_or_raise  # noqa: PLC0415
    from fastvid.loader import ClipLoader, MotionOptions  # noqa: PLC0415

    by_class = find_files_or_raise(args.glob_pattern)
    classes = sorted(by_class)
    files = [(p, classes.index(c)) for c in classes for p in by_class[c]]
    options: dict[str, Any] = {
        "num_frames": args.nb_frames,
        "size": args.target_shape,
        "batch_size": args.batch_size,
        "color": "rgb" if args.nb_channel == 3 else "gray",
        "shuffle": not args.no_shuffle,
        "seed": args.seed or 0,
    }
    for name in ("seek_mode", "device"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.generator == "sliding":
        options.update(sampler="sliding", sampler_options={"sequence_time": args.sequence_time})
    elif args.generator == "flow":  # a motion image between each pair of decoded frames
        options.update(num_frames=args.nb_frames + 1, motion=MotionOptions(args.method or 1))
    return ClipLoader(files, classes=classes, name="fastvid preview", **options)


def preview_main(argv: list[str] | None = None) -> int:
    """``fastvid preview``: write one batch of a generator as a PNG grid. Returns an exit code."""
    parser = _preview_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return int(exc.code or 0)
    if args.glob and args.glob_pattern:
        parser.print_usage(sys.stderr)
        print(
            "fastvid preview: give the pattern once (positional or --glob-pattern)", file=sys.stderr
        )
        return 2
    args.glob_pattern = args.glob or args.glob_pattern or "./videos/{classname}/*.avi"
    if args.method is not None and args.generator != "flow":
        print("fastvid preview: --method needs --generator flow", file=sys.stderr)
        return 2
    try:
        gen = _build_loader(args)
        if len(gen) == 0:
            print(
                f"fastvid preview: no batch of {args.batch_size} from {args.glob_pattern!r} "
                f"({len(gen.videos)} files)",
                file=sys.stderr,
            )
            return 1
        grid = show_sample(
            gen, args.index, path=args.output, show=False, cell_height=args.cell_height
        )
    except (OSError, ValueError, IndexError) as exc:
        print(f"fastvid preview: {exc}", file=sys.stderr)
        return 1
    classes = ", ".join(map(str, getattr(gen, "classes", [])))
    print(
        f"{args.output}: batch {args.index} of {len(gen)}, grid {grid.shape[1]}x{grid.shape[0]}"
        f" px; {len(gen.videos)} files, classes: {classes}"
    )
    return 0

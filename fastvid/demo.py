"""``fastvid demo``: make a small labelled video dataset, train on it, compare loaders.

Three steps, a few minutes on two CPU cores:

1. write synthetic videos (:mod:`fastvid.synth`): a square moves right, left
   or down over a gradient, and the direction is the class;
2. train a TimeDistributed(Conv2D) -> GRU -> Dense model on them for a few
   epochs with :class:`fastvid.VideoFrameGenerator` (with a validation split),
   printing loss and accuracy per epoch;
3. time one epoch of fastvid's generator and of keras-video-generators'
   algorithm (:mod:`fastvid.bench.kvg_baseline`) on the same files, and print both
   throughputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_CLASSES = ("right", "left", "down")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; ``--quick`` swaps in :data:`QUICK` (for tests and a first look)."""

    videos_per_class: int = 16
    num_frames: tuple[int, int] = (40, 80)
    width: int = 320
    height: int = 240
    nb_frames: int = 8
    size: int = 64
    batch_size: int = 4
    epochs: int = 8
    learning_rate: float = 1e-3


QUICK = DemoConfig(
    videos_per_class=4,
    num_frames=(20, 30),
    width=64,
    height=48,
    nb_frames=4,
    size=32,
    batch_size=2,
    epochs=1,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastvid demo",
        description="Generate a small labelled video dataset, train a "
        "TimeDistributed(Conv2D)->GRU model on it with fastvid.VideoFrameGenerator, "
        "and compare its loading speed with keras-video-generators' way on the same files.",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("demo_data"),
        help="where the videos are written (default ./demo_data; reused if present)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny videos, 1 epoch: checks that everything runs (seconds)",
    )
    p.add_argument("--videos-per-class", type=int, default=None, help="default 16 (quick 4)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 8)")
    p.add_argument("--nb-frames", type=int, default=None, help="frames per sample (default 8)")
    p.add_argument("--size", type=int, default=None, help="square frame size (default 64)")
    p.add_argument("--batch-size", type=int, default=None, help="default 4")
    p.add_argument("--seed", type=int, default=0, help="seed of data, splits and weights")
    p.add_argument("--no-compare", action="store_true", help="skip the loader comparison")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--verbose", "-v", action="store_true", help="show fastvid's log messages")
    return p


def _config(args: argparse.Namespace) -> DemoConfig:
    base = QUICK if args.quick else DemoConfig()
    changes = {
        "videos_per_class": args.videos_per_class,
        "epochs": args.epochs,
        "nb_frames": args.nb_frames,
        "size": args.size,
        "batch_size": args.batch_size,
    }
    values = {k: v for k, v in changes.items() if v is not None}
    for name, v in values.items():
        if v <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    return DemoConfig(**{**base.__dict__, **values})


# --------------------------------------------------------------------------- step 1: data


def make_demo_dataset(
    root: Path, cfg: DemoConfig, *, seed: int = 0, progress: bool = True
) -> list[Path]:
    """Write ``root/<class>/<class>_<k>.avi`` (mpeg4, GOP 12), keeping files already there.

    The same layout and content as :func:`fastvid.synth.make_dataset`, one file
    at a time so a progress bar can follow.
    """
    import numpy as np
    from tqdm import tqdm

    from fastvid.synth import MOTIONS, make_video

    rng = np.random.default_rng(seed)
    jobs = []
    for name in DEMO_CLASSES:
        for k in range(cfg.videos_per_class):
            n = int(rng.integers(*cfg.num_frames))
            jobs.append((root / name / f"{name}_{k:03d}.avi", n, MOTIONS[name]))
    todo = [j for j in jobs if not (j[0].exists() and j[0].stat().st_size > 0)]
    for path, n, motion in tqdm(
        todo,
        desc="writing videos",
        unit="video",
        file=sys.stderr,
        disable=not progress or not todo,
        leave=False,
    ):
        make_video(
            path, n, width=cfg.width, height=cfg.height, codec="mpeg4", gop=12, motion=motion
        )
    return [j[0] for j in jobs]


# --------------------------------------------------------------------------- step 2: train


def build_model(nb_frames: int, size: int, classes: int, learning_rate: float = 1e-3) -> Any:
    """A small TimeDistributed(Conv2D) -> GRU -> Dense classifier of frame sequences.

    The convolutions see each frame; flattening (not global pooling) keeps
    *where* things are, so the GRU can tell which way they move.
    """
    import keras

    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((nb_frames, size, size, 3)),
            layers.TimeDistributed(layers.Conv2D(8, 3, padding="same", activation="relu")),
            layers.TimeDistributed(layers.MaxPooling2D(2)),
            layers.TimeDistributed(layers.Conv2D(16, 3, padding="same", activation="relu")),
            layers.TimeDistributed(layers.MaxPooling2D(2)),
            layers.TimeDistributed(
                layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")
            ),
            layers.TimeDistributed(layers.Flatten()),
            layers.TimeDistributed(layers.Dense(32, activation="relu")),
            layers.GRU(32),
            layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(learning_rate), "categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def _epoch_printer(epochs: int) -> Any:
    import keras

    class EpochPrinter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            parts = [f"  epoch {epoch + 1:>2}/{epochs}"]
            for key, label in (
                ("loss", "loss"),
                ("accuracy", "acc"),
                ("val_loss", "val_loss"),
                ("val_accuracy", "val_acc"),
            ):
                if key in logs:
                    parts.append(f"{label} {logs[key]:.3f}")
            parts.append(f"({time.perf_counter() - self._t0:.1f} s)")
            print("  ".join(parts), flush=True)

    return EpochPrinter()


# --------------------------------------------------------------------------- step 3: compare


def compare_loaders(
    pattern: str, cfg: DemoConfig, *, seed: int = 0, repeats: int = 3, warmup: int = 1
) -> dict[str, tuple[float, int, int]]:
    """Epochs of each loader on the same files: {name: (median seconds, batches, clips)}.

    The loaders take turns (fastvid, then the baseline, ``repeats`` times) so a
    change in the machine's load hits both alike; ``warmup`` untimed epochs
    first let both find their files in the OS cache.
    """
    import statistics

    import fastvid
    from fastvid.bench.kvg_baseline import KvgVideoFrameGenerator

    common = {
        "glob_pattern": pattern,
        "nb_frames": cfg.nb_frames,
        "target_shape": (cfg.size, cfg.size),
        "batch_size": cfg.batch_size,
        "shuffle": True,
        "seed": seed,
    }
    loaders = {
        "fastvid VideoFrameGenerator": fastvid.VideoFrameGenerator(**common),
        "keras-video-generators (port)": KvgVideoFrameGenerator(**common),
    }
    times: dict[str, list[float]] = {name: [] for name in loaders}
    clips: dict[str, int] = {}
    for round_ in range(warmup + repeats):
        for name, gen in loaders.items():
            t0 = time.perf_counter()
            clips[name] = sum(len(gen[i][1]) for i in range(len(gen)))  # one epoch
            gen.on_epoch_end()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {
        name: (statistics.median(times[name]), len(gen), clips[name])
        for name, gen in loaders.items()
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """``fastvid demo``: returns an exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        cfg = _config(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    except ValueError as exc:
        print(f"fastvid demo: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out
    if not args.verbose:  # the demo says what happens; the library's INFO lines would repeat it
        logging.getLogger("fastvid").setLevel(logging.WARNING)
    t_start = time.perf_counter()
    root = args.data_dir
    pattern = str(root / "{classname}" / "*.avi")

    print(
        f"1. Dataset: {len(DEMO_CLASSES)} classes ({', '.join(DEMO_CLASSES)}: the direction "
        f"a square moves), {cfg.videos_per_class} videos each, {cfg.width}x{cfg.height} "
        f"mpeg4 AVI, {cfg.num_frames[0]}-{cfg.num_frames[1] - 1} frames, in {root}/"
    )
    t0 = time.perf_counter()
    try:
        files = make_demo_dataset(root, cfg, seed=args.seed, progress=not args.no_progress)
    except OSError as exc:
        print(f"fastvid demo: cannot write the dataset in {root}: {exc}", file=sys.stderr)
        return 1
    print(f"   {len(files)} videos ready ({time.perf_counter() - t0:.1f} s)\n")

    try:
        return _train_and_compare(args, cfg, pattern, len(files), t_start)
    except (OSError, ValueError) as exc:  # VideoError is an OSError: it names the file
        print(f"fastvid demo: {exc}", file=sys.stderr)
        return 1


def _train_and_compare(
    args: argparse.Namespace, cfg: DemoConfig, pattern: str, n_files: int, t_start: float
) -> int:
    import keras

    import fastvid

    keras.utils.set_random_seed(args.seed)
    train = fastvid.VideoFrameGenerator(
        glob_pattern=pattern,
        nb_frames=cfg.nb_frames,
        target_shape=(cfg.size, cfg.size),
        batch_size=cfg.batch_size,
        split_val=0.25,
        shuffle=True,
        seed=args.seed,
    )
    valid = train.get_validation_generator()
    print(
        f"2. Training: fastvid.VideoFrameGenerator, {train.files_count} training / "
        f"{valid.files_count} validation videos, batches of {cfg.batch_size} x "
        f"{cfg.nb_frames} frames at {cfg.size}x{cfg.size}; "
        "TimeDistributed(Conv2D) -> GRU -> Dense"
    )
    model = build_model(cfg.nb_frames, cfg.size, len(train.classes), cfg.learning_rate)
    t0 = time.perf_counter()
    history = model.fit(
        train,
        validation_data=valid,
        epochs=cfg.epochs,
        verbose=0,
        callbacks=[_epoch_printer(cfg.epochs)],
    )
    acc = history.history.get("val_accuracy", [float("nan")])[-1]
    print(
        f"   trained in {time.perf_counter() - t0:.1f} s; final validation accuracy "
        f"{acc:.0%} (chance: {1 / len(train.classes):.0%})\n"
    )

    if not args.no_compare:
        repeats, warmup = (1, 0) if args.quick else (3, 1)
        print(
            f"3. Loading speed: epochs over all {n_files} videos, same files and sample "
            f"shape ({cfg.nb_frames} frames at {cfg.size}x{cfg.size}), median of {repeats}:"
        )
        results = compare_loaders(pattern, cfg, seed=args.seed, repeats=repeats, warmup=warmup)
        width = max(map(len, results))
        print(f"   {'loader':<{width}}  {'batches/s':>9}  {'clips/s':>8}  {'epoch':>7}")
        for name, (secs, batches, clips) in results.items():
            print(
                f"   {name:<{width}}  {batches / secs:>9.2f}  {clips / secs:>8.1f}  {secs:>6.2f}s"
            )
        (t_fast, _, n_fast), (t_slow, _, n_slow) = results.values()
        ratio = (n_fast / t_fast) / (n_slow / t_slow) if n_slow and t_fast else float("nan")
        print(
            f"   fastvid loads {ratio:.1f}x as many clips per second as "
            "keras-video-generators' way on these files."
        )
        print("   (a full comparison: fastvid bench --suite keras)\n")

    print(
        f"Done in {time.perf_counter() - t_start:.0f} s. In your own code:\n"
        "    from fastvid import VideoFrameGenerator   # was: from keras_video import ...\n"
        f"    train = VideoFrameGenerator(glob_pattern={pattern!r}, nb_frames="
        f"{cfg.nb_frames},\n"
        f"                                target_shape=({cfg.size}, {cfg.size}), "
        "split_val=.25)"
    )
    return 0

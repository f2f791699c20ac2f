"""Generator configurations whose batches are recorded as golden (see tests/golden/).

Each case builds a generator (fixed seed, generated videos) and returns named
arrays: the pixels and labels of a few batches of two epochs, and of the
validation generator where there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fastvid.synth import MOTIONS, make_video


def make_videos(root: Path) -> Path:
    """3 classes x 4 mpeg4 clips of 64x48 (20-40 frames; one class has 2 short ones)."""
    lengths = {"down": (26, 31, 35, 40), "left": (20, 24, 33, 38), "right": (5, 7, 29, 36)}
    for cls, ns in lengths.items():
        for k, n in enumerate(ns):
            make_video(root / cls / f"{cls}_{k}.avi", n, codec="mpeg4", gop=8, motion=MOTIONS[cls])
    return root


def _shift_colours(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(frames + rng.uniform(-20, 20, size=(1, 1, 1, 3)), 0, 255)


def _cases() -> dict[str, Callable[[str], object]]:
    import fastvid as fv

    def common(pattern: str, **kw):
        args = dict(glob_pattern=pattern, batch_size=3, seed=7, device="cpu", prefetch=False)
        args.update(kw)
        return args

    return {
        "frame": lambda p: fv.VideoFrameGenerator(
            **common(p, nb_frames=4, target_shape=(16, 20), split_val=0.25)
        ),
        "frame_gray": lambda p: fv.VideoFrameGenerator(
            **common(p, nb_frames=3, target_shape=(12, 12), nb_channel=1, shuffle=False)
        ),
        "frame_repeat_last": lambda p: fv.VideoFrameGenerator(
            **common(p, nb_frames=8, target_shape=(16, 16), short_video="repeat_last")
        ),
        "frame_loop_keyframe": lambda p: fv.VideoFrameGenerator(
            **common(
                p, nb_frames=8, target_shape=(16, 16), short_video="loop", seek_mode="keyframe"
            )
        ),
        "frame_augment": lambda p: fv.VideoFrameGenerator(
            **common(
                p,
                nb_frames=4,
                target_shape=(16, 16),
                augment=fv.AugmentParams(flip=0.5, rotation=10, zoom=0.1, shift=0.1),
            )
        ),
        "frame_callable": lambda p: fv.VideoFrameGenerator(
            **common(p, nb_frames=3, target_shape=(16, 16), transformation=_shift_colours)
        ),
        "frame_cache": lambda p: fv.VideoFrameGenerator(
            **common(p, nb_frames=4, target_shape=(16, 16), use_frame_cache=True, rescale=1 / 127.5)
        ),
        "sliding": lambda p: fv.SlidingFrameGenerator(
            **common(p, nb_frames=3, target_shape=(16, 16), split_val=0.25)
        ),
        "sliding_time": lambda p: fv.SlidingFrameGenerator(
            **common(p, nb_frames=3, target_shape=(16, 16), sequence_time=0.5)
        ),
        **{
            f"flow_{name}": (
                lambda m: (
                    lambda p: fv.OpticalFlowGenerator(
                        **common(p, nb_frames=3, target_shape=(16, 16), method=m)
                    )
                )
            )(method)
            for name, method in (
                ("optical_flow", 1),
                ("flow_mask", 2),
                ("diff_mask", 3),
                ("abs_diff", 4),
            )
        },
    }


CASES = list(_cases())


def run_case(name: str, root: Path) -> dict[str, np.ndarray]:
    """The arrays a case gives: batches 0 and 1 of epoch 0, batch 0 of epoch 1, validation 0."""
    gen = _cases()[name](str(root / "{classname}" / "*.avi"))
    out: dict[str, np.ndarray] = {"files": np.array(sorted(Path(f).name for f in gen.files))}
    for b in range(min(2, len(gen))):
        x, y = gen[b]
        out[f"e0b{b}_x"], out[f"e0b{b}_y"] = np.asarray(x), np.asarray(y)
    gen.on_epoch_end()
    x, y = gen[0]
    out["e1b0_x"], out["e1b0_y"] = np.asarray(x), np.asarray(y)
    if getattr(gen, "split_val", None):
        x, y = gen.get_validation_generator()[0]
        out["val_x"], out["val_y"] = np.asarray(x), np.asarray(y)
    return out

"""fastvid.ClipLoader on its own: no Keras, which frames and labels come back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import banded_video

from fastvid import ClipLoader, sampling
from fastvid.synth import MOTIONS, frame_indices, make_video

LENGTHS = {"down": (30, 24), "left": (26, 40), "right": (20, 31)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loader")
    for cls, ns in LENGTHS.items():
        for k, n in enumerate(ns):
            make_video(root / cls / f"{cls}_{k}.avi", n, codec="mpeg4", motion=MOTIONS[cls])
    return root


def small(**kw):
    return dict(num_frames=4, size=(24, 32), batch_size=2, device="cpu", seed=3, **kw)


def test_loader_imports_no_keras():
    code = "import sys, fastvid.loader; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False False", out.stderr


@pytest.mark.parametrize("kind", ["folder", "glob", "csv", "list"])
def test_from_source_every_kind_of_source(folder, kind, tmp_path):
    files = sorted(str(p) for p in folder.rglob("*.avi"))
    names = [Path(p).parent.name for p in files]
    if kind == "folder":
        loader = ClipLoader.from_source(folder, **small())
    elif kind == "glob":
        loader = ClipLoader.from_source(str(folder / "{classname}" / "*.avi"), **small())
    elif kind == "csv":
        csv = tmp_path / "list.csv"
        rows = "".join(f"{p},{c}\n" for p, c in zip(files, names, strict=True))
        csv.write_text("path,label\n" + rows)
        loader = ClipLoader.from_source(csv, **small())
    else:
        loader = ClipLoader.from_source(files, labels=names, **small())
    assert loader.classes == ["down", "left", "right"]
    assert [v.path for v in loader.videos] == files
    assert [loader.classes[v.label] for v in loader.videos] == names


def test_batches_frames_and_labels(folder):
    loader = ClipLoader.from_source(folder, **small(shuffle=False))
    x, y = loader.batch(0)
    assert x.shape == (2, 4, 24, 32, 3) and x.dtype == np.float32
    assert y.shape == (2, 3) and y.sum(axis=1).tolist() == [1.0, 1.0]
    first = loader.videos[0]
    assert frame_indices(x[0]) == sampling.uniform_indices(first.num_frames, 4)
    assert len(loader) == 3 and loader.samples_count == 6


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("int", lambda y: y.dtype == np.int32 and y.tolist() == [0, 0]),
        (None, None),
    ],
)
def test_label_modes(folder, mode, check):
    loader = ClipLoader.from_source(folder, **small(shuffle=False, label_mode=mode))
    out = loader.batch(0)
    if mode is None:
        assert isinstance(out, np.ndarray) and out.shape[0] == 2
    else:
        assert check(out[1])


def test_single_samples_for_frontends_that_batch(folder):
    loader = ClipLoader.from_source(folder, **small(shuffle=False))
    frames, label = loader.sample(3)
    path, indices = loader.sample_request(3)
    assert frames.shape == (4, 24, 32, 3) and label.shape == (3,)
    assert frame_indices(frames) == indices
    with pytest.raises(IndexError):
        loader.sample(6)


def test_random_clips_differ_by_epoch_and_repeat_by_seed(folder):
    opts = small(shuffle=False, sampler="random_clip", sampler_options={"frame_step": 2})
    loader = ClipLoader.from_source(folder, **opts)
    assert loader.sampler.name == "random_clip"
    epoch0 = [loader.sample_request(s)[1] for s in range(loader.samples_count)]
    for indices in epoch0:
        assert np.all(np.diff(indices) == 2) and len(indices) == 4
    loader.next_epoch()
    epoch1 = [loader.sample_request(s)[1] for s in range(loader.samples_count)]
    assert epoch0 != epoch1
    again = ClipLoader.from_source(folder, **opts)
    assert [again.sample_request(s)[1] for s in range(again.samples_count)] == epoch0
    x, _ = loader.batch(0)
    assert frame_indices(x[0]) == loader.sample_request(int(loader.order[0]))[1]


def test_epoch_can_be_set_to_resume(folder):
    loader = ClipLoader.from_source(folder, **small())
    loader.next_epoch()
    loader.next_epoch()
    order2 = loader.order.copy()
    other = ClipLoader.from_source(folder, **small())
    other.epoch = 2
    np.testing.assert_array_equal(other.order, order2)
    with pytest.raises(ValueError, match="epoch"):
        other.epoch = -1


def test_a_sampler_object_is_taken_as_is(folder):
    sampler = sampling.SlidingSampler(3, stride=5)
    loader = ClipLoader.from_source(folder, **small(sampler=sampler))
    assert loader.sampler is sampler
    by_video = {}
    for s in range(loader.samples_count):
        path, idx = loader.sample_request(s)
        by_video.setdefault(path, []).append(idx[0])
    assert all(starts == list(range(0, 5 * len(starts), 5)) for starts in by_video.values())


def test_subset_shares_probes_and_cache(folder):
    loader = ClipLoader.from_source(folder, cache=1 << 24, **small())
    files = [(v.path, v.label) for v in loader.videos]
    part = loader.subset(files[:2], "part", shuffle=False)
    assert part.cache is loader.cache and part.samples_count == 2
    part.batch(0)
    assert len(loader.cache) == 8  # part's frames are in the shared cache


def test_argument_errors_name_the_parameter(folder):
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        ClipLoader.from_source(folder, **{**small(), "size": 112})
    with pytest.raises(ValueError, match="sampler must be one of"):
        ClipLoader.from_source(folder, **small(sampler="every_other"))
    with pytest.raises(ValueError, match="label_mode must be one of"):
        ClipLoader.from_source(folder, **small(label_mode="binary"))
    with pytest.raises(ValueError, match="short_video must be one of"):
        ClipLoader.from_source(folder, **small(short_video="pad"))
    with pytest.raises(TypeError, match="does not take"):
        ClipLoader.from_source(folder, **small(sampler_options={"frame_step": 2}))


@pytest.mark.parametrize("degrees", [0, 90])
def test_aspect_ratio_crop_and_pad(tmp_path, degrees):
    path = banded_video(tmp_path / "bands.mp4", degrees)
    opts = dict(
        num_frames=2,
        size=(32, 32),
        batch_size=1,
        device="cpu",
        shuffle=False,
        rescale=1.0,
        label_mode=None,
    )

    def first_frame(aspect):
        loader = ClipLoader([(path, 0)], classes=["c"], aspect=aspect, **opts)
        return loader.batch(0)[0, 0]

    red_minus_blue = lambda img: img[..., 0] - img[..., 2]  # noqa: E731
    # the picture is 2:1 (1:2 shown when turned); the bands are along its long axis' ends
    along = 1 if degrees == 0 else 0
    stretched = red_minus_blue(first_frame("stretch"))
    ends = (stretched.take(0, axis=along), stretched.take(-1, axis=along))
    assert (np.abs(ends[0]) > 150).all() and (np.abs(ends[1]) > 150).all()
    assert np.sign(ends[0].mean()) != np.sign(ends[1].mean())  # red at one end, blue at the other

    cropped = first_frame("crop")  # the centred square: gray only
    assert np.abs(red_minus_blue(cropped)).max() < 40
    assert np.abs(cropped - 128).max() < 40

    padded = first_frame("pad")  # the whole picture in 32x16 (16x32 turned), zeros around
    across = 1 - along
    zeros = [padded.take(range(0, 8), axis=across), padded.take(range(24, 32), axis=across)]
    assert all(np.abs(z).max() == 0 for z in zeros)
    inside = red_minus_blue(padded.take(range(9, 23), axis=across))
    assert np.abs(inside.take(0, axis=along)).min() > 150  # both colour bands are kept
    assert np.abs(inside.take(-1, axis=along)).min() > 150


def test_aspect_ratio_option_is_checked(folder):
    with pytest.raises(ValueError, match="aspect"):
        ClipLoader.from_source(folder, aspect="fill", **small())

"""show_sample draws a batch as a grid (rows = samples, columns = frames); fastvid preview."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastvid import utils
from fastvid.synth import draw_frame, frame_index


class FakeGenerator:
    """What show_sample needs from a generator: len, gen[i] -> (x, y), classes."""

    classes = ["down", "left", "right"]

    def __init__(
        self, batches=3, batch_size=2, frames=4, height=48, width=64, channels=3, dtype=np.float32
    ):
        self.batches, self.batch_size, self.frames = batches, batch_size, frames
        self.height, self.width, self.channels, self.dtype = height, width, channels, dtype

    def __len__(self):
        return self.batches

    def frame_number(self, batch, sample, frame):
        return 100 * batch + 10 * sample + frame

    def __getitem__(self, i):
        x = np.stack(
            [
                np.stack(
                    [
                        draw_frame(self.frame_number(i, s, f), self.width, self.height)
                        for f in range(self.frames)
                    ]
                )
                for s in range(self.batch_size)
            ]
        )
        if self.channels == 1:
            x = x.mean(axis=-1, keepdims=True)
        x = (x / 255.0).astype(self.dtype) if self.dtype != np.uint8 else x
        y = np.zeros((self.batch_size, 3), np.float32)
        y[np.arange(self.batch_size), (np.arange(self.batch_size) + i) % 3] = 1.0
        return x, y


def cells(grid, rows, cols, cell_h, cell_w):
    """Crop the grid's cells back out, from the layout show_sample documents."""
    gap = utils._GAP
    header = grid.shape[0] - rows * (cell_h + gap)
    margin = grid.shape[1] - cols * (cell_w + gap)
    assert header > 0 and margin > 0  # room for column numbers and class names
    return [
        [
            grid[
                header + r * (cell_h + gap) : header + r * (cell_h + gap) + cell_h,
                margin + c * (cell_w + gap) : margin + c * (cell_w + gap) + cell_w,
            ]
            for c in range(cols)
        ]
        for r in range(rows)
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_show_sample_grid_holds_the_batch(dtype):
    gen = FakeGenerator(dtype=dtype)
    grid = utils.show_sample(gen, index=1)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    got = cells(grid, rows=2, cols=4, cell_h=64, cell_w=85)  # 48x64 frames enlarged to 64 high
    for s in range(2):
        for f in range(4):
            assert frame_index(got[s][f]) == gen.frame_number(1, s, f)


def test_show_sample_labels_each_row():
    gen = FakeGenerator(batch_size=3)
    grid = utils.show_sample(gen, 0, cell_height=48)
    x, y = gen[0]
    # the label margin of a row has dark text pixels; its width fits the longest class name
    rows = cells(grid, rows=3, cols=4, cell_h=48, cell_w=64)
    assert all(frame_index(rows[r][0]) == gen.frame_number(0, r, 0) for r in range(3))
    margin = grid.shape[1] - 4 * (64 + utils._GAP)
    (text_w, _), _ = cv2.getTextSize("right", utils._FONT, 0.4, 1)
    assert margin >= text_w
    header = grid.shape[0] - 3 * (48 + utils._GAP)
    for r in range(3):
        band = grid[header + r * 50 : header + r * 50 + 48, :margin]
        assert band.min() < 128  # something is written there


def test_show_sample_writes_png(tmp_path):
    gen = FakeGenerator(channels=1)
    path = tmp_path / "sub dir" / "sample é.png"
    grid = utils.show_sample(gen, 2, path=path, max_samples=1)
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == grid.shape
    assert np.array_equal(back[..., ::-1], grid)  # written as RGB -> BGR file, read back
    got = cells(grid, rows=1, cols=4, cell_h=64, cell_w=85)
    assert [frame_index(c) for c in got[0]] == [200, 201, 202, 203]


def test_show_sample_random_and_bounds():
    gen = FakeGenerator()
    a = utils.show_sample(gen, random=True, seed=5)
    b = utils.show_sample(gen, random=True, seed=5)
    assert np.array_equal(a, b)
    with pytest.raises(IndexError):
        utils.show_sample(gen, 3)
    np.random.seed(11)  # without seed: NumPy's global generator, as keras-video-generators
    c = utils.show_sample(gen, random=True)
    np.random.seed(11)
    assert np.array_equal(c, utils.show_sample(gen, random=True))


def test_show_sample_plots_like_keras_video_generators(monkeypatch):
    """keras-video-generators' call, show_sample(g, index, random, row_width, row_height):
    one subplot per frame, titled with the class, a figure row_width x row_height per row."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    assert not utils.can_display()  # agg: headless, nothing is shown by default
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    gen = FakeGenerator(batch_size=2, frames=4)
    utils.show_sample(gen, 1)
    assert not shown
    monkeypatch.setattr(utils, "can_display", lambda: True)  # as on a desktop or a notebook
    grid = utils.show_sample(gen, 1, False, 10, 3)
    assert grid.ndim == 3 and len(shown) == 1
    fig = shown[0]
    assert tuple(fig.get_size_inches()) == (10, 6)  # row_width, row_height per sample row
    axes = fig.get_axes()
    assert len(axes) == 8
    x, y = gen[1]
    names = [gen.classes[int(k)] for k in y.argmax(axis=1)]
    assert [ax.get_title() for ax in axes] == [names[0]] * 4 + [names[1]] * 4
    for k, ax in enumerate(axes):  # each subplot holds its frame, in order
        image = ax.get_images()[0].get_array()
        assert frame_index(np.asarray(image)) == gen.frame_number(1, k // 4, k % 4)
    plt.close("all")


def test_to_uint8_ranges():
    assert utils.to_uint8(np.full((1, 2, 2, 1), 0.5, np.float32))[0, 0, 0].tolist() == [128] * 3
    signed = utils.to_uint8(np.array([[[[-1.0, 1.0]]]], np.float32))  # raw flow: dx, dy
    assert signed.shape == (1, 1, 1, 3) and signed[0, 0, 0].tolist() == [0, 255, 0]
    with pytest.raises(ValueError):
        utils.to_uint8(np.zeros((1, 2, 2, 4)))


def test_show_sample_with_fastvid_generator(dataset_dir, tmp_path):
    fastvid = pytest.importorskip("fastvid")
    gen = fastvid.VideoFrameGenerator(
        glob_pattern=str(dataset_dir / "{classname}" / "*.avi"),
        nb_frames=3,
        target_shape=(48, 64),
        batch_size=2,
        shuffle=False,
        device="cpu",
    )
    grid = utils.show_sample(gen, 0, path=tmp_path / "g.png")
    x, _ = gen[0]
    got = cells(grid, rows=2, cols=3, cell_h=64, cell_w=85)
    for s in range(2):
        assert [frame_index(c) for c in got[s]] == [frame_index(f) for f in np.asarray(x[s])]


def test_preview_cli(dataset_dir, tmp_path, capsys):
    out = tmp_path / "preview.png"
    code = utils.preview_main(
        [
            "--glob-pattern",
            str(dataset_dir / "{classname}" / "*.avi"),
            "--nb-frames",
            "3",
            "--target-shape",
            "40x30",
            "--batch-size",
            "2",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    assert out.is_file()
    image = cv2.imread(str(out))
    assert image.shape[0] >= 2 * 64  # two rows of frames, each enlarged to 64 pixels
    assert str(out) in capsys.readouterr().out


def test_preview_cli_flow_and_gray(dataset_dir, tmp_path):
    out = tmp_path / "flow.png"
    code = utils.preview_main(
        [
            str(dataset_dir / "{classname}" / "*.avi"),
            "--generator",
            "flow",
            "--method",
            "abs_diff",
            "--nb-frames",
            "2",
            "--target-shape",
            "32x32",
            "--batch-size",
            "1",
            "--nb-channel",
            "1",
            "-o",
            str(out),
        ]
    )
    assert code == 0 and out.is_file()


def test_preview_cli_errors(tmp_path, capsys):
    assert utils.preview_main(["--target-shape", "big"]) == 2
    assert utils.preview_main(["--method", "abs_diff"]) == 2  # needs --generator flow
    code = utils.preview_main(
        ["--glob-pattern", str(tmp_path / "{classname}" / "*.avi"), "-o", str(tmp_path / "x.png")]
    )
    assert code == 1
    assert "fastvid preview" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    assert utils.preview_main(["--help"]) == 0

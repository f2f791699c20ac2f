"""The PyTorch and Grain front-ends: which frames come back, in workers, and model.fit.

CI runs this file under every Keras backend (marker ``keras``): ``model.fit``
takes a PyTorch ``DataLoader`` on the torch backend and a Grain dataset on every
backend (JAX is Grain's own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastvid import ClipLoader
from fastvid.synth import MOTIONS, frame_indices, make_dataset, make_video

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("frontends")
    make_dataset(
        root,
        classes=("right", "left", "down"),
        videos_per_class=3,
        num_frames=(20, 30),
        width=64,
        height=48,
        seed=2,
    )
    return root


def loader_of(folder: Path, **kw) -> ClipLoader:
    return ClipLoader.from_source(folder, num_frames=3, size=(32, 32), device="cpu", seed=1, **kw)


def tiny_model(keras, classes: int):
    model = keras.Sequential(
        [
            keras.Input((3, 32, 32, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    return model


# ------------------------------------------------------------------ PyTorch


def test_torch_dataset_in_worker_processes(folder):
    torch = pytest.importorskip("torch")
    from fastvid.torch import VideoDataset

    loader = loader_of(folder)
    data = VideoDataset(loader)
    assert len(data) == loader.samples_count == 9 and data.classes == loader.classes
    frames, label = data[4]
    assert isinstance(frames, torch.Tensor) and frames.shape == (3, 32, 32, 3)
    assert frame_indices(frames.numpy()) == loader.sample_request(4)[1]
    batches = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False, num_workers=2)
    got = [
        (frame_indices(x.numpy()[k]), int(y[k].argmax())) for x, y in batches for k in range(len(x))
    ]
    want = [(loader.sample_request(s)[1], loader.videos[s].label) for s in range(9)]
    assert got == want


def test_torch_dataset_epochs_draw_anew(tmp_path):
    torch = pytest.importorskip("torch")
    from fastvid.torch import VideoDataset

    for cls in ("a", "b"):
        make_video(tmp_path / cls / "v.avi", 40, codec="mpeg4", motion=MOTIONS["right"])
    data = VideoDataset(
        ClipLoader.from_source(
            tmp_path, num_frames=3, size=(16, 16), sampler="random_clip", device="cpu", seed=4
        )
    )
    first = [frame_indices(data[i][0].numpy()) for i in range(2)]
    data.set_epoch(1)
    assert [frame_indices(data[i][0].numpy()) for i in range(2)] != first
    data.set_epoch(0)
    assert [frame_indices(data[i][0].numpy()) for i in range(2)] == first
    assert isinstance(data[0][0], torch.Tensor)


@pytest.mark.slow
def test_model_fit_on_a_torch_data_loader(folder):
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras takes a torch DataLoader on the torch backend")
    from fastvid.torch import VideoDataset

    loader = loader_of(folder)
    batches = torch.utils.data.DataLoader(
        VideoDataset(loader), batch_size=3, shuffle=True, num_workers=2
    )
    history = tiny_model(keras, 3).fit(batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))


# ------------------------------------------------------------------ Grain


def test_grain_dataset_shuffles_each_epoch_and_batches(folder):
    pytest.importorskip("grain")
    import fastvid.grain

    loader = loader_of(folder)
    ds = fastvid.grain.dataset(loader, batch_size=3, seed=5, num_epochs=2)
    batches = [ds[i] for i in range(len(ds))]
    assert len(batches) == 6 and batches[0][0].shape == (3, 3, 32, 32, 3)
    seen = [frame_indices(x[k]) for x, _ in batches for k in range(len(x))]
    first, second = seen[:9], seen[9:]
    every = sorted(loader.sample_request(s)[1] for s in range(9))
    assert sorted(first) == every and sorted(second) == every and first != second


def test_grain_data_loader_in_worker_processes(folder):
    pytest.importorskip("grain")
    import fastvid.grain

    loader = loader_of(folder)
    batches = list(fastvid.grain.data_loader(loader, batch_size=3, shuffle=False, worker_count=2))
    got = [frame_indices(x[k]) for x, _ in batches for k in range(len(x))]
    # each worker batches its own records: every sample once, grouped by worker
    assert sorted(got) == sorted(loader.sample_request(s)[1] for s in range(9))


@pytest.mark.slow
def test_model_fit_on_a_grain_dataset(folder):
    keras = pytest.importorskip("keras")
    pytest.importorskip("grain")
    import fastvid.grain

    loader = loader_of(folder)
    history = tiny_model(keras, 3).fit(
        fastvid.grain.dataset(loader, batch_size=3, seed=0), epochs=2, verbose=0
    )
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))

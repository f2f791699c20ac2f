"""Every way Keras loads batches: threads, forked worker processes, spawned processes.

Each test that could hang runs in its own process (group) with a time limit,
so a hang fails the test instead of the CI job, and no orphan survives it. The
Keras backend is the environment's (``KERAS_BACKEND``): CI runs this file under
TensorFlow, JAX and PyTorch.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import fastvid  # noqa: E402
from fastvid import _runtime, ops  # noqa: E402
from fastvid.reader import read_clips  # noqa: E402
from fastvid.synth import frame_indices, make_dataset, make_video  # noqa: E402

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 240  # a forked fit takes 5-20 s on 2 busy cores; a hang takes forever
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("modes")
    make_dataset(
        root,
        classes=("right", "left", "down"),
        videos_per_class=3,
        num_frames=(24, 30),
        width=64,
        height=48,
        seed=1,
    )
    return root


def run_isolated(args: list[str], timeout: float = TIMEOUT_S) -> dict:
    """Run ``python args...`` in a new process group; kill the whole group on timeout."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and every worker it forked
        proc.communicate()
        pytest.fail(f"{' '.join(args)} hung: no result after {timeout:.0f} s")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------ fork safety


def _read_and_prepare(path: str, queue) -> None:
    clips = read_clips([(path, [1, 5]), (path, [7, 2])], workers=2)
    batch = ops.prepare(clips, size=(16, 16), device="cpu")
    queue.put((frame_indices(clips[0]), frame_indices(clips[1]), batch.shape))


def test_thread_pools_work_in_a_forked_child(tmp_path):
    path = str(make_video(tmp_path / "v.avi", 12, codec="mpeg4"))
    ops.set_num_threads(2)
    try:
        _read_and_prepare(path, multiprocessing.Queue())  # the parent's pools now have threads
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_read_and_prepare, args=(path, queue))
        child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            pytest.fail("a forked child hung on fastvid's thread pools")
        assert child.exitcode == 0
        assert queue.get(timeout=5) == ([1, 5], [7, 2], (2, 2, 16, 16, 3))
    finally:
        ops.set_num_threads(None)


def test_forked_child_knows_it_is_one():
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda q: q.put(_runtime.forked_child()), args=(queue,))
    child.start()
    child.join(30)
    assert queue.get(timeout=5) is True
    assert _runtime.forked_child() is False


# ------------------------------------------------------------------ Keras workers


@pytest.mark.slow
@pytest.mark.parametrize("read_first", [False, True], ids=["fresh", "parent-read-first"])
def test_fit_with_forked_workers(data_dir, read_first):
    result = run_isolated([str(HERE / "mp_fit.py"), str(data_dir), "none", str(int(read_first))])
    assert result["ok"] and result["backend"] == BACKEND
    assert len(result["loss"]) == 2 and all(np.isfinite(result["loss"]))


@pytest.mark.slow
def test_fit_with_forked_workers_and_image_data_generator(data_dir):
    pytest.importorskip("scipy")
    result = run_isolated([str(HERE / "mp_fit.py"), str(data_dir), "image_data_generator", "1"])
    assert result["ok"] and all(np.isfinite(result["loss"]))


@pytest.mark.slow
def test_fit_with_forked_workers_and_a_keras_layer(data_dir):
    result = run_isolated([str(HERE / "mp_fit.py"), str(data_dir), "layer", "1"])
    if BACKEND in ("tensorflow", "jax"):
        # those runtimes hang in forked children: refused at once, with what to use instead
        message = result["refused"]
        assert "use_multiprocessing=True" in message and BACKEND in message
        assert "AugmentParams" in message and "use_multiprocessing=False" in message
    else:
        assert result["ok"] and all(np.isfinite(result["loss"]))


def test_keras_layer_refused_in_a_forked_child_instead_of_hanging(data_dir):
    if BACKEND not in ("tensorflow", "jax"):
        pytest.skip(f"Keras layers run in forked children on {BACKEND}")
    gen = fastvid.VideoFrameGenerator(
        glob_pattern=str(data_dir / "{classname}" / "*.avi"),
        nb_frames=2,
        target_shape=(16, 16),
        batch_size=2,
        seed=0,
        device="cpu",
        transformation=keras.layers.RandomFlip("horizontal"),
    )
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def read(q) -> None:
        try:
            gen[0]
            q.put("no error")
        except RuntimeError as err:
            q.put(str(err))

    child = ctx.Process(target=read, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    message = queue.get(timeout=5)
    assert "forked process" in message and "AugmentParams" in message


def test_fit_with_thread_workers(data_dir):
    train = fastvid.VideoFrameGenerator(
        glob_pattern=str(data_dir / "{classname}" / "*.avi"),
        nb_frames=3,
        target_shape=(16, 16),
        batch_size=2,
        seed=0,
        device="cpu",
        workers=2,
    )
    model = keras.Sequential(
        [
            keras.Input((3, 16, 16, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(train.classes_count, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    history = model.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _batch_in_spawned_process(gen) -> tuple[list[list[int]], np.ndarray]:
    x, y = gen[0]
    return [frame_indices(clip) for clip in x], y


def test_generator_pickled_to_a_spawned_process(data_dir):
    gen = fastvid.VideoFrameGenerator(
        glob_pattern=str(data_dir / "{classname}" / "*.avi"),
        nb_frames=3,
        target_shape=(32, 32),
        batch_size=2,
        seed=0,
        device="cpu",
    )
    gen[1]  # prefetching in the parent: its thread and lock must not travel
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        indices, labels = pool.apply(_batch_in_spawned_process, (gen,))
    x, y = gen[0]
    assert indices == [frame_indices(clip) for clip in x]
    np.testing.assert_array_equal(labels, y)

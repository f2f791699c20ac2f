"""The records through a real tf.data service: every example once per epoch, same values.

The dispatcher runs in this process; the workers are separate processes
(``fastvid service worker``), as on a cluster, and are stopped however a test ends.

Which processing mode guarantees exactly-once? ``"distributed_epoch"`` (the default of
``dataset(service=...)``) deals the record files out to the workers as they ask
for work, so each file, hence each example, is read by exactly one worker per
epoch, however many workers there are. ``"parallel_epochs"`` gives every worker the
whole dataset, so N workers yield each example N times. A worker lost mid-epoch
loses what it held; tests/test_service_faults.py checks that the client says so.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from fastvid import tfrecord  # noqa: E402
from fastvid.tfrecord import _distributed  # noqa: E402
from fastvid.tfrecord import service as svc  # noqa: E402

TIMEOUT_S = 120  # per epoch; a hung service fails the test instead of the CI job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records(dataset_dir: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """18 examples in 6 files, with flow (float16 on the wire) and 3 classes."""
    dest = tmp_path_factory.mktemp("service_records")
    summary = tfrecord.convert(
        dataset_dir,
        dest,
        frames=4,
        size=(24, 32),
        videos_per_record=3,
        flow=True,
        workers=2,
        progress=False,
    )
    assert summary.converted == 18 and not summary.failed
    return dest, sorted(str(p) for p in dataset_dir.rglob("*.avi"))


@pytest.fixture(scope="module")
def service():
    """An in-process dispatcher and two worker processes; its ``grpc://`` address."""
    dispatcher = svc.start_dispatcher(0)
    address = dispatcher.target.split("://", 1)[1]
    workers = []
    try:
        workers = [svc.WorkerProcess(address, timeout=60) for _ in range(2)]
        yield dispatcher.target
    finally:
        for w in workers:
            w.terminate()  # all at once, then wait for each
        for w in workers:
            w.stop()
        svc.stop_server(dispatcher)


def one_epoch(ds) -> list:
    """Every element of one epoch, or a failure after TIMEOUT_S."""
    seen: list = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            seen.extend(ds.as_numpy_iterator())
        except BaseException as err:  # noqa: BLE001 (reported in the test thread)
            errors.append(err)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    assert not thread.is_alive(), f"the tf.data service epoch took more than {TIMEOUT_S}s"
    if errors:
        raise errors[0]
    return seen


def paths_of(elements) -> list[str]:
    out = []
    for _, _, meta in elements:
        p = meta["path"]
        out += [p.decode()] if isinstance(p, bytes) else [v.decode() for v in p]
    return out


@pytest.mark.parametrize(("batch_size", "job_name"), [(None, None), (4, "shared-job")])
def test_every_example_once_per_epoch(records, service, batch_size, job_name):
    dest, expected = records
    ds = tfrecord.dataset(
        dest,
        batch_size=batch_size,
        shuffle=True,
        with_metadata=True,
        service=service,
        job_name=job_name,
    )
    for _ in range(2):  # each iteration is a new epoch (a new job, or a new round of it)
        elements = one_epoch(ds)
        assert Counter(paths_of(elements)) == Counter(expected)
        if batch_size:
            sizes = [len(x) for x, _, _ in elements]
            assert sizes == [4, 4, 4, 4, 2], sizes  # re-batched: only the last is short


def test_parallel_epochs_gives_each_worker_everything(records, service):
    dest, expected = records
    ds = tfrecord.dataset(
        dest,
        batch_size=None,
        with_metadata=True,
        service=service,
        processing_mode="parallel_epochs",
    )
    assert Counter(paths_of(one_epoch(ds))) == Counter(expected * 2)  # 2 workers


def test_same_values_as_reading_locally(records, service):
    dest, _ = records
    local = {
        m["path"]: (x, y)
        for x, y, m in tfrecord.dataset(
            dest, batch_size=None, shuffle=False, with_metadata=True
        ).as_numpy_iterator()
    }
    ds = tfrecord.dataset(
        dest,
        batch_size=5,
        drop_remainder=True,
        with_metadata=True,
        service=service,
        service_compression="snappy",
        rescale=1 / 127,
    )
    assert ds.element_spec[0].shape.as_list() == [5, 4, 24, 32, 5]  # RGB + flow dx, dy
    elements = one_epoch(ds)
    assert [len(x) for x, _, _ in elements] == [5, 5, 5]  # drop_remainder: 3 dropped
    for frames, labels, meta in elements:
        assert frames.dtype == np.float32 and labels.dtype == np.float32
        for x, y, path in zip(frames, labels, meta["path"], strict=True):
            x_local, y_local = local[path]
            np.testing.assert_allclose(x[..., :3], x_local[..., :3] * 255 / 127, rtol=1e-6)
            np.testing.assert_array_equal(x[..., 3:], x_local[..., 3:])  # flow, not rescaled
            np.testing.assert_array_equal(y, y_local)


def test_input_pipelines_read_disjoint_shares(records, service):
    dest, expected = records
    seen = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=2
        )
        ds = tfrecord.dataset(
            dest, batch_size=4, input_context=ctx, with_metadata=True, service=service
        )
        elements = one_epoch(ds)
        assert all(len(x) <= 2 for x, _, _ in elements)  # per-replica batch: 4 / 2
        seen += paths_of(elements)
    assert Counter(seen) == Counter(expected)
    ctx = tf.distribute.InputContext(num_input_pipelines=8, input_pipeline_id=0)
    with pytest.raises(ValueError, match="at least 8 files"):
        tfrecord.dataset(dest, input_context=ctx, service=service)


def test_expected_examples_come_from_the_manifests(records, tmp_path):
    dest, expected = records
    files = tfrecord.list_record_files(dest)
    assert _distributed.expected_examples(files) == len(expected)
    assert _distributed.expected_examples(files[:2]) == 6
    copy = tmp_path / Path(files[0]).name  # a record without its manifest: not counted
    copy.write_bytes(Path(files[0]).read_bytes())
    assert _distributed.expected_examples([str(copy)]) is None


def test_bad_service_arguments(records, monkeypatch):
    dest, _ = records
    with pytest.raises(ValueError, match="processing_mode"):
        tfrecord.dataset(dest, service="localhost:1", processing_mode="distributed")
    with pytest.raises(ValueError, match="service_compression"):
        tfrecord.dataset(dest, service="localhost:1", service_compression="gzip")
    with pytest.raises(ValueError, match="host:port"):
        tfrecord.dataset(dest, service="localhost")
    monkeypatch.setattr(_distributed, "CONNECT_TIMEOUT_S", 1.0)
    port = svc.free_port()
    with pytest.raises(svc.DispatcherUnreachable, match=f"localhost:{port}"):
        tfrecord.dataset(dest, service=f"grpc://localhost:{port}")


@pytest.mark.filterwarnings("ignore:Your input ran out of data:UserWarning")
def test_model_fit_through_the_service(records, service):
    import keras

    dest, _ = records
    ds = tfrecord.dataset(dest, batch_size=6, flow=False, service=service, seed=0)
    model = keras.Sequential(
        [
            keras.Input((4, 24, 32, 3)),
            keras.layers.Conv3D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling3D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy")
    history = model.fit(ds, epochs=2, verbose=0)  # one job per epoch, each checked
    assert len(history.history["loss"]) == 2 and all(np.isfinite(history.history["loss"]))

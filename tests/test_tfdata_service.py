"""The records through a real tf.data service on localhost: every example once per epoch.

Which processing mode guarantees exactly-once? ``"distributed_epoch"`` splits the
source (here: the list of record files) dynamically among the workers, so each
file, hence each example, is read by exactly one worker per epoch, however many
workers there are (as long as none fails: a worker lost mid-epoch loses what it
held, which makes it at-most-once). ``"parallel_epochs"`` gives every worker the
whole dataset, so N workers yield each example N times: exactly-once only with a
single worker. Both cases are checked below, the first with two workers.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow")

from fastvid import tfrecord  # noqa: E402

TIMEOUT_S = 120  # per epoch; a hung service fails the test instead of the CI job


@pytest.fixture(scope="module")
def records(dataset_dir: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    dest = tmp_path_factory.mktemp("service_records")
    summary = tfrecord.convert(dataset_dir, dest, frames=4, size=(32, 24), videos_per_record=3,
                               workers=2, progress=False)
    assert summary.converted == 18 and not summary.failed
    return dest, sorted(str(p) for p in dataset_dir.rglob("*.avi"))


def start_service(workers: int):
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://", 1)[1]
    worker_servers = [
        service.WorkerServer(service.WorkerConfig(dispatcher_address=address, port=0))
        for _ in range(workers)
    ]
    return dispatcher, worker_servers


def one_epoch(ds) -> list[str]:
    """Every path the service hands out in one epoch, or a failure after TIMEOUT_S."""
    seen: list[str] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for _, _, meta in ds.as_numpy_iterator():
                seen.append(meta["path"].decode())
        except BaseException as err:  # noqa: BLE001 (reported in the test thread)
            errors.append(err)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    assert not thread.is_alive(), f"the tf.data service epoch took more than {TIMEOUT_S}s"
    if errors:
        raise errors[0]
    return seen


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "workers", "epochs"),
                         [("distributed_epoch", 2, 2), ("parallel_epochs", 1, 1)])
def test_every_example_once_per_epoch(records, mode, workers, epochs):
    dest, expected = records
    dispatcher, worker_servers = start_service(workers)
    try:
        ds = tfrecord.dataset(dest, batch_size=None, shuffle=True, with_metadata=True)
        ds = ds.apply(tf.data.experimental.service.distribute(
            processing_mode=mode, service=dispatcher.target))
        for _ in range(epochs):  # each iteration is a new job: a full epoch
            seen = one_epoch(ds)
            assert Counter(seen) == Counter(expected)
    finally:
        for w in worker_servers:
            w._stop()
        dispatcher._stop()

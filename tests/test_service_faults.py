"""A tf.data service losing a worker or its dispatcher mid-epoch: said so, never a short epoch.

What TensorFlow does, and what fastvid adds:

* a worker killed and restarted at the same address: TensorFlow's client ends the
  epoch without the examples the old process held, silently; fastvid's epoch check
  (the count the records' manifests give) turns that into an error naming the counts;
* a worker killed for good: TensorFlow's client retries it forever; fastvid's
  ``stall_timeout`` turns the silence into an error;
* a dispatcher restarted with its ``--work-dir`` journal (restarted in this process
  here: the journal is written as it goes, so a stop and a crash leave the same):
  the epoch goes on, every example once.

The records are heavy to decode (24 PNG frames at 320x240 per example), so that
when the first example reaches the client the worker still holds the others.
Every process is started in its own session and killed in a ``finally``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow")

from fastvid import tfrecord  # noqa: E402
from fastvid.tfrecord import service as svc  # noqa: E402

pytestmark = pytest.mark.slow

TIMEOUT_S = 120


@pytest.fixture(scope="module")
def heavy(dataset_dir: Path, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("heavy_records")
    summary = tfrecord.convert(
        dataset_dir,
        dest,
        frames=24,
        size=(320, 240),
        encoding="png",
        videos_per_record=1,
        workers=2,
        progress=False,
    )
    assert summary.converted == 18
    return dest


def consume(ds, on_first=None) -> tuple[list[bytes], BaseException | None]:
    """Read one epoch in a thread (bounded by TIMEOUT_S); ``on_first()`` after 1 example."""
    seen: list[bytes] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _, _, meta in ds.as_numpy_iterator():
                first = not seen
                paths = meta["path"]
                seen.extend([paths] if isinstance(paths, bytes) else list(paths))
                if first and on_first is not None:
                    on_first()
        except BaseException as err:  # noqa: BLE001 (returned to the test)
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    assert not thread.is_alive(), f"the epoch neither ended nor failed within {TIMEOUT_S}s"
    return seen, (errors[0] if errors else None)


@pytest.fixture
def dispatcher():
    server = svc.start_dispatcher(0)
    try:
        yield server.target
    finally:
        svc.stop_server(server)


def test_worker_lost_mid_epoch_fails_the_epoch(heavy, dispatcher):
    address = dispatcher.split("://")[1]
    port = svc.free_port()
    workers = [svc.WorkerProcess(address, port)]

    def crash_and_restart() -> None:
        workers[-1].kill()  # SIGKILL: what it held is gone
        workers.append(svc.WorkerProcess(address, port))  # a supervisor brings it back

    try:
        ds = tfrecord.dataset(
            heavy, batch_size=None, with_metadata=True, service=dispatcher, stall_timeout=TIMEOUT_S
        )
        seen, error = consume(ds, on_first=crash_and_restart)
        # TensorFlow ends this epoch short, silently; the manifests' count says so
        assert isinstance(error, tf.errors.InvalidArgumentError), (len(seen), error)
        assert "but the record manifests say it holds 18" in str(error)
        assert f"delivered {len(seen)} examples" in str(error)
        assert len(seen) < 18 and len(set(seen)) == len(seen)

        # the restarted worker serves the next epoch; killed for good, TensorFlow would
        # wait for it forever: stall_timeout fails the epoch instead
        ds = tfrecord.dataset(
            heavy, batch_size=2, with_metadata=True, service=dispatcher, stall_timeout=3
        )
        seen, error = consume(ds, on_first=workers[-1].kill)
        assert isinstance(error, tf.errors.InvalidArgumentError), (len(seen), error)
        message = str(error)
        assert "no example came from the tf.data service" in message and "for 3 s" in message
        assert f"({len(seen)} of the 18 examples the records hold" in message
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.stop()


def test_fault_tolerant_dispatcher_restarted_mid_epoch_resumes(heavy, tmp_path):
    port, work_dir = svc.free_port(), str(tmp_path / "journal")
    dispatchers = [svc.start_dispatcher(port, work_dir)]
    worker = None
    try:
        worker = svc.WorkerProcess(f"localhost:{port}")

        def restart() -> None:
            svc.stop_server(dispatchers[-1])
            dispatchers.append(svc.start_dispatcher(port, work_dir))  # replays its journal

        ds = tfrecord.dataset(
            heavy,
            batch_size=None,
            with_metadata=True,
            service=f"localhost:{port}",
            stall_timeout=TIMEOUT_S,
        )
        seen, error = consume(ds, on_first=restart)
        assert error is None, error
        assert len(seen) == len(set(seen)) == 18
        seen, error = consume(ds)  # and the next epoch runs as usual
        assert error is None and len(seen) == len(set(seen)) == 18
    finally:
        if worker is not None:
            worker.stop()
        svc.stop_server(dispatchers[-1])

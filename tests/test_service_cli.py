"""``fastvid service dispatcher|worker``: clear errors, clean stops, the journal.

The refusals run the command in this process (they fail before TensorFlow starts);
the clean-stop test runs both commands as a user would, each in its own session,
killed in a ``finally`` whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastvid.tfrecord import service as svc


def test_importing_the_module_does_not_import_tensorflow():
    code = "import sys, fastvid.tfrecord.service; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_dispatcher_refuses_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert svc.cli_main(["dispatcher", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} is already in use" in err and "--port" in err


def test_worker_gives_up_on_an_unreachable_dispatcher(capsys):
    port = svc.free_port()
    t0 = time.monotonic()
    assert svc.cli_main(["worker", "--dispatcher", f"localhost:{port}", "--timeout", "1.5"]) == 2
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err
    assert f"no tf.data service dispatcher answered at localhost:{port} within 1.5 s" in err


def test_bad_addresses():
    with pytest.raises(ValueError, match="HOST:PORT"):
        svc.split_address("localhost")
    assert svc.split_address("grpc://node-3:5050") == ("node-3", 5050)
    with pytest.raises(SystemExit):
        svc.cli_main(["worker"])  # --dispatcher is required


class Command:
    """A ``fastvid service ...`` child process whose stderr is collected."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastvid", "service", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, svc.PARENT_ENV: str(os.getpid())},
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if ": ready" in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 90) -> None:
        assert self._ready.wait(timeout) and self.proc.poll() is None, "".join(self.lines)

    def signal(self, signum: int) -> int:
        os.killpg(self.proc.pid, signum)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.mark.slow
def test_commands_start_refuse_a_taken_port_and_stop_cleanly(tmp_path: Path, capsys):
    dport, wport = svc.free_port(), svc.free_port()
    journal = tmp_path / "journal"
    commands: list[Command] = []
    try:
        dispatcher = Command("dispatcher", "--port", str(dport), "--work-dir", str(journal))
        commands.append(dispatcher)
        dispatcher.wait_ready()
        assert "fault-tolerant" in dispatcher.text and any(journal.iterdir())
        worker = Command("worker", "--dispatcher", f"localhost:{dport}", "--port", str(wport))
        commands.append(worker)
        worker.wait_ready()
        assert "registered with the dispatcher" in worker.text

        # a second dispatcher on the same port would silently share it (SO_REUSEPORT)
        assert svc.cli_main(["dispatcher", "--port", str(dport)]) == 2
        assert f"port {dport} is already in use" in capsys.readouterr().err
        # a worker's port answers gRPC but is no dispatcher
        with pytest.raises(svc.DispatcherUnreachable, match="not a tf.data service dispatcher"):
            svc.wait_for_dispatcher(f"localhost:{wport}", timeout=5)
        svc.wait_for_dispatcher(f"grpc://localhost:{dport}", timeout=5)

        assert worker.signal(signal.SIGINT) == 0, worker.text  # Ctrl-C
        assert "SIGINT, stopping" in worker.text and "worker stopped" in worker.text
        assert dispatcher.signal(signal.SIGTERM) == 0, dispatcher.text
        assert "SIGTERM, stopping" in dispatcher.text and "dispatcher stopped" in dispatcher.text
        assert "Traceback" not in dispatcher.text + worker.text
    finally:
        for c in commands:
            c.kill()

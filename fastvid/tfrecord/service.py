"""``fastvid service dispatcher|worker``: a tf.data service to read records past one machine.

One dispatcher, any number of workers (one per machine is the usual), and the
trainers read through it with ``fastvid.tfrecord.dataset(..., service=...)``::

    fastvid service dispatcher --port 5050 --work-dir /shared/dispatcher   # one machine
    fastvid service worker --dispatcher HOST:5050 --port 5051              # each machine

The workers open the record files themselves, so every worker must see them at
the same path (a shared file system or ``gs://...``).

This module wraps TensorFlow's ``tf.data.experimental.service.DispatchServer`` and
``WorkerServer`` with what a command needs: a refusal when the port is taken (gRPC
would otherwise share it with the other process), a bounded wait for the
dispatcher that names its address, ``SIGINT``/``SIGTERM`` handled by stopping the
server, and the dispatcher's own journal (fault-tolerant mode) when ``--work-dir``
is given, so that a restarted dispatcher resumes its jobs.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
# environment variable naming the pid whose death stops a server (see WorkerProcess)
PARENT_ENV = "FASTVID_SERVICE_PARENT"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}
# the dispatcher's version call: cheap, and only a tf.data dispatcher implements it
_PROBE_METHOD = "/tensorflow.data.DispatcherService/GetVersion"


class ServiceError(RuntimeError):
    """A dispatcher or worker cannot start or be reached; the message says which and why."""


class DispatcherUnreachable(ServiceError, ConnectionError):
    """No tf.data service dispatcher answered at an address within the timeout."""


class PortInUse(ServiceError, OSError):
    """The port a server should listen on is taken by another process."""


# ----------------------------------------------------------------------------- helpers


def split_address(address: str) -> tuple[str, int]:
    """``"grpc://host:port"`` or ``"host:port"`` -> ``(host, port)``."""
    text = address.split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_port_free(port: int) -> None:
    """Raise :class:`PortInUse` when something listens on ``port`` (0 always passes).

    gRPC binds with ``SO_REUSEPORT``, so a second server on a taken port starts
    "successfully" and shares the traffic with the first: the check must come first.
    """
    if port == 0:
        return
    for family, addr in ((socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this machine
            continue
        try:
            # SO_REUSEADDR: connections of a process that just died (TIME_WAIT) do not
            # hold the port; a listener still does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
        except OSError as err:
            raise PortInUse(
                f"port {port} is already in use ({err.strerror}); choose another "
                "with --port, or stop the process that holds it"
            ) from None
        finally:
            sock.close()
        return


def free_port() -> int:
    """A TCP port nothing listens on right now (tests, one-machine trials; racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _probe_once(host: str, port: int, timeout: float) -> str | None:
    """None when a dispatcher answers; otherwise why not (one attempt)."""
    try:
        import grpc  # noqa: PLC0415 (TensorFlow's own dependency)
    except ImportError:  # fall back to "something listens there"
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as err:
            return err.strerror or str(err)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary(_PROBE_METHOD)
        try:
            call(b"", timeout=timeout)
        except grpc.RpcError as err:
            code = err.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise DispatcherUnreachable(
                    f"{host}:{port} answers, but it is not a tf.data service dispatcher "
                    "(is it a worker's port?)"
                ) from None
            return f"{code.name.lower()}: {err.details()}"
    return None


def wait_for_dispatcher(address: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Return once the dispatcher at ``address`` answers; :class:`DispatcherUnreachable`
    naming the address after ``timeout`` seconds of trying."""
    host, port = split_address(address)
    deadline = time.monotonic() + timeout
    delay, said = 0.1, False
    while True:
        left = deadline - time.monotonic()
        why = _probe_once(host, port, timeout=max(0.1, min(5.0, left)))
        if why is None:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise DispatcherUnreachable(
                f"no tf.data service dispatcher answered at {host}:{port} within "
                f"{timeout:g} s ({why}); start one with `fastvid service dispatcher --port "
                f"{port}` on {host}, or check the address and the firewall"
            )
        if not said and timeout - left > 2:
            log.info("waiting for the dispatcher at %s:%d (%s)", host, port, why)
            said = True
        time.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


def stop_server(server: Any) -> None:
    """Stop a ``DispatchServer`` or ``WorkerServer``.

    ``stop()`` is public in recent TensorFlow; older releases (2.16 among those we
    support) only have ``_stop()``, which is what ``stop()`` calls.
    """
    stop = getattr(server, "stop", None) or server._stop
    stop()


def _import_tensorflow() -> Any:
    """TensorFlow, its C++ start-up logging lowered first unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        try:
            from fastvid.cli import quiet_tensorflow  # noqa: PLC0415
        except ImportError:
            quiet_tensorflow = None
        if quiet_tensorflow is not None:
            quiet_tensorflow()
    import tensorflow as tf  # noqa: PLC0415

    return tf


# ----------------------------------------------------------------------------- servers


def start_dispatcher(
    port: int, work_dir: str | None = None, *, worker_timeout: float | None = None
) -> Any:
    """A started ``tf.data.experimental.service.DispatchServer`` on ``port``.

    With ``work_dir`` it journals its state there (TensorFlow's fault-tolerant mode):
    a dispatcher restarted with the same folder and port resumes its datasets and
    jobs, and workers and clients reconnect by themselves.
    """
    check_port_free(port)
    tf = _import_tensorflow()
    service = tf.data.experimental.service
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
    config = service.DispatcherConfig(
        port=port,
        work_dir=work_dir or None,
        fault_tolerant_mode=bool(work_dir),
        worker_timeout_ms=None if worker_timeout is None else int(worker_timeout * 1000),
    )
    return service.DispatchServer(config)


def _advertised_host(dispatcher_host: str, host: str | None) -> str:
    if host:
        return host
    if dispatcher_host in _LOCAL_HOSTS:
        return "localhost"  # all on this machine: clients reach us as localhost too
    return socket.getfqdn()


def start_worker(
    dispatcher: str, port: int = 0, *, host: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> Any:
    """A started ``WorkerServer`` registered with the dispatcher at ``dispatcher``.

    ``host``: the name clients use to reach this worker (default: this machine's
    name, or ``localhost`` when the dispatcher is local). Waits up to ``timeout``
    seconds for the dispatcher first: TensorFlow's own start would wait forever.
    """
    check_port_free(port)
    dhost, dport = split_address(dispatcher)
    wait_for_dispatcher(f"{dhost}:{dport}", timeout)
    tf = _import_tensorflow()
    service = tf.data.experimental.service
    name = _advertised_host(dhost, host)
    config = service.WorkerConfig(
        dispatcher_address=f"{dhost}:{dport}",
        port=port,
        worker_address=f"{name}:%port%",
        data_transfer_address=f"{name}:%dts_port%",
    )
    return service.WorkerServer(config)


def serve(
    server: Any,
    what: str,
    *,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Block until ``SIGINT``/``SIGTERM`` (or ``stop_event``), then stop ``server``; 0.

    ``on_ready`` runs once the signal handlers are in place. The wait is on an event
    rather than ``server.join()``: ``join()`` blocks in C++ where Python's signal
    handlers cannot run, so Ctrl-C would not stop it.
    """
    stop = stop_event or threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()

    # set by WorkerProcess: a child whose parent died (a killed test run) stops too
    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready()
        while not stop.wait(0.25):
            if parent and os.getppid() != parent:
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    why = signal.Signals(received[0]).name if received else "stop requested"
    if not received and not stop.is_set():
        why = "the process that started it is gone"
    log.info("%s: %s, stopping", what, why)
    stop_server(server)
    log.info("%s stopped", what)
    return 0


# ----------------------------------------------------------------------------- child workers


class WorkerProcess:
    """``fastvid service worker`` as a child process: for tests, benchmarks, one-machine trials.

    The child runs in its own session (process group), so :meth:`stop` and :meth:`kill`
    reach everything it started; use it as a context manager so that it is stopped
    however the block ends. It also stops by itself when this process dies. The
    constructor returns once the worker is registered, or raises :class:`ServiceError`
    with the child's last output after ``timeout``.
    """

    def __init__(
        self,
        dispatcher: str,
        port: int = 0,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        env: dict[str, str] | None = None,
    ) -> None:
        import subprocess  # noqa: PLC0415

        self.dispatcher, self.port = dispatcher, port
        cmd = [
            sys.executable,
            "-m",
            "fastvid",
            "service",
            "worker",
            "--dispatcher",
            dispatcher,
            "--port",
            str(port),
            "--timeout",
            str(timeout),
        ]
        self.lines: list[str] = []
        self.started = False
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, PARENT_ENV: str(os.getpid()), **(env or {})},
        )
        threading.Thread(target=self._drain, daemon=True, name="fastvid-worker-log").start()
        self._ready.wait(timeout + 30)
        if not self.started:
            self.kill()
            tail = "\n".join(self.lines[-10:])
            raise ServiceError(
                f"worker for {dispatcher} did not start within {timeout + 30:g} s "
                f"(exit code {self.proc.poll()}):\n{tail}"
            )

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # read to the end, or the child blocks on a full pipe
            self.lines.append(line.rstrip())
            if "fastvid service worker: ready" in line:
                self.started = True
                self._ready.set()
        self._ready.set()

    @property
    def pid(self) -> int:
        """Process id of the worker (also its process group's)."""
        return self.proc.pid

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the worker (as a crash would), and reap it."""
        self._signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> None:
        """Ask the worker to stop (SIGTERM), without waiting; see :meth:`stop`."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (a clean stop), SIGKILL after ``timeout``; the exit code."""
        self.terminate()
        try:
            self.proc.wait(timeout)
        except Exception:  # noqa: BLE001 (subprocess.TimeoutExpired: kill it)
            self.kill()
        return self.proc.wait(30)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The ``fastvid service`` argument parser."""
    p = argparse.ArgumentParser(
        prog="fastvid service",
        description="Run a tf.data service dispatcher or worker, to read TFRecords with "
        "fastvid.tfrecord.dataset(..., service='grpc://HOST:PORT') on many machines. "
        "Ctrl-C or SIGTERM stops it cleanly.",
    )
    sub = p.add_subparsers(dest="role", required=True, metavar="dispatcher|worker")
    d = sub.add_parser(
        "dispatcher",
        help="the one process that hands out work",
        description="Start the tf.data service dispatcher.",
    )
    d.add_argument("--port", type=int, required=True, metavar="P", help="port to listen on")
    d.add_argument(
        "--work-dir",
        default=None,
        metavar="DIR",
        help="journal the dispatcher's state in DIR (fault-tolerant mode): "
        "restarted with the same DIR and port, it resumes its jobs",
    )
    d.add_argument(
        "--worker-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds without a worker heartbeat before the dispatcher drops it "
        "(default: TensorFlow's)",
    )
    w = sub.add_parser(
        "worker",
        help="one per machine: reads and decodes records",
        description="Start a tf.data service worker.",
    )
    w.add_argument(
        "--dispatcher", required=True, metavar="HOST:P", help="address of the dispatcher"
    )
    w.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="Q",
        help="port to listen on (default: any free one; give a fixed one for "
        "workers restarted by a supervisor)",
    )
    w.add_argument(
        "--host",
        default=None,
        help="name under which clients reach this worker (default: this "
        "machine's name; localhost when the dispatcher is local)",
    )
    w.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the dispatcher (default {DEFAULT_TIMEOUT_S:g})",
    )
    return p


def _run(role: str, args: argparse.Namespace) -> int:
    if role == "dispatcher":
        server = start_dispatcher(args.port, args.work_dir, worker_timeout=args.worker_timeout)
        port = int(server.target.rsplit(":", 1)[1])
        mode = (
            f"fault-tolerant, journal in {args.work_dir}"
            if args.work_dir
            else "not fault-tolerant: a restart loses its jobs (give --work-dir)"
        )
        log.info(
            "tf.data service dispatcher listening on port %d (%s); clients use "
            "service='grpc://%s:%d'",
            port,
            mode,
            socket.getfqdn(),
            port,
        )
        what = "dispatcher"
    else:
        # SIGINT's Python handler cannot run while TensorFlow registers the worker (it
        # holds the interpreter): let Ctrl-C end the process outright until then
        previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            server = start_worker(args.dispatcher, args.port, host=args.host, timeout=args.timeout)
        finally:
            signal.signal(signal.SIGINT, previous)
        log.info("tf.data service worker registered with the dispatcher at %s", args.dispatcher)
        what = "worker"
    return serve(
        server,
        what,
        on_ready=lambda: print(f"fastvid service {what}: ready", file=sys.stderr, flush=True),
    )


def cli_main(argv: list[str] | None = None) -> int:
    """Run ``fastvid service``; 0 on a clean stop, 2 when the server cannot start."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args.role, args)
    except (ServiceError, ValueError) as err:
        print(f"fastvid service {args.role}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli_main())

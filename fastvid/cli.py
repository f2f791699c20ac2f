"""The ``fastvid`` command: one subcommand per job, each in the module that owns it.

Subcommand modules are imported only when used, so ``fastvid info`` does not
pay for TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile

# name -> (module, function taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("fastvid.demo", "main", "make a small dataset, train on it, compare loaders"),
    "bench": ("fastvid.bench.cli", "main", "benchmark decoding/processing/loaders side by side"),
    "info": ("fastvid.info", "main", "what the decoder sees in a file"),
    "convert": ("fastvid.tfrecord", "cli_main", "videos -> sharded TFRecords"),
    "service": ("fastvid.tfrecord.service", "cli_main", "tf.data service dispatcher/worker"),
    "preview": ("fastvid.utils", "preview_main", "a PNG grid of one generator batch"),
}


# subcommands that run TensorFlow themselves, and those that run Keras (TensorFlow when it
# is Keras's backend)
_TENSORFLOW_COMMANDS = frozenset({"convert", "service"})
_KERAS_COMMANDS = frozenset({"demo"})


def _uses_tensorflow(name: str) -> bool:
    backend = os.environ.get("KERAS_BACKEND") or "tensorflow"
    return name in _TENSORFLOW_COMMANDS or (name in _KERAS_COMMANDS and backend == "tensorflow")


# what TensorFlow prints on stderr while it starts, on every machine: not worth a user's look
_TF_STARTUP_NOISE = (
    "absl::InitializeLog()",
    "cudart_stub.cc",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "cuda_platform.cc",
    "failed call to cuInit",
    "Unable to register cu",
)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up lines kept off stderr (CLI use only).

    TensorFlow logs "Could not find cuda drivers" and "failed call to cuInit ...
    ERROR" on every machine without a GPU, before any setting can silence it;
    those lines are dropped, anything else it prints is passed on.
    """
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    error: BaseException | None = None
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: PLC0415

            tf.config.list_physical_devices()  # the device start-up logs now, captured
        except Exception as exc:  # noqa: BLE001 (reported once stderr is back)
            error = exc
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.strip() and not any(noise in line for noise in _TF_STARTUP_NOISE):
            print(line, file=sys.stderr)
    if error is not None:
        raise error


def _usage() -> str:
    lines = ["usage: fastvid COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
    lines += ["", "`fastvid COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastvid`` console script and ``python -m fastvid``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"fastvid: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # before anything imports TensorFlow: its C++ logging reads this once, at start-up
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    module_name, func_name, _ = SUBCOMMANDS[name]
    try:
        if _uses_tensorflow(name):
            quiet_tensorflow()
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except BrokenPipeError:
        # the reader of our output went away (``fastvid info ... | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed pipe writer

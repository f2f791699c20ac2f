"""The ``fastvid`` command: one subcommand per job, each in the module that owns it.

Subcommand modules are imported only when used, so ``fastvid info`` does not
pay for TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, function taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("fastvid.demo", "main", "make a small dataset, train on it, compare loaders"),
    "bench": ("fastvid.bench.cli", "main", "benchmark decoding/processing/loaders side by side"),
    "info": ("fastvid.info", "main", "what the decoder sees in a file"),
    "convert": ("fastvid.tfrecord", "cli_main", "videos -> sharded TFRecords"),
    "preview": ("fastvid.utils", "preview_main", "a PNG grid of one generator batch"),
}


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(width, height)``: the argparse type of every command's size option."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 112x112, got {text!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


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
    module_name, func_name, _ = SUBCOMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)

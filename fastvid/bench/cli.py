"""``fastvid bench``: run the benchmark suites and print one report.

Suites are modules of this package, imported only when selected, so a missing
or broken suite is skipped with a message instead of failing the others.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from fastvid.bench import common, footage

log = logging.getLogger(__name__)

# suite name -> module
SUITES: dict[str, str] = {
    "decode": "fastvid.bench.decode",
    "process": "fastvid.bench.process",
    "keras": "fastvid.bench.loaders",
    "tfrecord": "fastvid.bench.tfrecord",
    "service": "fastvid.bench.service",
}

VIDEO_EXTENSIONS = {
    ".avi",
    ".mp4",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".ogv",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".ts",
}


def expand_inputs(items: list[str]) -> list[Path]:
    """Files from arguments that are files, directories (searched recursively) or globs."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS)
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).is_file())
        if not found:
            raise FileNotFoundError(f"no video files match {item!r}")
        out.extend(found)
    # keep the first occurrence of each file, in order
    return list(dict.fromkeys(out))


def parse_suites(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if "all" in names:
        return list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)} or all"
        )
    return names


def _base_parser(add_help: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastvid bench",
        add_help=add_help,
        description="Benchmark fastvid against the usual ways to load video, side by side on "
        "the same files. Without files it cuts (and caches) its own dataset from "
        "real footage (../shared/videos, $FASTVID_BENCH_FOOTAGE or --footage): "
        "UCF101-like short clips and a long 720p h264 clip; synthetic videos "
        "when no footage folder exists (the report says which).",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="DIR_OR_GLOB",
        help="videos to use instead of the short clips cut or generated here",
    )
    p.add_argument(
        "--suite",
        default="all",
        type=parse_suites,
        help=f"comma-separated suites: {','.join(SUITES)} or all (default: all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small dataset, 1 repeat, no warm-up: a smoke run (no targets or "
        "verdicts), not figures",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed repeats per measurement (default {common.DEFAULT_REPEATS}, "
        f"--quick {common.QUICK_REPEATS}); the table shows the median",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed calls before timing (default 1, --quick 0)",
    )
    p.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON"
    )
    p.add_argument(
        "--text", type=Path, default=None, metavar="PATH", help="also write the text report to PATH"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the cut or generated videos are cached (default "
        "$FASTVID_BENCH_DATA or ~/.cache/fastvid/bench)",
    )
    p.add_argument(
        "--footage",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of real videos to cut the dataset from (default "
        "$FASTVID_BENCH_FOOTAGE, else ../shared/videos beside the checkout)",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="use generated synthetic videos even when real footage is there",
    )
    p.add_argument(
        "--long",
        type=Path,
        default=None,
        metavar="FILE",
        help="long video to use instead of the 720p clip cut or generated here",
    )
    p.add_argument("--no-long", action="store_true", help="skip the long-clip workloads")
    p.add_argument(
        "--clips",
        type=int,
        default=None,
        help="number of generated short clips (default 18, --quick 6)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def _import_suite(name: str) -> tuple[Any | None, str | None]:
    module_name = SUITES[name]
    try:
        return importlib.import_module(module_name), None
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return None, f"suite module {module_name} is not available"
        return None, f"suite {name} cannot be imported: {e}"
    except Exception as e:  # a broken suite must not take the others down
        return None, f"suite {name} cannot be imported: {type(e).__name__}: {e}"


def build_parser(suites: list[str]) -> tuple[argparse.ArgumentParser, dict[str, Any], dict]:
    """The full parser with each importable suite's options; also the modules and skips."""
    parser = _base_parser(add_help=True)
    modules: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in suites:
        module, why = _import_suite(name)
        if module is None:
            skipped[name] = why or "unavailable"
            continue
        add = getattr(module, "add_arguments", None)
        if add is not None:
            group = parser.add_argument_group(f"{name} suite")
            try:
                add(group)
            except argparse.ArgumentError as e:
                skipped[name] = f"its options clash with another suite's: {e}"
                continue
        modules[name] = module
    return parser, modules, skipped


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fastvid bench``; returns 0, or 1 when a suite failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = _base_parser(add_help=False).parse_known_args(argv)
    parser, modules, skipped = build_parser(first.suite)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (common.QUICK_REPEATS if args.quick else common.DEFAULT_REPEATS)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    args.data_dir = args.data_dir or common.default_data_dir()
    args.progress = not args.no_progress
    common.set_progress(False if args.no_progress else None)
    try:
        args.files = expand_inputs(args.inputs)
    except FileNotFoundError as e:
        print(f"fastvid bench: {e}", file=sys.stderr)
        return 2
    if args.long is not None and not args.long.is_file():
        print(f"fastvid bench: --long {args.long}: no such file", file=sys.stderr)
        return 2
    if args.footage is not None and not args.footage.is_dir():
        print(f"fastvid bench: --footage {args.footage}: no such folder", file=sys.stderr)
        return 2

    for name, why in skipped.items():
        print(f"fastvid bench: skipping suite {name}: {why}", file=sys.stderr)
    machine = common.machine_info()
    config = {
        "suites": ",".join(modules) or "none",
        "quick": args.quick,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "files": f"{len(args.files)} given" if args.files else "generated",
    }
    warning = common.busy_warning(machine)
    if warning:
        print(f"fastvid bench: {warning}", file=sys.stderr)
    rows: list[dict] = []
    failed = False
    for name, module in modules.items():
        t0 = time.perf_counter()
        try:
            rows.extend(module.run(args))
        except Exception as e:  # report and go on with the next suite
            log.exception("suite %s failed", name)
            print(f"fastvid bench: suite {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed = True
            rows.append(
                common.Result(
                    name, "suite", name, skipped=f"failed: {type(e).__name__}: {e}"
                ).to_dict()
            )
        log.info("suite %s done in %.1f s", name, time.perf_counter() - t0)
    for name, why in skipped.items():
        rows.append(common.Result(name, "suite", name, skipped=why).to_dict())

    machine["load_end"] = list(common.load_average() or ()) or None
    if args.quick:  # a smoke run: no verdicts, neither printed nor in the JSON
        rows = [r for r in rows if r.get("kind") != "target"]
    report = {
        "machine": machine,
        "footage": footage.footage_status(args),
        "config": config,
        "rows": rows,
    }
    text = common.render_report(report)
    print(text)
    if args.text:
        args.text.parent.mkdir(parents=True, exist_ok=True)
        args.text.write_text(text)
    if args.json:
        common.write_json(args.json, report)
    return 1 if failed else 0

"""Fuzz fastvid.VideoReader with damaged files (the engine is fastvid/bench/fuzz.py).

    python bench/fuzz.py --cases 2000 --seed 0 --jobs 2            # the long run
    python bench/fuzz.py --cases 100 --sources 'synth:*' 'real:tree.avi'
    python bench/fuzz.py --replay '{"source": "synth:mpeg4_avi", "mutation": {...}, "seed": 1}'
    python bench/fuzz.py --list-sources

A run first checks every clean source against a sequential PyAV decode, then
runs the mutated cases (one process each, with a time limit), prints outcome
tables per source and per mutation kind and every violation with the spec that
reproduces it, and writes bench/results/fuzz.txt and fuzz.json (``--out``).
Exit status: 0 clean, 1 when any violation occurred (wrong frame, frames lost,
an exception other than VideoError, a crash, a hang), 2 when the harness could
not judge a case but nothing was violated.

``--replay SPEC`` (the JSON printed after ``--replay`` in a report, or
``@file``) reruns one case in this process with the reader's logging on and
prints what each call returned; ``--save FILE`` keeps the mutated input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's fastvid, wherever the script is run from

from fastvid.bench import fuzz  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", type=int, default=300, help="mutated cases (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=fuzz.DEFAULT_JOBS, help="cases run at once")
    p.add_argument(
        "--timeout",
        type=float,
        default=fuzz.DEFAULT_TIMEOUT,
        help="seconds per case before it counts as a hang (raised per source to "
        f"--slow-factor x its clean time; default {fuzz.DEFAULT_TIMEOUT:.0f})",
    )
    p.add_argument("--slow-factor", type=float, default=fuzz.SLOW_FACTOR)
    p.add_argument(
        "--sources",
        nargs="+",
        metavar="PATTERN",
        help="source names or globs (synth, real, 'synth:mpeg4*', 'real:*.avi') or video files",
    )
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=fuzz.MUTATION_KINDS,
        default=list(fuzz.MUTATION_KINDS),
        help="mutation kinds (default: all)",
    )
    p.add_argument(
        "--singles", type=int, default=fuzz.DEFAULT_SINGLES, help="single-frame calls per case"
    )
    p.add_argument(
        "--mem-limit-mb",
        type=int,
        default=fuzz.DEFAULT_MEM_LIMIT_MB,
        help="address-space limit of each case's process (0: none)",
    )
    p.add_argument(
        "--launcher",
        choices=fuzz.LAUNCHERS,
        default=fuzz.DEFAULT_LAUNCHER,
        help="fork: from a preloaded fork server (fast); exec: a new interpreter per case",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where generated sources are cached (default $FASTVID_FUZZ_DATA "
        "or ~/.cache/fastvid/fuzz)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="folder for fuzz.txt and fuzz.json",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="readers verify their index by a full decode (VideoReader(verify=True))",
    )
    p.add_argument("--replay", metavar="SPEC", help="rerun one case in-process (JSON or @file)")
    p.add_argument("--save", type=Path, help="with --replay: write the mutated file here")
    p.add_argument("--list-sources", action="store_true", help="list the sources and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def do_replay(args: argparse.Namespace) -> int:
    text = args.replay
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    result, record = fuzz.replay(
        text,
        work_dir=args.work_dir,
        singles=args.singles,
        save_to=args.save,
        verify=args.verify,
    )
    ref = record.get("ref_digests") or []
    rng = record.get("range")
    print(f"case:      {result.case.spec_json()}")
    print(f"source:    {result.case.source.path}")
    print(
        f"reference: {len(ref)} frames; stop: {record.get('ref_stop')}; "
        f"refused packets: {record.get('ref_decode_errors')}"
    )
    counts = [record.get(k) for k in ("n", "n_after_singles", "n_range", "n_final")]
    print(
        f"fastvid:   {record.get('n')} frames (len() at open, after the singles, "
        f"at the range reader's open, after the range: {counts})"
    )
    for i, d in record.get("singles") or []:
        if d is None:
            state = "error"
        elif i < len(ref):
            state = "= reference" if d == ref[i] else "DIFFERS from reference"
        else:
            state = "beyond the reference"
        if d is not None and rng is not None and i < len(rng) and d != rng[i]:
            state += ", DIFFERS from range"
        print(f"  single {i:5d}: {state}")
    if rng is not None:
        bad = [i for i in range(min(len(rng), len(ref))) if rng[i] != ref[i]]
        print(
            f"  range: {len(rng)} frames, {len(bad)} differ from the reference"
            + (f" (first: {bad[:12]})" if bad else "")
        )
    for err in record.get("errors") or []:
        at = f" {err['index']}" if err.get("index") is not None else ""
        print(f"  error at {err['call']}{at}: {err['type']}: {err['message']}")
        if err.get("traceback"):
            print("    " + err["traceback"].strip().replace("\n", "\n    "))
    for entry in record.get("diagnosis") or []:
        print(f"  diagnosis: {json.dumps(entry)}")
    print(f"outcome:   {result.outcome}: {result.summary()}")
    if args.save:
        print(f"mutated file saved to {args.save}")
    return 1 if result.violation else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.replay else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.replay:
        return do_replay(args)

    sources = fuzz.select_sources(fuzz.all_sources(args.work_dir), args.sources)
    if args.list_sources:
        for s in sources:
            print(f"{s.name:32s} {s.size:>10d}  {s.path}")
        return 0
    if fuzz.shared_videos_dir() is None:
        print("note: ../shared/videos not found; generated sources only", file=sys.stderr)

    t0 = time.perf_counter()
    every = max(1, (args.cases + len(sources)) // 25)

    def progress(done: int, total: int, res: fuzz.CaseResult) -> None:
        if not args.quiet and (done % every == 0 or done == total or res.failure):
            mark = f"  {res.outcome}: {res.case.source.name}/{res.case.kind}" if res.failure else ""
            print(f"[{time.perf_counter() - t0:6.0f} s] {done}/{total}{mark}", file=sys.stderr)

    run = fuzz.run_fuzz(
        sources,
        cases=args.cases,
        seed=args.seed,
        jobs=args.jobs,
        timeout=args.timeout,
        kinds=args.kinds,
        slow_factor=args.slow_factor,
        options=fuzz.CaseOptions(args.singles, args.mem_limit_mb, args.launcher, args.verify),
        progress=progress,
    )
    text = fuzz.render_run(run)
    print(text, end="")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz.txt").write_text(text)
    report = run.to_dict()
    report["command"] = " ".join(["python", "bench/fuzz.py", *(argv or sys.argv[1:])])
    (args.out / "fuzz.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'fuzz.txt'} and {args.out / 'fuzz.json'}", file=sys.stderr)
    if any(r.violation for r in run.failures()):
        return 1
    return 2 if run.failures() else 0


if __name__ == "__main__":
    sys.exit(main())

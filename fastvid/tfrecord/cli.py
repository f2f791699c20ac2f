"""``fastvid convert SRC DEST``: the command line of :func:`fastvid.tfrecord.write`."""

from __future__ import annotations

import argparse
import logging
import sys

from fastvid._checks import cli_size

log = logging.getLogger(__name__)


_FRAMES_ERROR = "expected a positive integer or 'all', got {!r}"


def _frames(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_FRAMES_ERROR.format(text)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(_FRAMES_ERROR.format(text))
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``fastvid convert`` argument parser."""
    p = argparse.ArgumentParser(
        prog="fastvid convert",
        description="Convert videos to TFRecord files, one example per video "
        "(frames, label, class name, source path, frame indices, fps, size). "
        "Restarting with the same arguments resumes: finished record files are skipped, "
        "and those holding videos that failed are written again to retry them. "
        "Exit code 0 when every video is in, 1 while some video is listed as failed "
        "(in this run or, with --no-retry-failed, an earlier one), 2 on bad arguments.",
    )
    p.add_argument(
        "src",
        metavar="SRC",
        help="folder (one sub-folder per class), glob with {classname} "
        "(quote it), or CSV of path,label",
    )
    p.add_argument("dest", metavar="DEST", help="output folder")
    _add_content_arguments(p.add_argument_group("what each example holds"))
    _add_writing_arguments(p.add_argument_group("how records are written"))
    shards = p.add_argument_group("sharding (one share per machine)")
    shards.add_argument(
        "--num-shards",
        type=int,
        default=1,
        metavar="S",
        help="split the videos into S shares (one per machine)",
    )
    shards.add_argument(
        "--shard-index", type=int, default=0, metavar="I", help="write only share I of S (0-based)"
    )
    restarts = p.add_argument_group("restarts")
    restarts.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite finished records, even if made with other arguments",
    )
    restarts.add_argument(
        "--no-retry-failed",
        action="store_true",
        help="on a restart, keep the records in which some video failed instead "
        "of retrying those videos (their failures are still reported, exit code 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_content_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--frames",
        type=_frames,
        default=16,
        help="frames per video, spread uniformly, or 'all' (default 16)",
    )
    g.add_argument(
        "--size",
        type=cli_size,
        default=None,
        help="stored frame size WIDTHxHEIGHT (default: each video's own)",
    )
    g.add_argument("--gray", action="store_true", help="store one grey channel")
    g.add_argument(
        "--flow",
        action="store_true",
        help="add optical flow (fastvid layout: float16 dx,dy beside the frames; "
        "video2tfrecord layout: an extra uint8 channel)",
    )


def _add_writing_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--videos-per-record",
        type=int,
        default=32,
        metavar="K",
        help="examples per record file (default 32)",
    )
    g.add_argument(
        "--compression",
        choices=("none", "gzip"),
        default="none",
        help="record compression (default none; gzip pays off with --encoding raw)",
    )
    g.add_argument(
        "--encoding",
        choices=("jpeg", "png", "raw"),
        default=None,
        help="frame encoding (default jpeg; video2tfrecord layout: jpeg, raw with --flow)",
    )
    g.add_argument("--jpeg-quality", type=int, default=95, help="1..100 (default 95)")
    g.add_argument(
        "--workers", type=int, default=None, help="decoding threads (default: all cores)"
    )
    g.add_argument("--prefix", default="videos", help="record file name prefix")
    g.add_argument(
        "--video2tfrecord-layout",
        action="store_true",
        help="write video2tfrecord's features (blob/<i>, height, width, depth)",
    )


def cli_main(argv: list[str] | None = None) -> int:
    """Run ``fastvid convert``; 0 when every video is in the records, 1 while some video is
    listed as failed (this run's failures, or an earlier run's kept by ``--no-retry-failed``),
    2 on error."""
    from fastvid.tfrecord.write import convert  # noqa: PLC0415

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = convert(
            args.src,
            args.dest,
            frames=args.frames,
            size=args.size,
            gray=args.gray,
            flow=args.flow,
            videos_per_record=args.videos_per_record,
            compression=args.compression,
            encoding=args.encoding,
            layout="video2tfrecord" if args.video2tfrecord_layout else "fastvid",
            workers=args.workers,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            prefix=args.prefix,
            jpeg_quality=args.jpeg_quality,
            overwrite=args.overwrite,
            progress=not args.no_progress and sys.stderr.isatty(),
            retry_failed=not args.no_retry_failed,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"fastvid convert: error: {err}", file=sys.stderr)
        return 2
    print(summary)
    return 0 if summary.ok else 1

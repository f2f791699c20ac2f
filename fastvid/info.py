"""``fastvid info FILE...``: what the decoder sees in a file.

Lists the container's streams (what the header claims), then what
:class:`fastvid.VideoReader` uses: the stream it picks, the exact frame count
(from the packets), the keyframes, the frame rate and the picture format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from fastvid.errors import VideoError


def _stream_rows(path: str) -> tuple[str, list[dict[str, Any]]]:
    import av

    with av.open(path, metadata_errors="ignore") as container:
        rows = []
        for s in container.streams:
            cc = s.codec_context
            row: dict[str, Any] = {
                "index": s.index,
                "type": s.type,
                "codec": cc.name if cc is not None else None,
                "header_frames": s.frames,
            }
            if s.type == "video":
                rate = s.average_rate or s.guessed_rate
                row.update(width=cc.width, height=cc.height, fps=float(rate) if rate else None)
            rows.append(row)
        return container.format.name, rows


def describe(path: str, stream: int | None = None) -> dict[str, Any]:
    """A JSON-ready description of ``path`` (raises :class:`VideoError`)."""
    from fastvid.reader import VideoReader

    with VideoReader(path, stream) as reader:
        meta = reader.metadata
        index = reader._index  # the reader's own view, for the diagnostic fields
        picked = {
            "stream": meta.stream_index,
            "chosen_by": "FFmpeg's best video stream" if stream is None else "--stream",
            "num_frames": meta.num_frames,
            "fps": meta.fps,
            "duration": meta.duration,
            "width": meta.width,
            "height": meta.height,
            "codec": meta.codec,
            "pix_fmt": meta.pix_fmt,
            "rotation": meta.rotation,
            "keyframes": len(meta.keyframe_indices),
            "keyframe_indices": list(meta.keyframe_indices),
            "packets": index.num_packets,
            "index_mode": index.mode,
            "truncated": index.truncated,
        }
    fmt, rows = _stream_rows(path)
    return {
        "path": path,
        "format": fmt,
        "size": os.path.getsize(path),
        "streams": rows,
        "decoder": picked,
    }


def _print_text(info: dict[str, Any], max_keyframes: int) -> None:
    print(f"{info['path']}  ({info['format']}, {info['size']:,} bytes)")
    picked = info["decoder"]
    print("streams:")
    for row in info["streams"]:
        mark = "*" if row["index"] == picked["stream"] else " "
        line = f"  {mark} {row['index']}: {row['type']:<9} {row['codec'] or '?'}"
        if row["type"] == "video":
            fps = f"{row['fps']:.3f} fps" if row["fps"] else "fps ?"
            line += f"  {row['width']}x{row['height']}  {fps}"
        line += f"  header frames: {row['header_frames'] or '?'}"
        print(line)
    print(f"decoder uses stream {picked['stream']} ({picked['chosen_by']}):")
    print(f"  frames     {picked['num_frames']} (counted from {picked['packets']} packets)")
    print(f"  fps        {picked['fps']:.3f}    duration {picked['duration']:.3f} s")
    print(
        f"  picture    {picked['width']}x{picked['height']} {picked['pix_fmt']} "
        f"({picked['codec']}), rotation {picked['rotation']}"
    )
    keys = picked["keyframe_indices"]
    listed = [str(k) for k in keys[:max_keyframes]]
    if len(keys) > max_keyframes:
        listed.append(f"... ({len(keys) - max_keyframes} more)" if listed else "...")
    gop = f", mean GOP {picked['num_frames'] / len(keys):.1f}" if keys else ""
    print(f"  keyframes  {len(keys)}{gop}: [{', '.join(listed)}]")
    if picked["index_mode"] != "pts":
        print("  note       no usable timestamps: requests decode from the start")
    if picked["truncated"]:
        print("  note       the file ends early (truncated or damaged)")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: list[str]) -> int:
    """Entry point of ``fastvid info``; returns the exit code (1 if any file failed)."""
    parser = argparse.ArgumentParser(
        prog="fastvid info", description="What the fastvid decoder sees in video files."
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument(
        "--stream",
        type=int,
        default=None,
        help="stream index to use (default: FFmpeg's best video stream)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument(
        "--keyframes",
        type=_non_negative,
        default=20,
        metavar="N",
        help="list at most N keyframe indices (default 20)",
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            info = describe(path, args.stream)
        except VideoError as exc:
            print(f"fastvid info: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(info))
        else:
            _print_text(info, args.keyframes)
    return status

"""The tf.data service path: ``fastvid.tfrecord.dataset(..., service=...)`` against local reading.

The ``service`` suite of ``fastvid bench``. One dispatcher in this process, workers
as separate processes (``fastvid service worker``) on loopback, the same records
read four ways:

* locally, ``fastvid.tfrecord.dataset(records)``: the reference;
* through the service with 1 worker, per ``service_compression`` (none, snappy, auto);
* as a user would have done before: ``dataset(records).apply(distribute(...))`` with
  TensorFlow's defaults (float32 after rescaling on the wire, compressed);
* with 1, 2 and 4 workers.

Each row is one epoch per iterator, as ``model.fit`` runs it. The time column is
per example in the *steady state*: examples 10% to 90% of the epoch, without the
epoch's start (job creation, shuffle buffer) and end (TensorFlow's client learns
that the job is over at its next heartbeat, about 1 s); ``extra`` also holds the
whole-epoch rate. Rows also report bytes per example on the wire and CPU time
per example on the workers and in this process, which is what projects to N
machines: on loopback the workers and the client share this machine's cores.

Records: 16 frames at 112x112, JPEG, built from *sources* (:data:`SOURCES`): the
bench's short clips cut from real footage (:mod:`fastvid.bench.footage`) when it
exists, otherwise the synthetic short clips, or the user's files. The records are
linked ``--service-copies`` times (hard links, one manifest) so that an epoch lasts
long enough to time.

TensorFlow is imported only inside :func:`run`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastvid.bench import common, footage

log = logging.getLogger(__name__)

SUITE = "service"
LOCAL = "fastvid local: tfrecord.dataset(records)"
TARGET_RATIO = 0.8  # the goal: one loopback worker at >= 0.8x local


# --------------------------------------------------------------------------- sources


def real_clips(args: Any) -> list[Path]:
    """The bench's short clips cut from real footage (:mod:`fastvid.bench.footage`)."""
    if footage.footage_choice(args).folder is None:
        raise FileNotFoundError(
            "no real footage: pass --footage DIR, set "
            "$FASTVID_BENCH_FOOTAGE or add ../shared/videos"
        )
    return footage.short_clips(args)


def synthetic_clips(args: Any) -> list[Path]:
    """The bench's generated short clips."""
    return footage.synthetic_short_clips(args)


# source name -> function(args) -> clip paths; "auto" picks real footage when present
SOURCES: dict[str, Callable[[Any], list[Path]]] = {
    "real": real_clips,
    "synthetic": synthetic_clips,
}


def clips_for(args: Any) -> tuple[list[Path], str]:
    """The clips of this run and a description of where they came from."""
    if getattr(args, "files", None):
        return list(args.files), f"{len(args.files)} given files"
    name = args.service_source
    if name == "auto":
        name = "real" if footage.footage_choice(args).folder is not None else "synthetic"
    if name not in SOURCES:
        raise ValueError(
            f"unknown --service-source {name!r}; choose from {sorted(SOURCES)} or auto"
        )
    clips = SOURCES[name](args)
    what = (
        footage.footage_choice(args).text
        if name == "real"
        else (common.QUICK_SHORT_SPEC if args.quick else common.SHORT_SPEC).describe()
    )
    return clips, f"{len(clips)} {name} clips ({what})"


def add_arguments(parser: Any) -> None:
    """The suite's options, prefixed ``--service-``."""
    parser.add_argument(
        "--service-source",
        default="auto",
        help=f"clips to build the records from: {', '.join(SOURCES)} or auto "
        "(default: real footage when present, else synthetic)",
    )
    parser.add_argument(
        "--service-frames", type=int, default=16, help="frames per example (default 16)"
    )
    parser.add_argument(
        "--service-size", type=int, default=112, help="square frame size (default 112)"
    )
    parser.add_argument("--service-batch-size", type=int, default=8, help="batch size (default 8)")
    parser.add_argument(
        "--service-workers",
        default="1,2,4",
        help="worker counts of the scaling rows (default 1,2,4)",
    )
    parser.add_argument(
        "--service-copies",
        type=int,
        default=None,
        help="times the records are linked into the epoch (default: an "
        "epoch of ~1000 examples, --quick ~150)",
    )


# --------------------------------------------------------------------------- records


def build_records(clips: list[Path], work: Path, args: Any) -> tuple[Path, int]:
    """Convert ``clips`` once, then link the records ``copies`` times into one folder with
    one manifest; the folder and its example count."""
    from fastvid.tfrecord import convert  # noqa: PLC0415
    from fastvid.tfrecord.sources import Source  # noqa: PLC0415

    classes = ["a", "b", "c"]
    sources = [Source(str(p), k % 3, classes[k % 3]) for k, p in enumerate(clips)]
    size = args.service_size
    once = work / "once"
    summary = convert(
        sources,
        once,
        classes=classes,
        frames=args.service_frames,
        size=(size, size),
        videos_per_record=3,
        progress=False,
    )
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} clips failed to convert: {summary.failed[0]}")
    target = 150 if args.quick else 1000
    copies = args.service_copies or max(1, math.ceil(target / max(1, summary.converted)))
    folder = work / "records"
    folder.mkdir()
    entries: dict[str, dict[str, Any]] = {}
    counts = {}
    for manifest in once.glob("*.manifest.json"):
        for name, entry in json.loads(manifest.read_text())["records"].items():
            counts[name] = entry["examples"]
    for k in range(copies):
        for record in sorted(once.glob("*.tfrecord")):
            name = f"copy{k:03d}-{record.name}"
            try:
                os.link(record, folder / name)
            except OSError:
                shutil.copyfile(record, folder / name)
            entries[name] = {"examples": counts[record.name], "failed": []}
    (folder / "copies.manifest.json").write_text(json.dumps({"records": entries}))
    return folder, summary.converted * copies


# --------------------------------------------------------------------------- timing


def _cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of other processes (Linux /proc), 0 where unreadable."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            pass
    return total


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_epoch(ds: Any, worker_pids: Iterable[int] = ()) -> dict[str, float]:
    """Read one epoch: examples, whole-epoch and steady (10%-90%) rates, CPU per example."""
    pids = list(worker_pids)
    cpu0, wcpu0 = _self_cpu(), _cpu_seconds(pids)
    t0 = time.perf_counter()
    stamps: list[tuple[float, int]] = []
    count = 0
    for x, _ in ds:
        count += int(x.shape[0])
        stamps.append((time.perf_counter(), count))
    t1 = time.perf_counter()
    cpu1, wcpu1 = _self_cpu(), _cpu_seconds(pids)
    lo = next(s for s in stamps if s[1] >= 0.1 * count)
    hi = next(s for s in stamps if s[1] >= 0.9 * count)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else count / (t1 - t0)
    return {
        "examples": count,
        "whole": count / (t1 - t0),
        "steady": steady,
        "client_cpu": (cpu1 - cpu0) / count,
        "worker_cpu": (wcpu1 - wcpu0) / count if pids else 0.0,
    }


def measure_epochs(
    makers: dict[str, Callable[[], Any]], args: Any, worker_pids: Iterable[int] = ()
) -> dict[str, list[dict[str, float]]]:
    """Per method, ``args.warmup`` untimed epochs then ``args.repeats`` timed ones, one
    iterator each. The timed epochs take turns (method A, B, C, A, B, C, ...), so that a
    change in the machine's load falls on every method alike."""
    pids = list(worker_pids)
    built = {name: make() for name, make in makers.items()}
    for ds in built.values():
        for _ in range(max(1, args.warmup)):  # the first epoch traces the functions
            time_epoch(ds, pids)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in built}
    for _ in range(args.repeats):
        for name, ds in built.items():
            runs[name].append(time_epoch(ds, pids if name != LOCAL else []))
    return runs


def wire_bytes(ds: Any, compress: bool, elements: int = 4) -> float:
    """Bytes per example of ``ds``'s elements as the service sends them (snappy or not)."""
    import tensorflow as tf  # noqa: PLC0415

    total, rows = 0, 0
    for el in ds.take(elements):
        flat = tf.nest.flatten(el)
        rows += int(flat[0].shape[0]) if flat[0].shape.rank else 1
        if compress:
            packed = tf.raw_ops.CompressElement(components=flat)
            total += len(tf.io.serialize_tensor(packed).numpy())
        else:
            total += sum(int(tf.size(t)) * t.dtype.size for t in flat)
    return total / max(rows, 1)


def _row(
    group: str,
    method: str,
    runs: list[dict[str, float]],
    *,
    bytes_per_example: float,
    local_rate: float | None,
    reference: bool = False,
) -> dict:
    steady = [r["steady"] for r in runs]
    rate = statistics.median(steady)
    whole = statistics.median(r["whole"] for r in runs)
    ratio = rate / local_rate if local_rate else None
    note = f"{rate:.0f} ex/s, {whole:.0f} over the whole epoch"
    note += f", {ratio:.2f}x local" if ratio and method != LOCAL else ""
    note += f"; {bytes_per_example / 1024:.0f} KiB/ex on the wire" if bytes_per_example else ""
    extra = {
        "examples_per_s": rate,
        "examples_per_s_whole_epoch": whole,
        "ratio_to_local": ratio,
        "bytes_per_example": bytes_per_example,
        "examples_per_epoch": runs[0]["examples"],
        "client_cpu_ms_per_example": 1e3 * statistics.median(r["client_cpu"] for r in runs),
        "worker_cpu_ms_per_example": 1e3 * statistics.median(r["worker_cpu"] for r in runs),
    }
    timing = common.Timing(tuple(1 / s for s in steady))
    return common.Result.from_timing(
        SUITE, group, method, timing, unit="example", reference=reference, note=note, extra=extra
    ).to_dict()


# --------------------------------------------------------------------------- the suite


def run(args: Any) -> list[dict]:
    """Run the service suite; rows as dicts (see :mod:`fastvid.bench.common`)."""
    import tensorflow as tf  # noqa: PLC0415

    from fastvid.tfrecord import _distributed, dataset, read  # noqa: PLC0415
    from fastvid.tfrecord import service as svc  # noqa: PLC0415

    counts = sorted({int(n) for n in str(args.service_workers).split(",") if n.strip()})
    clips, what = clips_for(args)
    work = Path(tempfile.mkdtemp(prefix="fastvid-bench-service-"))
    dispatcher = svc.start_dispatcher(0)
    target = dispatcher.target
    workers: list[svc.WorkerProcess] = []
    bs = args.service_batch_size
    rows: list[dict] = []
    try:
        records, per_epoch = build_records(clips, work, args)
        files = read.list_record_files(records)
        spec = read.inspect(files)
        shape = (
            f"{args.service_frames} frames at {args.service_size}x{args.service_size}, "
            f"JPEG, batch {bs}"
        )
        rows.append(
            {
                "kind": "note",
                "suite": SUITE,
                "text": (
                    f"{what}; records: {shape}, {len(files)} files, "
                    f"{per_epoch} examples per epoch; "
                    f"{os.cpu_count()} cores shared by this client and every worker (loopback)"
                ),
            }
        )

        def local() -> Any:
            return dataset(records, batch_size=bs)

        def through(compression: str) -> Callable[[], Any]:
            return lambda: dataset(
                records, batch_size=bs, service=target, service_compression=compression
            )

        def before(compression: str | None) -> Callable[[], Any]:
            dist = tf.data.experimental.service.distribute(
                "distributed_epoch", target, compression=compression
            )
            return lambda: dataset(records, batch_size=bs).apply(dist)

        wire = _distributed.worker_side(
            files,
            read._wire_parser(spec, flow=True, with_metadata=False),
            per_wire=_distributed.wire_batch(spec, bs, True),
            shuffle=False,
            shuffle_buffer=1,
            seed=None,
            cycle_length=None,
            compression="auto",
            deterministic=True,
        )
        sizes = {"none": wire_bytes(wire, False), "snappy": wire_bytes(wire, True)}
        sizes["auto"] = sizes["snappy"]
        old_sizes = {None: wire_bytes(local(), False), "AUTO": wire_bytes(local(), True)}

        group = f"1 worker (separate process, loopback) vs local, {shape}"
        log.info("service suite: %s", group)
        workers.append(svc.WorkerProcess(target.split("://")[1]))
        default = "service, compression none (default)"
        makers: dict[str, Callable[[], Any]] = {LOCAL: local, default: through("none")}
        makers.update({f"service, compression {c}": through(c) for c in ("snappy", "auto")})
        before_rows = {
            "before: dataset().apply(distribute()), float32, none": (before(None), None),
            "before: dataset().apply(distribute()), float32, TF default AUTO": (
                before("AUTO"),
                "AUTO",
            ),
        }
        makers.update({name: make for name, (make, _) in before_rows.items()})
        runs = measure_epochs(makers, args, [w.pid for w in workers])
        local_rate = statistics.median(r["steady"] for r in runs[LOCAL])
        for name, method_runs in runs.items():
            if name == LOCAL:
                size = 0.0
            elif name in before_rows:
                size = old_sizes[before_rows[name][1]]
            else:
                size = sizes[name.split("compression ")[1].split(" ")[0]]
            rows.append(
                _row(
                    group,
                    name,
                    method_runs,
                    bytes_per_example=size,
                    local_rate=local_rate,
                    reference=name == LOCAL,
                )
            )
        one = common.find(rows, group=group, method=default)
        if one is not None:
            rows.append(
                common.Target(
                    SUITE,
                    "service, 1 loopback worker vs local (steady state)",
                    one["extra"]["ratio_to_local"],
                    TARGET_RATIO,
                    detail=f"{one['extra']['examples_per_s']:.0f} vs {local_rate:.0f} ex/s",
                ).to_dict()
            )

        group = f"workers (separate processes, loopback), compression none, {shape}"
        log.info("service suite: %s", group)
        for n in counts:
            while len(workers) < n:
                workers.append(svc.WorkerProcess(target.split("://")[1]))
            name = f"service, {n} worker{'s' if n > 1 else ''}"
            # local again, in turns with this row: its ratio is to the local rate of now
            runs = measure_epochs(
                {LOCAL: local, name: through("none")}, args, [w.pid for w in workers]
            )
            now = statistics.median(r["steady"] for r in runs[LOCAL])
            rows.append(
                _row(
                    group,
                    name,
                    runs[name],
                    bytes_per_example=sizes["none"],
                    local_rate=now,
                    reference=n == counts[0],
                )
            )
        local_cpu = 1e3 * statistics.median(r["client_cpu"] for r in runs[LOCAL])
        rows.append(_projection_note(rows, group, local_rate, local_cpu, sizes["none"]))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.stop()
        svc.stop_server(dispatcher)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _projection_note(
    rows: list[dict], group: str, local_rate: float, local_cpu_ms: float, wire: float
) -> dict:
    """What the loopback figures say about N machines."""
    one = common.find(rows, group=group, method="service, 1 worker")
    cores = os.cpu_count() or 1
    if one is None:
        return {"kind": "note", "suite": SUITE, "text": "no 1-worker row: no projection"}
    extra = one["extra"]
    worker_ms, client_ms = extra["worker_cpu_ms_per_example"], extra["client_cpu_ms_per_example"]
    per_worker = 1e3 * cores / worker_ms if worker_ms else float("nan")
    client = 1e3 * cores / client_ms if client_ms else float("nan")
    gbe = 117e6 / wire if wire else float("nan")
    text = (
        f"on this {cores}-core machine the client and every worker share the cores, so more "
        f"workers cannot add throughput here. Projection: a worker spends {worker_ms:.1f} "
        f"CPU-ms per example, so one {cores}-core worker machine delivers ~{per_worker:.0f} "
        f"examples/s, and N machines N times that, until the trainer's side ({client_ms:.1f} "
        f"CPU-ms per example: ~{client:.0f} examples/s on {cores} cores) or the network "
        f"({wire / 1024:.0f} KiB per example: ~{gbe:.0f} examples/s per 1 GbE link, 10x "
        f"that on 10 GbE) is the limit. Local reading here: {local_rate:.0f} examples/s, "
        f"{local_cpu_ms:.1f} CPU-ms per example (through the service the two sides together "
        f"spend {worker_ms + client_ms:.1f}: the difference is the transfer)"
    )
    return {
        "kind": "note",
        "suite": SUITE,
        "text": text,
        "per_worker_examples_per_s": per_worker,
        "client_ceiling_examples_per_s": client,
    }

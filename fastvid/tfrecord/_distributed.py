"""The client side of ``fastvid.tfrecord.dataset(..., service=...)``.

What runs where:

* on the tf.data service workers: the record files dealt out by the dispatcher,
  interleaved, shuffled, parsed and decoded to uint8 pixels (float16 flow), grouped
  in small *wire batches* (fewer, larger messages than one per example);
* on the client (the trainer): an epoch guard (below), then re-batching to the
  caller's batch size, cast, rescale, flow concatenation and one-hot.

The epoch guard. TensorFlow's client does not notice when a worker is lost for
good (it retries the worker forever), and when a worker restarts at the same
address the epoch silently ends without the examples the old process held. So
the client counts the examples it receives and compares them, when the service
says the epoch is over, with what the records' manifests say the files hold; and
a ticker beside the service stream turns a long silence into an error. Both
fail the epoch with ``tf.errors.InvalidArgumentError`` and a message naming the
counts. The ticker uses ``tf.raw_ops.SleepDataset`` (no Python in the pipeline).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from fastvid.tfrecord import _files

log = logging.getLogger(__name__)

# how long ``dataset(service=...)`` waits for the dispatcher to answer while building
PROCESSING_MODES = ("distributed_epoch", "parallel_epochs")
# our names -> tf.data.experimental.service.distribute's ``compression``
SERVICE_COMPRESSIONS: dict[str, str | None] = {"none": None, "snappy": "SNAPPY", "auto": "AUTO"}
# examples per element on the wire when the caller reads unbatched; and the most bytes
# of pixels one wire element may carry (the client re-batches to ``batch_size`` anyway)
WIRE_BATCH = 8
WIRE_BATCH_BYTES = 16 * 2**20
CONNECT_TIMEOUT_S = 60.0
# period of the ticker that measures silences on the service stream
TICK_S = 0.05
# how often the client asks the dispatcher for news (TensorFlow's default: 1 s)
TASK_REFRESH_MS = 200

_DATA, _END, _TICK = 0, 1, 2


def service_address(service: str) -> str:
    """``"host:port"`` or ``"grpc://host:port"`` -> ``"grpc://host:port"``."""
    text = service.strip()
    protocol, sep, address = text.rpartition("://")
    protocol = protocol if sep else "grpc"
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"service must be 'grpc://host:port' or 'host:port', got {service!r}")
    return f"{protocol}://{host}:{port}"


def expected_examples(files: Sequence[str]) -> int | None:
    """Examples in ``files`` according to their folders' ``*.manifest.json``; None when
    some file has no manifest entry (records not written by ``fastvid convert``)."""
    counts: dict[str, int] = {}
    for folder in sorted({os.path.dirname(f) for f in files}):
        for manifest in _files._glob(os.path.join(folder, "*.manifest.json")):
            try:
                data = json.loads(_read_text(manifest))
                records = data.get("records", {})
                counts.update(
                    {
                        os.path.join(folder, name): int(entry["examples"])
                        for name, entry in records.items()
                    }
                )
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                log.warning("%s: unreadable manifest (%s): ignored", manifest, err)
    missing = [f for f in files if f not in counts]
    if missing:
        log.warning(
            "%d of %d record files have no manifest entry (e.g. %s): the examples "
            "of an epoch through the tf.data service are not counted",
            len(missing),
            len(files),
            missing[0],
        )
        return None
    return sum(counts[f] for f in files)


def _read_text(path: str) -> str:
    if _files._is_remote(path):
        import tensorflow as tf  # noqa: PLC0415

        with tf.io.gfile.GFile(path, "r") as fh:
            return fh.read()
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def pipeline_share(
    files: Sequence[str], input_context: Any, job_name: str | None
) -> tuple[list[str], str | None]:
    """The files (and job name) of this input pipeline: whole files, ``files[i::n]``."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return list(files), job_name
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < n:
        raise ValueError(
            f"{len(files)} record files cannot be shared among {n} input pipelines through "
            f"the tf.data service, which deals out whole files: convert with a smaller "
            f"--videos-per-record so that there are at least {n} files"
        )
    return list(files)[i::n], (f"{job_name}-{i}-of-{n}" if job_name else None)


def wire_batch(spec: _files.RecordSpec, batch_size: int | None, flow: bool) -> int:
    """Examples per element on the wire: 1 when shapes vary, else up to the batch size."""
    size = spec.example_bytes(flow)
    if size is None:
        return 1
    return max(1, min(batch_size or WIRE_BATCH, WIRE_BATCH_BYTES // max(size, 1)))


def service_dataset(
    files: Sequence[str],
    spec: _files.RecordSpec,
    parse: Callable,
    finish: Callable,
    *,
    service: str,
    job_name: str | None,
    processing_mode: str,
    service_compression: str,
    stall_timeout: float | None,
    batch_size: int | None,
    shuffle: bool,
    shuffle_buffer: int,
    seed: int | None,
    flow: bool,
    input_context: Any,
    cycle_length: int | None,
    drop_remainder: bool,
    compression: str,
    deterministic: bool,
) -> Any:
    """The pipeline of :func:`fastvid.tfrecord.dataset` through a tf.data service."""
    from fastvid.tfrecord.service import wait_for_dispatcher  # noqa: PLC0415

    if processing_mode not in PROCESSING_MODES:
        raise ValueError(
            f"processing_mode must be one of {PROCESSING_MODES}, got {processing_mode!r}"
        )
    if service_compression not in SERVICE_COMPRESSIONS:
        raise ValueError(
            f"service_compression must be one of "
            f"{sorted(SERVICE_COMPRESSIONS)}, got {service_compression!r}"
        )
    if stall_timeout is not None and stall_timeout <= 0:
        raise ValueError(f"stall_timeout must be positive or None, got {stall_timeout!r}")
    address = service_address(service)
    wait_for_dispatcher(address, timeout=CONNECT_TIMEOUT_S)
    shared = job_name is not None  # other consumers may take part of the job's examples
    files, job_name = pipeline_share(files, input_context, job_name)
    expected = None if shared else expected_examples(files)
    per_wire = wire_batch(spec, batch_size, flow)
    ds = worker_side(
        files,
        parse,
        per_wire=per_wire,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        cycle_length=cycle_length,
        compression=compression,
        deterministic=deterministic,
    )
    ds = ds.apply(
        _distribute(
            processing_mode=processing_mode,
            service=address,
            job_name=job_name,
            compression=SERVICE_COMPRESSIONS[service_compression],
        )
    )
    ds = guard_epoch(
        ds,
        expected=expected,
        processing_mode=processing_mode,
        stall_timeout=stall_timeout,
        address=address,
        batched=per_wire > 1,
    )
    return client_side(
        ds,
        finish,
        per_wire=per_wire,
        batch_size=batch_size,
        drop_remainder=drop_remainder,
        deterministic=deterministic,
    )


def _distribute(**kwargs: Any) -> Callable[[Any], Any]:
    """``tf.data.experimental.service.distribute(**kwargs)``, its client polling faster.

    TensorFlow's client learns that a job is over at its next heartbeat to the
    dispatcher, once a second by default, so every epoch would end about 1 s after
    its last example. The poll period is a parameter only of the private
    ``data_service_ops._distribute`` (which the public function calls); where it is
    missing (another TensorFlow), the public function is used as it is.
    """
    import inspect  # noqa: PLC0415

    import tensorflow as tf  # noqa: PLC0415

    try:
        from tensorflow.python.data.experimental.ops import data_service_ops  # noqa: PLC0415

        private = data_service_ops._distribute
        if "task_refresh_interval_hint_ms" in inspect.signature(private).parameters:
            return private(task_refresh_interval_hint_ms=TASK_REFRESH_MS, **kwargs)
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    return tf.data.experimental.service.distribute(**kwargs)


def worker_side(
    files: Sequence[str],
    parse: Callable,
    *,
    per_wire: int,
    shuffle: bool,
    shuffle_buffer: int,
    seed: int | None,
    cycle_length: int | None,
    compression: str,
    deterministic: bool,
) -> Any:
    """What the workers run: records -> decoded examples, in wire batches of ``per_wire``."""
    import tensorflow as tf  # noqa: PLC0415

    ds = _files._examples(
        files,
        shuffle=shuffle,
        seed=seed,
        cycle_length=cycle_length,
        deterministic=deterministic,
        compression=compression,
    )
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if per_wire > 1:
        ds = ds.batch(per_wire)
    return ds.prefetch(tf.data.AUTOTUNE)


def client_side(
    ds: Any,
    finish: Callable,
    *,
    per_wire: int,
    batch_size: int | None,
    drop_remainder: bool,
    deterministic: bool,
) -> Any:
    """What the client runs on the service's elements: re-batch, cast, rescale, one-hot."""
    import tensorflow as tf  # noqa: PLC0415

    autotune = tf.data.AUTOTUNE
    if per_wire > 1 and batch_size:
        # a worker's last wire batch is short: re-cut so that only the epoch's last is
        ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(finish, num_parallel_calls=autotune, deterministic=deterministic)
    else:
        if per_wire > 1:
            ds = ds.unbatch()
        ds = ds.map(finish, num_parallel_calls=autotune, deterministic=deterministic)
        if batch_size:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(autotune)


def _ticks(interval: float) -> Any:
    """An endless dataset of int64 zeros, one per ``interval`` seconds."""
    import tensorflow as tf  # noqa: PLC0415

    zeros = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
    variant = tf.raw_ops.SleepDataset(
        input_dataset=tf.data.experimental.to_variant(zeros),
        sleep_microseconds=int(interval * 1e6),
        output_types=[tf.int64],
        output_shapes=[tf.TensorShape([])],
    )
    return tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.int64))


def guard_epoch(
    ds: Any,
    *,
    expected: int | None,
    processing_mode: str,
    stall_timeout: float | None,
    address: str,
    batched: bool,
) -> Any:
    """``ds`` (elements from the service), failing the epoch when it is short, long or stalls.

    ``expected``: examples per epoch (None: not checked); ``batched``: elements are wire
    batches (count their rows) rather than single examples.
    """
    import tensorflow as tf  # noqa: PLC0415

    if expected is None and stall_timeout is None:
        return ds
    spec = ds.element_spec
    optional = tf.experimental.Optional
    # plain TensorFlow ops, no Python control flow on tensors: nothing for AutoGraph to do
    plain = tf.autograph.experimental.do_not_convert
    stream = ds.map(plain(lambda el: (tf.constant(_DATA), optional.from_value(el))))
    stream = stream.concatenate(
        tf.data.Dataset.from_tensors((tf.constant(_END), optional.empty(spec)))
    )
    if stall_timeout is not None:
        stream = _merged_with_ticks(stream, spec)
    where = f"the tf.data service at {address}"

    def rows(kind: Any, opt: Any) -> Any:
        if not batched:
            return tf.cast(tf.equal(kind, _DATA), tf.int64)
        return tf.cond(
            tf.equal(kind, _DATA),
            lambda: tf.shape(opt.get_value()["label"], out_type=tf.int64)[0],
            lambda: tf.constant(0, tf.int64),
        )

    def check(state: Any, item: Any) -> Any:
        count, idle = state
        kind, opt = item
        count = count + rows(kind, opt)
        idle = tf.where(tf.equal(kind, _TICK), idle + 1, tf.zeros_like(idle))
        checks = []
        if stall_timeout is not None:
            checks.append(_stall_assert(count, idle, stall_timeout, where, expected))
        if expected is not None:
            checks.append(_count_assert(count, kind, expected, processing_mode, where))
        with tf.control_dependencies(checks):
            return (tf.identity(count), tf.identity(idle)), (tf.identity(kind), opt)

    zero = tf.constant(0, tf.int64)
    stream = stream.scan((zero, zero), plain(check))
    stream = stream.take_while(plain(lambda kind, _: tf.not_equal(kind, _END)))
    stream = stream.filter(plain(lambda kind, _: tf.equal(kind, _DATA)))
    return stream.map(plain(lambda _, opt: opt.get_value()))


def _merged_with_ticks(stream: Any, spec: Any) -> Any:
    """``stream`` and a tick every :data:`TICK_S`, merged: whichever has an element ready
    goes first, so a stalled service still yields ticks to count."""
    import tensorflow as tf  # noqa: PLC0415

    plain = tf.autograph.experimental.do_not_convert
    optional = tf.experimental.Optional
    ticks = _ticks(TICK_S).map(plain(lambda _: (tf.constant(_TICK), optional.empty(spec))))
    return (
        tf.data.Dataset.from_tensors(stream)
        .concatenate(tf.data.Dataset.from_tensors(ticks))
        .interleave(
            plain(lambda d: d),
            cycle_length=2,
            block_length=1,
            num_parallel_calls=2,
            deterministic=False,
        )
    )


def _stall_assert(
    count: Any, idle: Any, stall_timeout: float, where: str, expected: int | None
) -> Any:
    """Fails once no example has come for ``stall_timeout`` seconds (``idle`` ticks)."""
    import tensorflow as tf  # noqa: PLC0415

    of_expected = f" of the {expected} examples the records hold" if expected else " examples"
    message = (
        f"fastvid.tfrecord.dataset: no example came from {where} for {stall_timeout:g} s "
        f"({{}}{of_expected} this epoch): a worker was probably lost mid-epoch, and the "
        "service does not re-read what it held. Restart the epoch (or raise stall_timeout "
        "if the workers are only slow)"
    )
    max_ticks = math.ceil(stall_timeout / TICK_S)
    return tf.debugging.Assert(
        tf.less_equal(idle, max_ticks), [tf.strings.format(message, [count])], summarize=1
    )


def _count_assert(count: Any, kind: Any, expected: int, processing_mode: str, where: str) -> Any:
    """Fails when the epoch holds more examples than the records, or ends with fewer
    (``distributed_epoch``), or ends with no whole number of copies (``parallel_epochs``)."""
    import tensorflow as tf  # noqa: PLC0415

    at_end = tf.equal(kind, _END)
    if processing_mode == "distributed_epoch":
        ok = tf.logical_and(
            tf.less_equal(count, expected),
            tf.logical_or(tf.logical_not(at_end), tf.equal(count, expected)),
        )
        message = (
            f"fastvid.tfrecord.dataset: {where} delivered {{}} examples in an epoch, but "
            f"the record manifests say it holds {expected}: examples were lost (a worker "
            "stopped mid-epoch, or restarted) or duplicated"
        )
    else:  # parallel_epochs: each worker yields every example once
        ok = tf.logical_or(
            tf.logical_not(at_end),
            tf.logical_and(tf.greater(count, 0), tf.equal(count % expected, 0)),
        )
        message = (
            f"fastvid.tfrecord.dataset: {where} delivered {{}} examples in a "
            f"parallel_epochs epoch, not a whole number of copies of the {expected} "
            "examples the records hold: a worker stopped mid-epoch"
        )
    return tf.debugging.Assert(ok, [tf.strings.format(message, [count])], summarize=1)

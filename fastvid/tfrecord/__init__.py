"""TFRecord export and tf.data reading: video2tfrecord done right, and past one machine.

* :func:`convert` / ``fastvid convert SRC DEST``: videos -> sharded, resumable
  TFRecord files, one ``tf.train.Example`` per video (layout in
  :mod:`fastvid.tfrecord.layout`).
* :func:`dataset`: the records -> ``tf.data.Dataset`` of ``(frames, one-hot label)``
  built from TensorFlow ops only (runs under ``tf.distribute``); with
  ``service="grpc://host:port"`` the parsing and decoding run on tf.data service
  workers, and each epoch is checked against the records' manifests.
* :mod:`fastvid.tfrecord.service` / ``fastvid service dispatcher|worker``: the tf.data
  service processes to run on each machine.
* :func:`convert_videos_to_tfrecord`: video2tfrecord's function, same arguments.

Importing this package does not import TensorFlow; the functions do when called.
"""

from __future__ import annotations

from fastvid.tfrecord.cli import cli_main
from fastvid.tfrecord.read import RecordSpec, dataset, inspect, list_record_files
from fastvid.tfrecord.sources import Source, discover
from fastvid.tfrecord.write import (
    ConvertOptions,
    ConvertSummary,
    convert,
    convert_videos_to_tfrecord,
)

__all__ = [
    "ConvertOptions",
    "ConvertSummary",
    "RecordSpec",
    "Source",
    "cli_main",
    "convert",
    "convert_videos_to_tfrecord",
    "dataset",
    "discover",
    "inspect",
    "list_record_files",
]

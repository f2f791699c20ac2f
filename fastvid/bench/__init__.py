"""Benchmarks of fastvid against the usual ways of loading video (``fastvid bench``).

Suites (one module each, imported only when selected by :mod:`fastvid.bench.cli`):
``decode`` (this package's reference: fastvid vs OpenCV, PyAV, decord and the
decode floor), ``process``, ``keras`` (``loaders``) and ``tfrecord``. Each suite
exposes ``add_arguments(parser)`` and ``run(args) -> list[dict]``; the rows are
built with :mod:`fastvid.bench.common` and rendered there as one table.

Nothing here imports TensorFlow or CuPy at import time.
"""

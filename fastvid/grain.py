"""Grain front-end: a random-access data source over a :class:`fastvid.ClipLoader`.

:func:`dataset` gives a ``grain.MapDataset`` of ``(frames, label)`` (``frames``
float32 ``(F, H, W, C)``, batched when ``batch_size`` is given), shuffled anew
every epoch; Keras 3's ``fit`` takes it (on any backend; JAX is Grain's own)::

    loader = fastvid.ClipLoader.from_source("videos/", num_frames=16, size=(112, 112))
    model.fit(fastvid.grain.dataset(loader, batch_size=8, seed=0), epochs=10)

Each record's random draws (a random clip, an augmentation) come from the
per-record generator Grain derives from ``seed`` and the record's place, so a
run repeats with the same seed and every epoch draws anew.
"""

from __future__ import annotations

from typing import Any

import grain

from fastvid.loader import ClipLoader

__all__ = ["ClipSource", "data_loader", "dataset"]


class ClipSource:
    """Grain's ``RandomAccessDataSource`` protocol: sample ``i`` of the loader, first draws."""

    def __init__(self, loader: ClipLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return self.loader.samples_count

    def __getitem__(self, index: int) -> Any:
        return self.loader.sample(int(index))


class _Load(grain.transforms.RandomMap):
    """Sample number -> (frames, label), its random draws from Grain's per-record rng."""

    def __init__(self, loader: ClipLoader) -> None:
        self.loader = loader

    def random_map(self, element: Any, rng: Any) -> Any:
        draw = int(rng.integers(2**31 - 1))  # this record's random stream
        return self.loader.sample(int(element), epoch=draw)


def dataset(
    loader: ClipLoader,
    *,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    num_epochs: int = 1,
    drop_remainder: bool = False,
) -> grain.MapDataset:
    """The loader's samples as a ``grain.MapDataset`` (see the module doc).

    Args:
        loader: where the samples come from (its own batching is not used).
        batch_size: samples per batch; None for single samples.
        shuffle: a new order every epoch (of ``num_epochs``), from ``seed``.
        seed: Grain's seed (default: the loader's).
        num_epochs: epochs the dataset spans (a Keras ``fit`` epoch is one pass).
        drop_remainder: drop the last short batch.
    """
    ds = grain.MapDataset.range(loader.samples_count).seed(
        loader.options.seed if seed is None else seed
    )
    if shuffle:
        ds = ds.shuffle()
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)
    ds = ds.random_map(_Load(loader))
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds


def data_loader(
    loader: ClipLoader,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    num_epochs: int = 1,
    worker_count: int = 0,
    drop_remainder: bool = False,
) -> grain.DataLoader:
    """A ready ``grain.DataLoader`` (``worker_count`` processes) over the loader's samples.

    With workers, each worker batches the records it was given, so batches mix
    the shuffled order by worker. Grain reads absl flags; in a program that does
    not parse them (not an ``absl.app``), their defaults are taken.
    """
    from absl import flags  # noqa: PLC0415 (Grain's own dependency)

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # Grain's workers read their defaults
    sampler = grain.samplers.IndexSampler(
        num_records=loader.samples_count,
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=loader.options.seed if seed is None else seed,
    )
    return grain.DataLoader(
        data_source=_Keys(loader.samples_count),
        sampler=sampler,
        operations=[_Load(loader), grain.transforms.Batch(batch_size, drop_remainder)],
        worker_count=worker_count,
    )


class _Keys:
    """A data source of the sample numbers themselves (the loading is an operation)."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> int:
        return int(index)

"""PyTorch front-end: a ``torch.utils.data.Dataset`` over a :class:`fastvid.ClipLoader`.

``VideoDataset(loader)[i]`` is sample ``i`` of the loader as ``(frames, label)``
tensors (``frames`` alone with ``label_mode=None``): float32 ``(F, H, W, C)``,
batched by a ``DataLoader`` as usual, in worker processes too (the loader
pickles without its threads, and fastvid's pools are reset in forked workers)::

    loader = fastvid.ClipLoader.from_source("videos/", num_frames=16, size=(112, 112))
    data = torch.utils.data.DataLoader(VideoDataset(loader), batch_size=8,
                                       shuffle=True, num_workers=2)
    model.fit(data, epochs=10)            # Keras 3 on the torch backend takes it

Samples drawn at random (``sampler="random_clip"``, ``augment``) follow
:meth:`VideoDataset.set_epoch`, as ``DistributedSampler`` does: call it at the
start of each epoch to draw anew (and keep ``fit(initial_epoch=k)`` resumable).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastvid.loader import ClipLoader

__all__ = ["VideoDataset"]


class VideoDataset(torch.utils.data.Dataset):
    """The samples of a :class:`fastvid.ClipLoader` as a map-style PyTorch dataset.

    Args:
        loader: where the samples come from (its ``batch_size`` and ``shuffle`` are
            not used: the ``DataLoader`` batches and shuffles).
        epoch: the epoch random draws are made for (see :meth:`set_epoch`).
    """

    def __init__(self, loader: ClipLoader, epoch: int = 0) -> None:
        self.loader = loader
        self.epoch = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw random clips and augmentations for ``epoch`` from now on."""
        self.epoch = int(epoch)

    @property
    def classes(self) -> list[str]:
        return self.loader.classes

    def __len__(self) -> int:
        return self.loader.samples_count

    def __getitem__(self, index: int) -> Any:
        item = self.loader.sample(int(index), epoch=self.epoch)
        if isinstance(item, tuple):
            return tuple(_tensor(v) for v in item)
        return _tensor(item)


def _tensor(value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return torch.as_tensor(value)

"""Shared fixtures: synthetic videos whose pixels encode their frame index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# SVT-AV1 prints its configuration to stderr unless told otherwise
os.environ.setdefault("SVT_LOG", "1")

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"


@pytest.fixture(autouse=True)
def _fresh_settings():
    """fastvid reads its environment settings once; re-read them after a test changed them."""
    yield
    from fastvid import _runtime

    _runtime.reload_settings()


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """The folder of real sample videos beside the checkout; skip when absent."""
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"{SHARED_VIDEOS} not present")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """A small labelled dataset: 3 classes x 6 mpeg4 AVI clips, 64x48, 30-60 frames."""
    from fastvid.synth import make_dataset

    root = tmp_path_factory.mktemp("dataset")
    make_dataset(root, videos_per_class=6, num_frames=(30, 60))
    return root

"""The drop-in generators give the batches they gave before the redesign (issue 9).

``tests/golden/generators.npz`` holds batches recorded from the generators as
they were (``tests/golden/make_golden.py``): same files, same frames, same
labels, same pixels (to float32 rounding) for every recorded configuration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from golden_cases import CASES, make_videos, run_case  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "generators.npz"

pytestmark = pytest.mark.keras  # CI runs these under every Keras backend


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    return make_videos(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", CASES)
def test_batches_match_the_recorded_ones(videos, golden, name):
    recorded = {k.split("/", 1)[1]: v for k, v in golden.items() if k.startswith(name + "/")}
    assert recorded, f"no golden batches for {name}: run tests/golden/make_golden.py"
    got = run_case(name, videos)
    assert sorted(got) == sorted(recorded)
    for key, want in recorded.items():
        have = got[key]
        assert have.shape == want.shape, key
        if want.dtype.kind in "US":
            assert have.tolist() == want.tolist(), key
        else:
            np.testing.assert_allclose(have, want, rtol=0, atol=1e-5, err_msg=f"{name} {key}")

"""Record the golden batches of the Keras generators: ``python tests/golden/make_golden.py``.

The batches (pixels, labels, shapes) of a fixed set of generator configurations,
fixed seeds, on generated videos, written to ``generators.npz``. The
architecture redesign (issue 9) must reproduce them exactly (to float32 rounding):
``tests/test_golden.py`` checks it. Regenerate only for a deliberate change of
behaviour, and say why in the commit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from golden_cases import CASES, make_videos, run_case  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_videos(Path(tmp))
        arrays: dict[str, np.ndarray] = {}
        for name in CASES:
            for key, value in run_case(name, root).items():
                arrays[f"{name}/{key}"] = value
    np.savez_compressed(HERE / "generators.npz", **arrays)
    print(f"wrote {len(arrays)} arrays to {HERE / 'generators.npz'}")


if __name__ == "__main__":
    main()

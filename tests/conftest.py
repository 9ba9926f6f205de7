import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_MOVIELENS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "movielens"


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The extracted MovieLens copies beside the checkout (or MEMBED_DATA_DIR)."""
    folder = Path(os.environ.get("MEMBED_DATA_DIR", SHARED_MOVIELENS))
    if not (folder / "ml-100k" / "u.data").exists():
        pytest.skip(f"MovieLens copies not found in {folder}; set MEMBED_DATA_DIR to a folder holding ml-100k/.")
    return folder

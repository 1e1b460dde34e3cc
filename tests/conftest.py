import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The official data files: $VAELAB_TEST_DATA_DIR, $VAELAB_DATA_DIR, else ../shared/data."""
    d = os.environ.get("VAELAB_TEST_DATA_DIR") or os.environ.get("VAELAB_DATA_DIR") or str(SHARED_DATA)
    if not (Path(d) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST files not found under {d}; set VAELAB_TEST_DATA_DIR to the data directory")
    return d

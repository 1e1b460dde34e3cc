import os
import tempfile
from pathlib import Path

import pytest

# What the tests allow (plugin files trusted by vaelab.plugins) stays in a folder of their own,
# never in the user's ~/.local/state/vaelab; subprocesses inherit it.
os.environ["VAELAB_STATE_DIR"] = tempfile.mkdtemp(prefix="vaelab-test-state-")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The official data files: $VAELAB_TEST_DATA_DIR, $VAELAB_DATA_DIR, else ../shared/data."""
    d = os.environ.get("VAELAB_TEST_DATA_DIR") or os.environ.get("VAELAB_DATA_DIR") or str(SHARED_DATA)
    if not (Path(d) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST files not found under {d}; set VAELAB_TEST_DATA_DIR to the data directory")
    return d


def _tiny_run(root: Path, data_dir: str, dataset: str, **model) -> Path:
    import vaelab

    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": dataset, "data_dir": data_dir},
            "model": {"hidden": [32], "latent_dim": 2, **model},
            "train": {"epochs": 1, "batch_size": 500, "device": "cpu"},
        }
    )
    return vaelab.train(cfg, root / "run", progress=False, log=lambda msg: None)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir) -> Path:
    """A real run in seconds, shared by the picture, report and browser tests: MNIST, 32 hidden
    units, a 2-D Gaussian latent, one epoch in batches of 500."""
    return _tiny_run(tmp_path_factory.mktemp("tiny_run"), data_dir, "mnist")


@pytest.fixture(scope="session")
def tiny_frey_run(tmp_path_factory, data_dir) -> Path:
    """Unlabelled data, a Gaussian decoder and a 5-D latent: Frey Face, one epoch (4 steps)."""
    return _tiny_run(tmp_path_factory.mktemp("tiny_frey"), data_dir, "frey_face", latent_dim=5, likelihood="gaussian")

"""Denormal floats are flushed to zero on every intra-op thread while training, and the
previous mode comes back afterwards."""

import sys

import pytest
import torch

from vaelab.config import build_config
from vaelab.denormals import flush_denormals, flushing_denormals
from vaelab.training import Trainer

TINY = 1e-39  # a denormal float32 (the smallest normal one is 1.18e-38)


def _all_threads_flush(denormals: torch.Tensor) -> bool:
    """A multiply big enough to be split over every intra-op thread: each thread's share of a
    denormal input comes out zero only where that thread flushes denormals."""
    return bool((denormals * 1.0).eq(0).all())


def test_flush_reaches_every_thread_and_is_undone():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the setting must reach the worker thread, not only this one
    # made before flushing starts: under it, the conversion of 1e-39 to float32 gives zero
    denormals = torch.full((1 << 20,), TINY)
    try:
        assert not flushing_denormals() and denormals.ne(0).all()
        with flush_denormals():
            assert flushing_denormals()
            assert _all_threads_flush(denormals)
        assert not flushing_denormals()
        assert (denormals * 1.0).ne(0).all()  # every thread is back to IEEE arithmetic
    finally:
        torch.set_num_threads(threads)


def test_training_flushes_denormals_and_restores_the_mode(tmp_path, data_dir):
    cfg = build_config(
        overrides={
            "data": {"dataset": "mnist", "data_dir": data_dir},
            "model": {"hidden": [16], "latent_dim": 2},
            "train": {"epochs": 1, "batch_size": 6000, "device": "cpu"},
        }
    )
    trainer = Trainer(cfg, tmp_path, progress=False, log=lambda msg: None)
    seen = []
    trainer.on_step = lambda t: seen.append(flushing_denormals())
    trainer.fit()
    assert seen == [True] * -(-trainer.train_x.shape[0] // 6000)  # every step
    assert not flushing_denormals()


@pytest.mark.skipif(sys.platform != "linux", reason="PyTorch's Linux builds run libgomp")
def test_flush_reaches_torchs_threads_beside_another_libgomp(tmp_path):
    """A second OpenMP runtime in the process (a package's bundled libgomp-<hash>.so.1) must not
    be taken for PyTorch's: PyTorch's worker threads would keep computing with denormals."""
    import ctypes
    import shutil

    from vaelab.denormals import every_thread_flushes, set_flush_denormal

    with open("/proc/self/maps") as maps:
        torch_gomp = [line.split()[-1] for line in maps if line.rstrip().endswith("/libgomp.so.1")]
    assert torch_gomp, "PyTorch's libgomp is not loaded"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.ones(1 << 20).mul(2.0)  # PyTorch's worker thread exists before flushing starts
        other = tmp_path / "libgomp-0a1b2c3d.so.1"  # a path that sorts before most venvs'
        shutil.copy(torch_gomp[0], other)
        ctypes.CDLL(str(other))
        assert set_flush_denormal(True) and every_thread_flushes()
    finally:
        set_flush_denormal(False)
        torch.set_num_threads(threads)
    assert not every_thread_flushes() and not flushing_denormals()

"""Denormal floats are flushed to zero on every intra-op thread while training, and the
previous mode comes back afterwards."""

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
    cfg = build_config(overrides={"data": {"dataset": "mnist", "data_dir": data_dir},
                                  "model": {"hidden": [16], "latent_dim": 2},
                                  "train": {"epochs": 1, "batch_size": 6000, "device": "cpu"}})
    trainer = Trainer(cfg, tmp_path, progress=False, log=lambda msg: None)
    seen = []
    trainer.on_step = lambda t: seen.append(flushing_denormals())
    trainer.fit()
    assert seen == [True] * -(-trainer.train_x.shape[0] // 6000)  # every step
    assert not flushing_denormals()

"""Same seed, same weights, in every process: the same short training in 20 fresh processes (half
of them beside a busy loop) and 20 runs interrupted with Ctrl-C early in their second epoch and
resumed must all end with the weights of one reference run, bit for bit.

The training is long enough (1600 Adam steps) for the first moments of the weights of
MNIST's always-black border pixels to decay into denormal floats, which is where flushing them to
zero on only some threads would make results depend on which thread ran what (denormals.py).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ARGS = [
    "--binarize",
    "none",
    "--hidden",
    "32",
    "--latent-dim",
    "4",
    "--batch-size",
    "4",
    "--epochs",
    "2",
    "--seed",
    "7",
    "--device",
    "cpu",
    "--no-progress",
]
RUNS = 20


@pytest.fixture(scope="module")
def digits(tmp_path_factory, data_dir) -> str:
    """The first 2000 MNIST training digits as an npy: quick to load in each of the 60 processes,
    black borders and all (1600 training images, batches of 4: 800 steps an epoch)."""
    from vaelab.data import load_split

    images = load_split("mnist", "train", data_dir).images[:2000]
    path = tmp_path_factory.mktemp("digits") / "digits.npy"
    np.save(path, (images * 255).round().to(torch.uint8).numpy())
    return f"npy:{path}"


def _weights(run: Path) -> str:
    from safetensors.torch import load_file

    tensors = load_file(str(run / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].numpy().tobytes())
    return h.hexdigest()


def _train(out: Path, env: dict, digits: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaelab", "train", "--dataset", digits, *ARGS, "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_same_training_gives_the_same_weights_in_every_process(tmp_path, data_dir, digits):
    env = dict(os.environ, VAELAB_DATA_DIR=data_dir)
    env.pop("OMP_NUM_THREADS", None)  # torch's own thread count: two on the CI machine
    busy = None
    hashes = []
    try:
        for i in range(RUNS):
            if i == RUNS // 2:  # the second half runs beside a busy loop
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            out = tmp_path / f"run{i}"
            proc = _train(out, env, digits)
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
            hashes.append(_weights(out))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    assert len(set(hashes)) == 1, f"{len(set(hashes))} different results among {RUNS} identical runs"

    # Ctrl-C early in epoch 2 (at a slightly different step each time), then --resume
    resumed = []
    for i in range(RUNS):
        out = tmp_path / f"interrupted{i}"
        proc = _train(out, env, digits)
        line = ""
        while "epoch   1" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "training ended before its first epoch"
        time.sleep(0.05 * (i % 5))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 130), err
        done = subprocess.run(
            [sys.executable, "-m", "vaelab", "train", "--resume", str(out), "--no-progress"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        resumed.append(_weights(out))
    assert set(resumed) == {hashes[0]}, f"{len(set(resumed) - {hashes[0]})} resumed runs differ"

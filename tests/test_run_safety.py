"""A run directory is never destroyed, mixed or misreported: --overwrite keeps the old run until
the new one has a checkpoint, one training per directory, a full disk, a kill at any moment,
and runs that stop before their first checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vaelab
from test_cli import assert_user_error
from test_cli import vaelab as vaelab_cli
from vaelab import checkpoint as ckpt
from vaelab.errors import VaelabError
from vaelab.training import NonFiniteLoss, TrainingInterrupted


def _config(data_dir, epochs=1, **over):
    o = {
        "data": {"dataset": "frey_face", "data_dir": data_dir},
        "model": {"hidden": [32], "latent_dim": 2, "likelihood": "gaussian"},
        "train": {"epochs": epochs, "batch_size": 100, "device": "cpu"},
    }
    for section, values in over.items():
        o[section].update(values)
    return vaelab.build_config(overrides=o)


def _files(run: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.iterdir())
        if p.is_file() and p.name != ".lock"
    }


def _quiet(msg):
    pass


@pytest.fixture
def old_run(tmp_path, data_dir):
    """A trained run with an evaluation, pictures and a report: what --overwrite must not lose
    until it has something better, and must not show afterwards."""
    run = vaelab.train(_config(data_dir, 2), tmp_path / "run", progress=False, log=_quiet)
    vaelab.api.save_evaluation(run, vaelab.evaluate(run, "test", device="cpu"))
    vaelab.plot(run, what="samples", device="cpu")
    return run


def test_overwrite_that_fails_before_its_first_checkpoint_keeps_the_old_run(old_run, tmp_path, data_dir):
    before = _files(old_run)
    tiny = tmp_path / "two.npy"
    np.save(tiny, np.zeros((2, 8, 8), np.uint8))  # too small a data set: found only when it is read
    proc = vaelab_cli("train", "--dataset", f"npy:{tiny}", "--out", old_run, "--overwrite", data_dir=data_dir)
    assert_user_error(proc, "at least 3 are needed")
    assert _files(old_run) == before
    with pytest.raises(NonFiniteLoss, match="no checkpoint was written"):  # diverges in its first epoch
        vaelab.train(_config(data_dir, 1, train={"lr": 1e30}), old_run, overwrite=True, progress=False, log=_quiet)
    assert _files(old_run) == before
    assert vaelab.load(old_run, device="cpu") is not None
    assert not [p for p in old_run.parent.iterdir() if ".overwrite-" in p.name]  # no staging left behind


def test_overwrite_replaces_the_whole_run_once_the_new_one_has_a_checkpoint(old_run, data_dir):
    assert (old_run / "evaluation_test.json").is_file() and (old_run / "samples.png").is_file()
    vaelab.train(_config(data_dir, 1, model={"latent_dim": 3}), old_run, overwrite=True, progress=False, log=_quiet)
    names = {p.name for p in old_run.iterdir()}
    assert "evaluation_test.json" not in names and "samples.png" not in names  # nothing of the old run is shown
    assert ckpt.load_config(old_run).model.latent_dim == 3
    assert [r["epoch"] for r in ckpt.read_metrics(old_run)] == [1]
    report = vaelab.api.report(old_run, device="cpu").read_text()
    assert "No saved evaluation of these weights" in report


def test_a_report_never_shows_an_evaluation_of_other_weights(old_run, data_dir):
    vaelab.train(_config(data_dir, 3), old_run, resume=True, progress=False, log=_quiet)
    report = vaelab.api.report(old_run, device="cpu").read_text()
    assert "Left out, measured on earlier weights" in report and "epoch 2" in report
    assert 'id="evaluation"' not in report


def test_two_trainings_cannot_share_a_directory(tmp_path, data_dir):
    out = tmp_path / "busy"
    env = dict(os.environ, VAELAB_DATA_DIR=data_dir)
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vaelab",
            "train",
            "--dataset",
            "frey_face",
            "--likelihood",
            "gaussian",
            "--hidden",
            "32",
            "--latent-dim",
            "2",
            "--epochs",
            "100000",
            "--out",
            str(out),
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = ""
        while "epoch   1" not in line:
            line = first.stderr.readline()
            assert line or first.poll() is None, "the first training ended early"
        for args in (["--resume", out], ["--out", out, "--overwrite", "--dataset", "frey_face"]):
            second = vaelab_cli("train", *args, data_dir=data_dir)
            assert_user_error(second, "in use by another vaelab process", f"pid {first.pid}")
        # reading a run that is training is fine, and writes nothing but its own result
        config = (out / "config.json").read_bytes()
        ev = vaelab_cli("evaluate", out, "--json", data_dir=data_dir)
        assert ev.returncode == 0, ev.stderr
        assert (out / "config.json").read_bytes() == config
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert vaelab_cli("train", "--resume", out, "--epochs", "1", data_dir=data_dir).returncode == 0  # lock released


def test_stopped_before_the_first_checkpoint_says_so_and_the_same_command_works(tmp_path, data_dir):
    out = tmp_path / "early"

    def double_ctrl_c(trainer):
        if trainer.step == 3:
            raise KeyboardInterrupt

    from vaelab import training

    original = training.Trainer.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        self.on_step = double_ctrl_c

    training.Trainer.__init__ = init
    try:
        with pytest.raises(TrainingInterrupted, match="before the first checkpoint was written"):
            vaelab.train(_config(data_dir, 2), out, progress=False, log=_quiet)
    finally:
        training.Trainer.__init__ = original
    assert not out.exists()  # nothing half-made is left
    vaelab.train(_config(data_dir, 1), out, progress=False, log=_quiet)  # the same command now works
    assert [r["epoch"] for r in ckpt.read_metrics(out)] == [1]


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed_or_started_again(tmp_path, data_dir):
    out = tmp_path / "killed"
    out.mkdir()
    ckpt.save_config(out, _config(data_dir, 2))  # what a kill -9 during epoch 1 leaves
    (out / ".model.safetensors.x1y2.tmp").write_bytes(b"half a file")
    logged = []
    vaelab.train(_config(data_dir, 2), out, resume=True, progress=False, log=logged.append)
    assert any("no checkpoint" in m and "from the beginning" in m for m in logged)
    assert [r["epoch"] for r in ckpt.read_metrics(out)] == [1, 2]
    assert not list(out.glob("*.tmp"))  # a killed write's leftovers are removed when the run starts


def _fill(path: Path, leave: int) -> Path:
    st = os.statvfs(path)
    filler = path / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs where the tests run as root (as CI does); elsewhere, a write that raises ENOSPC."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    ):
        yield mnt, True
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    else:
        yield mnt, False


def test_a_full_disk_during_a_checkpoint_keeps_the_last_good_one(small_disk, data_dir, monkeypatch):
    mnt, real = small_disk
    run = vaelab.train(_config(data_dir, 1), mnt / "run", progress=False, log=_quiet)
    before = _files(run)
    if real:
        filler = _fill(mnt, 64 * 1024)
    else:
        import errno

        def full(*a, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(VaelabError, match="the disk is full"):
        vaelab.train(_config(data_dir, 2), run, resume=True, progress=False, log=_quiet)
    # the last good checkpoint, whole: weights, resume state, metrics, and a config.json that still
    # says 1 epoch (it says 2 only with a checkpoint that has them)
    assert _files(run) == before
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 1
    assert not list(run.glob("*.tmp"))
    if real:
        filler.unlink()
    else:
        monkeypatch.undo()
    vaelab.train(_config(data_dir, 2), run, resume=True, progress=False, log=_quiet)
    assert [r["epoch"] for r in ckpt.read_metrics(run)] == [1, 2]


KILLS = 5


def _epochs_logged(run_dir: Path) -> int:
    """Complete lines in RUN/metrics.jsonl (one per finished epoch); polled while a run is alive."""
    try:
        return (run_dir / ckpt.METRICS).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_at_random_moments_then_resume_gives_the_uninterrupted_weights(tmp_path, data_dir):
    """kill -9 at KILLS seeded random moments, resuming each time: the final weights are those of a
    run that was never interrupted, bit for bit.

    The first kill lands at a random time in the first half of a run (mostly start-up); the others
    at a random instant inside a random epoch (the run is watched until that epoch begins). Kills
    are placed by progress rather than by wall time, so a machine busier than during the timed run
    cannot make them miss."""
    env = dict(os.environ, VAELAB_DATA_DIR=data_dir, OMP_NUM_THREADS="1")
    epochs = 60
    args = [
        "--dataset",
        "frey_face",
        "--likelihood",
        "gaussian",
        "--hidden",
        "32",
        "--latent-dim",
        "2",
        "--batch-size",
        "50",
        "--epochs",
        str(epochs),
        "--no-progress",
    ]
    straight = tmp_path / "straight"
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "vaelab", "train", *args, "--out", str(straight)],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    duration = time.monotonic() - start
    per_epoch = duration / epochs  # an upper bound: start-up included
    out = tmp_path / "killed"
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(1, epochs - 5), KILLS - 1))
    cmd = [sys.executable, "-m", "vaelab", "train", *args, "--out", str(out)]
    kills = 0
    for target in [None, *targets]:
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=env)
        if target is None:
            time.sleep(rng.uniform(0.0, 0.5) * duration)  # mostly start-up: imports, data, first writes
        else:
            while _epochs_logged(out) < target and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, per_epoch))
        assert proc.poll() is None, f"the run ended before the kill planned in epoch {target}"
        proc.kill()
        proc.wait()
        kills += 1
        if (out / ckpt.RESUME).is_file():
            cmd = [sys.executable, "-m", "vaelab", "train", "--resume", str(out), "--no-progress"]
    assert kills == KILLS
    assert (out / ckpt.RESUME).is_file(), "no checkpoint was written before the last kill"
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in ckpt.read_metrics(out)] == list(range(1, epochs + 1))

"""The command line: real commands in a subprocess; user errors are one line, exit 2, no traceback."""

import json
import os
import shutil
import subprocess
import sys

import pytest


def vaelab(*args, data_dir=None, cwd=None):
    env = dict(os.environ)
    if data_dir:
        env["VAELAB_DATA_DIR"] = data_dir
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = vaelab(
        "train",
        "--dataset",
        "mnist",
        "--hidden",
        "64",
        "--latent-dim",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "500",
        "--device",
        "cpu",
        "--out",
        out,
        "--no-progress",
        data_dir=data_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch   1" in proc.stderr
    return out


def test_train_writes_a_complete_run(run):
    assert {p.name for p in run.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "resume.safetensors",
        "metrics.jsonl",
    }
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["hidden"] == [64] and cfg["model"]["latent_dim"] == 2
    assert cfg["model"]["input_shape"] == [1, 28, 28]


def test_evaluate_json_holds_only_the_result(run, data_dir):
    proc = vaelab("evaluate", run, "--split", "test", "--json", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"neg_elbo", "rec", "kl"} <= set(result)
    assert result["neg_elbo"] == pytest.approx(result["rec"] + result["kl"], rel=1e-6)
    assert 100 < result["neg_elbo"] < 300


def test_sample_reconstruct_encode_plot(run, data_dir, tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    proc = vaelab("sample", run, "-n", "16", "-o", tmp_path / "s.png")
    assert proc.returncode == 0, proc.stderr
    img = mpimg.imread(tmp_path / "s.png")
    assert img.shape[:2] == (2 * (4 * 30 + 2), 2 * (4 * 30 + 2))  # 4x4 cells of 28 px, 2 px padding, x2
    assert img.std() > 0.05  # not blank

    proc = vaelab("reconstruct", run, "-o", tmp_path / "r.png", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr

    proc = vaelab("encode", run, "--split", "test", "-o", tmp_path / "z.npz", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    z = np.load(tmp_path / "z.npz")
    assert z["mu"].shape == (10000, 2) and z["logvar"].shape == (10000, 2)
    assert np.bincount(z["labels"]).tolist()[:3] == [980, 1135, 1032]

    proc = vaelab("plot", run, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    for name in ("curves.png", "samples.png", "reconstructions.png"):
        assert (run / name).is_file()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--no-such-flag"], "unrecognized arguments"),
        (["train", "--epochs", "0", "--out", "x"], "--epochs must be at least 1"),
        (["train", "--dataset", "cifar", "--out", "x"], "unknown dataset 'cifar'"),
        (["train", "--hidden", "4a0", "--out", "x"], "hidden"),
        (["train", "--binarize", "sometimes"], "invalid choice"),
        (["train", "--config", "missing.toml"], "missing.toml not found"),
        (["evaluate", "no/such/run"], "does not exist"),
        (["data", "download", "cifar"], "unknown dataset"),
    ],
)
def test_bad_input_is_one_line(args, fragment, tmp_path):
    assert_user_error(vaelab(*args, cwd=tmp_path), fragment)


def test_failed_start_leaves_no_empty_run(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not an array")  # found at config time, unreadable at load time
    proc = vaelab("train", "--dataset", f"npy:{tmp_path / 'bad.npy'}", "--out", tmp_path / "new")
    assert_user_error(proc, "bad.npy")
    assert not (tmp_path / "new").exists()


def test_bad_config_file(tmp_path):
    (tmp_path / "c.toml").write_text("[model]\nlatent_dims = 3\n")
    assert_user_error(vaelab("train", "--config", tmp_path / "c.toml"), "unknown setting model.latent_dims")
    (tmp_path / "d.toml").write_text("[model\n")
    assert_user_error(vaelab("train", "--config", tmp_path / "d.toml"), "not valid TOML")


def test_existing_run_is_not_overwritten(run, data_dir):
    before = (run / "model.safetensors").read_bytes()
    assert_user_error(vaelab("train", "--out", run, data_dir=data_dir), "already holds a run", "--overwrite")
    assert_user_error(vaelab("train", "--resume", run, "--lr", "0.1", data_dir=data_dir), "--resume")
    assert (run / "model.safetensors").read_bytes() == before


def test_damaged_or_foreign_checkpoints(run, tmp_path, data_dir):
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    assert_user_error(vaelab("sample", broken), "damaged")

    foreign = tmp_path / "foreign"
    shutil.copytree(run, foreign)
    cfg = json.loads((foreign / "config.json").read_text())
    cfg["model"]["latent_dim"] = 5
    (foreign / "config.json").write_text(json.dumps(cfg))
    assert_user_error(vaelab("evaluate", foreign, data_dir=data_dir), "different model")

    (foreign / "config.json").write_text("{not json")
    assert_user_error(vaelab("evaluate", foreign, data_dir=data_dir), "damaged")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(vaelab("evaluate", empty), "not a vaelab run")


def test_gradvar_help_shows_the_choices_gradvar_declares(monkeypatch):
    from vaelab.gradvar import BASELINE_CHOICES, ESTIMATORS

    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside a name
    out = vaelab("gradvar", "--help").stdout
    assert f"one of: {', '.join(ESTIMATORS)}" in out
    assert f"one of: {', '.join(BASELINE_CHOICES)}" in out


def test_help_lists_every_flag():
    out = vaelab("train", "--help").stdout
    for flag in (
        "--preset",
        "--config",
        "--dataset",
        "--binarize",
        "--latent-dim",
        "--hidden",
        "--activation",
        "--likelihood",
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--samples",
        "--beta",
        "--seed",
        "--data-dir",
        "--out",
        "--device",
        "--resume",
        "--overwrite",
    ):
        assert flag in out, flag


def test_evaluate_importance_sampled_nll(run, data_dir):
    proc = vaelab("evaluate", run, "--split", "test", "--iw-samples", "50", "--json", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"nll", "nll_stderr", "neg_elbo", "iw_samples", "active_units"} <= set(result)
    assert result["iw_samples"] == 50
    # L_50 is a tighter bound than the ELBO: nll below neg_elbo, by a few nats for this model
    assert 0 < result["neg_elbo"] - result["nll"] < 15
    assert 0 < result["nll_stderr"] < 1
    assert 1 <= result["active_units"] <= 2


def test_evaluate_bad_input(run, tmp_path, data_dir):
    assert_user_error(vaelab("evaluate", run, "--iw-samples", "0", data_dir=data_dir), "at least 1")
    assert_user_error(
        vaelab("evaluate", run, "--iw-samples", "10", "--max-memory", "1K", data_dir=data_dir), "too small"
    )
    assert_user_error(vaelab("evaluate", run, "--max-memory", "lots"), "size")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(run / "config.json", no_weights / "config.json")
    assert_user_error(vaelab("evaluate", no_weights, "--iw-samples", "10", data_dir=data_dir), "no saved weights")


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_saves_and_resume_finishes(tmp_path, data_dir, stop):
    """Ctrl-C, or the SIGTERM that `kill` and batch schedulers send, mid-epoch: the step ends,
    the state is saved whole, and --resume finishes the run."""
    import signal
    import time

    out = tmp_path / "interrupted"
    env = dict(os.environ, VAELAB_DATA_DIR=data_dir)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vaelab",
            "train",
            "--hidden",
            "32",
            "--latent-dim",
            "2",
            "--batch-size",
            "100",
            "--epochs",
            "50",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    line = ""
    while "epoch   1" not in line and time.monotonic() < deadline:  # first epoch saved
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "training exited before its first epoch"
    proc.send_signal(getattr(signal, stop))
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert "Traceback" not in err
    assert "stopping after this step and saving" in err
    assert f"vaelab train --resume {out}" in err
    from safetensors import safe_open

    with safe_open(str(out / "resume.safetensors"), "pt") as f:  # whole and readable
        state = json.loads(f.metadata()["vaelab"])["state"]
    assert state["epoch"] >= 1 and state["step"] >= 500
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    done = vaelab("train", "--resume", out, "--epochs", "2", "--no-progress", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs[:2] == [1, 2]

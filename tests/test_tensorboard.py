"""`vaelab train --tensorboard`: each epoch's metrics as TensorBoard scalars, and a one-line
error when the extra is not installed."""

import json

import pytest

import vaelab
from vaelab import cli
from vaelab.errors import VaelabError


def test_tensorboard_scalars_per_epoch(tmp_path, data_dir):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "frey_face", "data_dir": data_dir},
            "model": {"hidden": [16], "latent_dim": 2},
            "train": {"epochs": 2, "batch_size": 500, "device": "cpu"},
        }
    )
    run = vaelab.train(cfg, tmp_path / "tb", progress=False, log=lambda m: None, tensorboard=True)
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for stream in ("train", "valid"):
        acc = EventAccumulator(str(run / "tensorboard" / stream))
        acc.Reload()
        assert {"neg_elbo", "rec", "kl"} <= set(acc.Tags()["scalars"])
        events = acc.Scalars("neg_elbo")
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r[f"{stream}_neg_elbo"] for r in history], rel=1e-6)


def test_tensorboard_missing_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "never"
    assert cli.main(["train", "--tensorboard", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install vaelab[tensorboard]" in err[0]
    assert not out.exists()
    with pytest.raises(VaelabError, match=r"pip install vaelab\[tensorboard\]"):
        vaelab.train(vaelab.build_config(), out, tensorboard=True)


def test_tensorboard_tags():
    from vaelab.tblog import scalars

    got = scalars({"epoch": 3, "step": 9, "train_neg_elbo": 100.0, "valid_kl": 5.0, "tau": 0.5, "eval_seconds": 1.0})
    assert got == {
        ("train", "step"): 9.0,
        ("train", "neg_elbo"): 100.0,
        ("valid", "kl"): 5.0,
        ("train", "tau"): 0.5,
        ("train", "eval_seconds"): 1.0,
    }

"""Every mistake a user can make is one line on stderr, exit status 2, no traceback, and leaves an
existing run byte for byte as it was.

The table runs each bad command in-process through `vaelab.cli.main` (fast: torch is imported
once); a few cases go through a real subprocess too, to hold the console script to the same rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_cli import assert_user_error, vaelab
from vaelab.errors import VaelabError

RUN = "{run}"  # placeholders filled per test: the shared tiny run and a scratch folder
TMP = "{tmp}"


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def run_cli(capsys, args) -> tuple[int, str, str]:
    from vaelab.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code, err, fragment):
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, data_dir):
    """Files the bad inputs point at: config files, broken data, a file where a folder belongs."""
    d = tmp_path_factory.mktemp("scratch")
    (d / "a_file").write_text("not a folder")
    (d / "betas1.toml").write_text("[train]\nadam_betas = [0.9]\n")
    (d / "betas2.toml").write_text("[train]\nadam_betas = [0.9, 1.5]\n")
    (d / "eps.toml").write_text("[train]\nadam_eps = -1e-8\n")
    (d / "evalbs.toml").write_text("[train]\neval_batch_size = 0\n")
    (d / "datadir.json").write_text(json.dumps({"data": {"data_dir": 5}}))
    (d / "dataset.json").write_text(json.dumps({"data": {"dataset": ["x"]}}))
    (d / "list.json").write_text("[1, 2]")
    (d / "unknown.toml").write_text("[model]\nwidth = 3\n")
    (d / "broken.toml").write_text("[model\n")
    (d / "bool.toml").write_text("[train]\nepochs = true\n")
    (d / "wd.toml").write_text("[train]\nweight_decay = -0.1\n")
    # an .npy whose header claims 10^9 images but holds a few bytes
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000, 28, 28), }"
    header += " " * (118 - len(header)) + "\n"
    (d / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64)
    # image folders with a dangling symbolic link, and with a link that points to itself
    for name, target in (("dangling", "missing.png"), ("loop", "loop.png")):
        folder = d / name
        folder.mkdir()
        _png(folder / "ok.png")
        _png(folder / "ok2.png")
        _png(folder / "ok3.png")
        os.symlink(target, folder / ("bad.png" if name == "dangling" else "loop.png"))
    (d / "ro").mkdir()
    return d


def _png(path: Path, size=(8, 8)) -> None:
    from PIL import Image

    Image.fromarray(np.full(size, 128, np.uint8)).save(path)


BAD = [
    # train: settings, checked where they enter
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--weight-decay", "-1"], "--weight-decay must be at least 0"),
    (["train", "--lr", "nan"], "--lr must be a finite number"),
    (["train", "--lr", "0"], "--lr must be greater than 0"),
    (["train", "--hidden", "500,,"], "empty entry"),
    (["train", "--hidden", "0"], "--hidden must be at least 1"),
    (["train", "--latent", "categorical", "--tau0", "inf"], "--tau0 must be a finite number"),
    (["train", "--anneal-rate", "nan"], "--anneal-rate must be a finite number"),
    (["train", "--seed", str(2**64)], "--seed must be at most"),
    (["train", "--seed", "-1"], "--seed must be at least 0"),
    (["train", "--batch-size", "x"], "--batch-size must be a whole number"),
    (["train", "--beta", "-1"], "--beta must be at least 0"),
    (["train", "--grad-clip", "0"], "--grad-clip must be greater than 0"),
    (["train", "--categorical-dims", "20x1", "--latent", "categorical"], "K >= 2"),
    (["train", "--categorical-dims", "20x10x3"], "must be 2 values"),
    (["train", "--latent", "poisson"], "unknown choice 'poisson'"),
    (["train", "--model", "transformer"], "unknown choice 'transformer'; choose one of mlp"),
    (["train", "--init", "orthogonal"], "(or register your own in a --plugin module)"),
    (["train", "--optimizer", "sgd9"], "unknown choice 'sgd9'"),
    (["train", "--binarize", "sometimes"], "invalid choice"),
    (["train", "--no-such-flag"], "unrecognized arguments"),
    (["train", "--hard"], "needs a latent trained through a relaxation"),
    (["train", "--watch", "valid", "--full-train"], "would watch images the model trains on"),
    (["train", "--output-bias", "data-mean", "--model", "conv"], "one output bias per pixel"),
    (["train", "--baseline", "learned"], "control variate"),
    # sizes that cannot fit: said before anything is allocated
    (["train", "--latent-dim", "100000000"], "needs about"),
    (["train", "--hidden", "2000000000"], "needs about"),
    (["train", "--samples", "1000000"], "needs about"),
    (["train", "--objective", "iwae", "--k", "1000000"], "needs about"),
    (["train", "--dataset", f"npy:{TMP}/huge.npy"], "truncated or damaged"),
    # config files: wrong types and values inside them
    (["train", "--config", f"{TMP}/betas1.toml"], "adam_betas must be 2 values"),
    (["train", "--config", f"{TMP}/betas2.toml"], "adam_betas must be less than 1"),
    (["train", "--config", f"{TMP}/eps.toml"], "adam_eps must be greater than 0"),
    (["train", "--config", f"{TMP}/evalbs.toml"], "eval_batch_size must be at least 1"),
    (["train", "--config", f"{TMP}/datadir.json"], "data.data_dir must be text, got 5"),
    (["train", "--config", f"{TMP}/dataset.json"], "data.dataset must be text"),
    (["train", "--config", f"{TMP}/list.json"], "expected a table"),
    (["train", "--config", f"{TMP}/unknown.toml"], "unknown setting model.width"),
    (["train", "--config", f"{TMP}/broken.toml"], "not valid TOML"),
    (["train", "--config", f"{TMP}/bool.toml"], "train.epochs must be a whole number"),
    (["train", "--config", f"{TMP}/wd.toml"], "weight_decay must be at least 0"),
    (["train", "--config", f"{TMP}/nothing.toml"], "not found"),
    # data
    (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["train", "--dataset", f"folder:{TMP}/none"], "does not exist"),
    (["train", "--dataset", f"folder:{TMP}/dangling"], "bad.png"),
    (["train", "--dataset", f"folder:{TMP}/loop"], "loop.png"),
    (["train", "--dataset", f"folder:{TMP}/dangling", "--image-size", "0x4"], "positive sides"),
    (["train", "--image-size", "28x28"], "folder:PATH and npy:PATH data only"),
    # output paths and run directories
    (["train", "--out", f"{TMP}/a_file"], "is a file"),
    (["train", "--out", f"{TMP}/a_file/run"], "cannot create"),
    (["train", "--out", "/proc/vaelab-run"], "cannot create"),
    (["train", "--out", RUN], "already holds a run"),
    (["train", "--out", TMP, "--overwrite"], "not a vaelab run"),
    (["train", "--resume", f"{TMP}/no-run"], "does not exist"),
    (["train", "--resume", f"{TMP}/ro"], "not a vaelab run"),
    (["train", "--resume", RUN, "--lr", "0.1"], "only --epochs"),
    (["train", "--cuda-graphs", "--device", "cpu"], "needs one CUDA GPU"),
    (["train", "--precision", "fp16", "--device", "cpu"], "needs a CUDA GPU"),
    # evaluate
    (["evaluate", f"{TMP}/no-run"], "does not exist"),
    (["evaluate", TMP], "not a vaelab run"),
    (["evaluate", RUN, "--iw-samples", "0"], "must be at least 1"),
    (["evaluate", RUN, "--samples", "0"], "must be at least 1"),
    (["evaluate", RUN, "--max-memory", "inf"], "cannot read 'inf' as a size"),
    (["evaluate", RUN, "--max-memory", "10"], "too small"),
    (["evaluate", RUN, "--seed", "-5"], "a seed is a whole number"),
    (["evaluate", RUN, "--split", "bogus"], "invalid choice"),
    # pictures and files
    (["sample", RUN, "-n", "0"], "-n must be between 1 and"),
    (["sample", RUN, "-n", "-1"], "-n must be between 1 and"),
    (["sample", RUN, "-n", "100000000"], "-n must be between 1 and"),
    (["sample", RUN, "-o", f"{TMP}/a_file/s.png"], "cannot write"),
    (["sample", RUN, "-o", "/proc/vaelab.png"], "cannot write"),
    (["reconstruct", RUN, "-n", "0"], "-n must be between 1 and"),
    (["reconstruct", RUN, "-n", "-1"], "-n must be between 1 and"),
    (["encode", RUN, "-o", f"{TMP}/a_file/z.npz"], "cannot write"),
    (["plot", RUN, "--what", "bogus"], "unknown picture 'bogus'"),
    (["plot", f"{TMP}/no-run"], "does not exist"),
    (["report", f"{TMP}/no-run"], "does not exist"),
    (["explore", RUN, "--port", "70000"], "--port must be in 0..65535"),
    (["gradvar", RUN, "--draws", "0"], "must be at least 1"),
    (["gradvar", RUN, "--tau", "-1"], "positive finite number"),
    (["gradvar", RUN, "--baseline", "bogus"], "unknown --baseline 'bogus'; choose auto, none, moving-average"),
    (["gradvar", RUN, "--estimators", "reparam,bogus"], "--estimators takes all or a comma-separated list"),
    (["data", "download", "cifar"], "unknown dataset"),
    (["reproduce", "no-such-protocol"], "unknown protocol"),
    (["reproduce", "iwae-vae-1layer", "--seeds", "0,x"], "seeds"),
]


@pytest.mark.parametrize("args, fragment", BAD, ids=[f"{i}-{' '.join(a[:3])}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_and_changes_no_run(
    args, fragment, tiny_run, scratch, data_dir, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    monkeypatch.chdir(tmp_path)
    args = [a.replace(RUN, str(tiny_run)).replace(TMP, str(scratch)) for a in args]
    if args[0] == "train" and not any(a in args for a in ("--out", "--resume")):
        args += ["--out", str(tmp_path / "new-run")]
    before, scratch_before = _snapshot(tiny_run), _snapshot(scratch)
    code, _, err = run_cli(capsys, args)
    assert_one_line(code, err, fragment)
    assert _snapshot(tiny_run) == before
    assert _snapshot(scratch) == scratch_before
    assert not (tmp_path / "new-run").exists()


def test_the_table_is_large_enough():
    assert len(BAD) >= 60
    assert {a[0] for a, _ in BAD} >= {
        "train",
        "evaluate",
        "sample",
        "reconstruct",
        "encode",
        "plot",
        "report",
        "explore",
        "gradvar",
        "data",
        "reproduce",
    }


# -- damaged run files -----------------------------------------------------------------------


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def _edit_config(run: Path, section: str, key: str, value) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg[section][key] = value
    (run / "config.json").write_text(json.dumps(cfg))


def _rewrite_safetensors(path: Path, edit) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has keys(), no __iter__
    tensors, meta = edit(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def _damage_resume_state(tensors, meta):
    info = json.loads(meta["vaelab"])
    del info["state"]["epoch"]
    return tensors, {"vaelab": json.dumps(info)}


def _wrong_optimizer_shape(tensors, meta):
    import torch

    key = next(k for k in tensors if k.startswith("optim/") and k.endswith("exp_avg"))
    tensors[key] = torch.zeros(tensors[key].numel() + 1)
    return tensors, meta


DAMAGED = [
    ("config data_dir 5", lambda r: _edit_config(r, "data", "data_dir", 5), ["evaluate"], "data.data_dir must be text"),
    ("config dataset list", lambda r: _edit_config(r, "data", "dataset", ["x"]), ["plot"], "data.dataset must be text"),
    ("config lr text", lambda r: _edit_config(r, "train", "lr", "fast"), ["report"], "train.lr must be a number"),
    ("config not JSON", lambda r: (r / "config.json").write_text("{"), ["evaluate"], "config.json is damaged"),
    (
        "weights metadata",
        lambda r: _rewrite_safetensors(r / "model.safetensors", lambda t, m: (t, {"vaelab": "{"})),
        ["evaluate"],
        "metadata that vaelab did not write",
    ),
    (
        "weights metadata list",
        lambda r: _rewrite_safetensors(r / "model.safetensors", lambda t, m: (t, {"vaelab": "[1]"})),
        ["sample"],
        "metadata that vaelab did not write",
    ),
    (
        "weights truncated",
        lambda r: (r / "model.safetensors").write_bytes((r / "model.safetensors").read_bytes()[:100]),
        ["sample"],
        "damaged or not a safetensors file",
    ),
    (
        "resume state keys",
        lambda r: _rewrite_safetensors(r / "resume.safetensors", _damage_resume_state),
        ["train", "--resume", "{run}", "--epochs", "2"],
        "position in training",
    ),
    (
        "optimizer shape",
        lambda r: _rewrite_safetensors(r / "resume.safetensors", _wrong_optimizer_shape),
        ["train", "--resume", "{run}", "--epochs", "2"],
        "its parameter needs",
    ),
    (
        "metrics not records",
        lambda r: (r / "metrics.jsonl").write_text("5\n"),
        ["plot", "--what", "curves"],
        "not a metrics record",
    ),
    (
        "metrics not JSON",
        lambda r: (r / "metrics.jsonl").write_text("{epoch\n"),
        ["report"],
        "metrics.jsonl is damaged",
    ),
]


@pytest.mark.parametrize("what, damage, command, fragment", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_run_files_are_named(
    what, damage, command, fragment, tiny_run, tmp_path, data_dir, capsys, monkeypatch
):
    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    run = _copy(tiny_run, tmp_path / "run")
    damage(run)
    before = _snapshot(run)
    args = [a.replace("{run}", str(run)) for a in command] if "{run}" in command else [*command, run]
    code, _, err = run_cli(capsys, args)
    assert_one_line(code, err, fragment)
    assert _snapshot(run) == before


def test_data_changed_after_training_is_named(tmp_path, data_dir, capsys, monkeypatch):
    import vaelab

    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    data = tmp_path / "faces.npy"
    np.save(data, np.random.default_rng(0).integers(0, 255, (40, 12, 10), dtype=np.uint8))
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": f"npy:{data}"},
            "model": {"hidden": [16], "latent_dim": 2},
            "train": {"epochs": 1, "batch_size": 10, "device": "cpu"},
        }
    )
    run = vaelab.train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    np.save(data, np.random.default_rng(0).integers(0, 255, (40, 14, 10), dtype=np.uint8))
    for command in (["evaluate", run], ["reconstruct", run], ["train", "--resume", run, "--epochs", "2"]):
        before = _snapshot(run)
        code, _, err = run_cli(capsys, command)
        assert_one_line(code, err, "changed after training")
        assert "1x14x10" in err and "1x12x10" in err
        assert _snapshot(run) == before


def test_a_run_trained_on_data_split_another_way_is_named(
    tiny_frey_run, tiny_run, tmp_path, data_dir, capsys, monkeypatch
):
    """frey_face's frames were once split in video order (split version 1): a run saved then, with
    no split_version in its config.json, refuses today's splits, whose test set holds frames it
    trained on. A run of an unchanged data set saved then still works."""
    from vaelab.reproduce.run import other_settings
    from vaelab.runs import load_run

    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    assert json.loads((tiny_frey_run / "config.json").read_text())["data"]["split_version"] == 2
    old_frey, old_mnist = _copy(tiny_frey_run, tmp_path / "frey"), _copy(tiny_run, tmp_path / "mnist")
    for run in (old_frey, old_mnist):
        cfg = json.loads((run / "config.json").read_text())
        del cfg["data"]["split_version"]
        (run / "config.json").write_text(json.dumps(cfg))
    for command in (
        ["evaluate", old_frey],
        ["reconstruct", old_frey],
        ["train", "--resume", old_frey, "--epochs", "2"],
    ):
        before = _snapshot(old_frey)
        code, _, err = run_cli(capsys, command)
        assert_one_line(code, err, "split by vaelab's split version 1")
        assert "(version 2)" in err
        assert _snapshot(old_frey) == before
    # vaelab reproduce does not count it as a protocol's run either
    assert other_settings(old_frey, load_run(tiny_frey_run, "cpu")[0]) == ["data.split_version"]
    assert other_settings(tiny_frey_run, load_run(tiny_frey_run, "cpu")[0]) == []
    code, out, _ = run_cli(capsys, ["evaluate", old_mnist, "--json"])
    assert code == 0 and json.loads(out)["neg_elbo"] > 0


# -- the console script, pipes, the explorer, internal errors ---------------------------------


def test_console_script_follows_the_same_rule(tiny_run, scratch, data_dir):
    assert_user_error(vaelab("train", "--hidden", "500,,", "--out", scratch / "x"), "empty entry")
    assert_user_error(vaelab("sample", tiny_run, "-n", "-1"), "-n must be between")
    assert_user_error(vaelab("evaluate", tiny_run, "--max-memory", "nan", data_dir=data_dir), "size")


def test_a_closed_pipe_is_no_traceback(data_dir):
    env = dict(os.environ, VAELAB_DATA_DIR=data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "reproduce", "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    proc.stdout.read(10)
    proc.stdout.close()  # `| head -c 10`: the reader is gone before vaelab has written everything
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_explore_ignores_a_browser_that_resets_its_connection(tiny_run, capsys):
    import threading

    import vaelab
    from vaelab.viz.explore import make_server

    server = make_server(vaelab.api.explorer(tiny_run, device="cpu"), 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for _ in range(5):
            s = socket.create_connection(server.server_address[:2])
            s.sendall(f"GET /decode?z=0,0 HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n\r\n".encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a reset, not a polite close
        try:  # and the failure path itself: a reset while replying is swallowed, quietly
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capsys.readouterr().err


def test_an_internal_error_keeps_its_traceback_and_asks_for_a_report(capsys, monkeypatch):
    from vaelab import cli

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "data", broken)
    code, _, err = run_cli(capsys, ["data", "list"])
    assert code == 1
    assert "Traceback" in err and "RuntimeError: a bug" in err
    assert "internal error" in err.strip().splitlines()[-1] and "report" in err.strip().splitlines()[-1]


# -- a file system that refuses, paths that cannot exist, files that are not files -------------

LONG = "n" * 300  # one path component longer than any file system allows (255 bytes)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--out", f"{TMP}/{LONG}/run"],
        ["train", "--config", f"{TMP}/{LONG}.toml"],
        ["train", "--dataset", f"npy:{TMP}/{LONG}.npy"],
        ["train", "--plugin", f"{TMP}/{LONG}.py"],
        ["evaluate", f"{TMP}/{LONG}"],
        ["sample", RUN, "-o", f"{TMP}/{LONG}.png"],
    ],
    ids=["out", "config", "npy", "plugin", "run", "output"],
)
def test_a_name_longer_than_the_file_system_allows_is_one_line(args, tiny_run, scratch, data_dir, capsys, tmp_path):
    args = [a.replace(RUN, str(tiny_run)).replace(TMP, str(scratch)) for a in args]
    if args[0] == "train" and "--out" not in args:
        args += ["--out", str(tmp_path / "new-run")]
    before = _snapshot(tiny_run)
    code, _, err = run_cli(capsys, args)
    assert_one_line(code, err, "longer than the file system allows")
    assert _snapshot(tiny_run) == before


def _deny(monkeypatch, name: str) -> None:
    """Reading any file called `name` is refused as a file without read permission is (the tests
    run as root, whom chmod does not stop)."""
    import errno

    from vaelab import safefs

    real = safefs._open_regular

    def refuse(path, follow):
        if Path(path).name == name:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, follow)

    monkeypatch.setattr(safefs, "_open_regular", refuse)


@pytest.mark.parametrize(
    "name, command, fragment",
    [
        ("config.json", ["evaluate", RUN], "config.json: permission denied"),
        ("metrics.jsonl", ["report", RUN], "metrics.jsonl: permission denied"),
        ("mine.toml", ["train", "--config", f"{TMP}/mine.toml"], "mine.toml: permission denied"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(
    name, command, fragment, tiny_run, scratch, tmp_path, capsys, monkeypatch
):
    run = _copy(tiny_run, tmp_path / "run")
    (scratch / "mine.toml").write_text("[train]\nepochs = 1\n")
    _deny(monkeypatch, name)
    args = [a.replace(RUN, str(run)).replace(TMP, str(scratch)) for a in command]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "new-run")]
    before = _snapshot(run)
    code, _, err = run_cli(capsys, args)
    assert_one_line(code, err, fragment)
    assert _snapshot(run) == before and not (tmp_path / "new-run").exists()


def test_deeply_nested_json_is_one_line(tiny_run, tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text('{"model": {"options": ' + deep + "}}")
    code, _, err = run_cli(capsys, ["train", "--config", tmp_path / "deep.json", "--out", tmp_path / "new"])
    assert_one_line(code, err, "nested too deeply")
    run = _copy(tiny_run, tmp_path / "run")
    (run / "config.json").write_text('{"format": "vaelab-run-1", "data": ' + deep + "}")
    code, _, err = run_cli(capsys, ["evaluate", run])
    assert_one_line(code, err, "nested too deeply")


def test_a_huge_image_size_is_refused_before_it_is_allocated(tmp_path, capsys):
    for i in range(3):
        _png(tmp_path / f"{i}.png")
    code, _, err = run_cli(
        capsys,
        [
            "train",
            "--dataset",
            f"folder:{tmp_path}",
            "--image-size",
            "2000000x2000000",
            "--out",
            tmp_path / "r",
        ],
    )
    assert_one_line(code, err, "needs about")
    assert "--image-size" in err


def test_special_files_are_never_read_or_replaced(tiny_run, tmp_path, capsys, monkeypatch):
    """A FIFO as data, as an image in a folder or as a config file would block the read for ever;
    as an output it would be replaced by a regular file (so would /dev/null, as root)."""
    from vaelab.safefs import check_output

    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"{i}.png")
    os.mkfifo(folder / "3.png")
    os.mkfifo(tmp_path / "cfg.toml")
    out = tmp_path / "new"
    for args, fragment in (
        (["train", "--dataset", f"npy:{fifo}", "--out", out], "FIFO"),
        (["train", "--dataset", f"folder:{folder}", "--out", out], "3.png is a FIFO"),
        (["train", "--config", tmp_path / "cfg.toml", "--out", out], "FIFO"),
        (["sample", tiny_run, "-o", fifo], "FIFO"),
        (["reconstruct", tiny_run, "-o", fifo], "FIFO"),
        (["encode", tiny_run, "-o", fifo], "FIFO"),
    ):
        code, _, err = run_cli(capsys, args)
        assert_one_line(code, err, fragment)
        assert fifo.is_fifo() and not out.exists()
    for device in ("/dev/null", "/dev/full"):
        with pytest.raises(VaelabError, match="a character device, not a regular file"):
            check_output(device)


@pytest.mark.parametrize(
    "args",
    [["train", "--out", ""], ["train", "--resume", ""], ["sample", RUN, "-o", ""], ["evaluate", ""]],
    ids=["out", "resume", "output", "run"],
)
def test_an_empty_path_is_a_mistake_not_the_default(args, tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tiny_run)
    code, _, err = run_cli(capsys, [a.replace(RUN, str(tiny_run)) for a in args])
    assert_one_line(code, err, "expected a path, got an empty string")
    assert _snapshot(tiny_run) == before and not list(tmp_path.iterdir())


def test_a_full_disk_when_taking_the_lock_leaves_nothing(tmp_path, data_dir, monkeypatch):
    import errno

    from vaelab import runs

    real = os.open

    def full(path, flags, *a):
        if str(path).endswith(".lock"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, flags, *a)

    monkeypatch.setattr(runs.os, "open", full)
    cfg = _tiny_config(data_dir)
    with pytest.raises(VaelabError, match="cannot write in"):
        vaelab_api().train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert not (tmp_path / "run").exists()


def _tiny_config(data_dir, **train):
    import vaelab

    return vaelab.build_config(
        overrides={
            "data": {"dataset": "mnist", "data_dir": data_dir},
            "model": {"hidden": [16], "latent_dim": 2},
            "train": {"epochs": 1, "batch_size": 1000, "device": "cpu", **train},
        }
    )


def vaelab_api():
    import vaelab

    return vaelab


def test_an_evaluation_that_cannot_be_saved_is_still_printed(tiny_run, data_dir, capsys, monkeypatch):
    from vaelab import api

    def refuse(run, result, **kw):
        raise VaelabError(f"cannot write {run}/evaluation_test.json: the file system is read-only; choose another path")

    monkeypatch.setattr(api, "save_evaluation", refuse)
    code, out, err = run_cli(capsys, ["evaluate", tiny_run, "--json"])
    assert code == 0
    assert json.loads(out)["neg_elbo"] > 0  # the computed result, printed all the same
    assert "warning: the result below was not saved" in err and "read-only" in err


def test_an_old_run_that_cannot_be_removed_is_reported(tmp_path, data_dir, monkeypatch):
    from vaelab import runs

    cfg = _tiny_config(data_dir)
    run = vaelab_api().train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    monkeypatch.setattr(runs.shutil, "rmtree", lambda *a, **kw: None)  # as a read-only old run resists
    logged: list[str] = []
    vaelab_api().train(_tiny_config(data_dir), run, overwrite=True, progress=False, log=logged.append)
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".run.overwrite-")]
    assert len(hidden) == 1
    assert any("could not be removed" in m and str(hidden[0]) in m for m in logged), logged


def test_resume_without_its_resume_state_never_touches_the_weights(tiny_run, tmp_path, data_dir, capsys):
    run = _copy(tiny_run, tmp_path / "run")
    (run / "resume.safetensors").unlink()
    before = _snapshot(run)
    code, _, err = run_cli(capsys, ["train", "--resume", run, "--epochs", "2"])
    assert_one_line(code, err, "its resume state (resume.safetensors")
    assert "--overwrite" in err
    assert _snapshot(run) == before


def test_an_evaluation_that_cannot_finish_is_refused_with_its_estimate(tiny_run, data_dir, capsys):
    code, _, err = run_cli(capsys, ["evaluate", tiny_run, "--iw-samples", str(10**21)])
    assert_one_line(code, err, "would take about")
    assert "years" in err and "samples/s" in err


# -- weights and side files that are damaged --------------------------------------------------


def _poison(run: Path) -> None:
    import torch

    def nan(tensors, meta):
        key = next(iter(tensors))
        tensors[key] = torch.full_like(tensors[key], float("nan"))
        return tensors, meta

    _rewrite_safetensors(run / "model.safetensors", nan)


@pytest.mark.parametrize("command", [["evaluate"], ["plot"], ["report"], ["sample"]])
def test_nan_weights_are_named(command, tiny_run, tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    run = _copy(tiny_run, tmp_path / "run")
    _poison(run)
    code, out, err = run_cli(capsys, [*command, run])
    assert_one_line(code, err, "holds NaN or infinite values")
    assert "nan" not in out


def test_a_value_of_the_wrong_type_in_a_side_file(tiny_run, tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    run = _copy(tiny_run, tmp_path / "run")
    code, _, _ = run_cli(capsys, ["evaluate", run])
    assert code == 0
    saved = json.loads((run / "evaluation_test.json").read_text())
    (run / "evaluation_test.json").write_text(json.dumps({**saved, "active_units": "many", "n": float("nan")}))
    code, out, err = run_cli(capsys, ["report", run])
    assert code == 0, err
    page = (run / "report.html").read_text()
    assert "Left out, damaged: evaluation_test.json (active_units is &#x27;many&#x27;)" in page
    lines = (run / "metrics.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    (run / "metrics.jsonl").write_text(json.dumps({**record, "train_neg_elbo": "low"}) + "\n")
    code, _, err = run_cli(capsys, ["report", run])
    assert_one_line(code, err, "train_neg_elbo is 'low', not a number")


def test_a_run_name_with_dollar_signs_is_drawn_as_written(tiny_run, tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    run = _copy(tiny_run, tmp_path / "price $x^$ run")
    code, _, err = run_cli(capsys, ["plot", run, "--what", "curves"])
    assert code == 0, err


# -- the Python API ------------------------------------------------------------------------------


def test_the_python_api_names_the_argument(tiny_run, data_dir, tmp_path):
    import torch

    import vaelab

    model = vaelab.load(tiny_run, "cpu")
    x = torch.rand(3, 1, 28, 28)
    cases = [
        (lambda: model.sample(0), "n (images) must be a whole number of at least 1, got 0"),
        (lambda: model.log_weights(x, 0), "n (samples of z per point) must be"),
        (
            lambda: model.posterior(np.zeros((3, 1, 28, 28))),
            "takes a torch.Tensor of shape (B, 1, 28, 28), got ndarray",
        ),
        (lambda: model.posterior(torch.zeros(3, 784)), "takes a batch of shape (B, 1, 28, 28), got (3, 784)"),
        (lambda: vaelab.evaluate(tiny_run, samples=0, data_dir=data_dir), "samples must be"),
        (lambda: vaelab.evaluate(tiny_run, iw_samples=-2, data_dir=data_dir), "iw_samples must be"),
        (lambda: vaelab.reconstruct(tiny_run, n=0, data_dir=data_dir), "n must be a whole number of at least 1, got 0"),
        (lambda: vaelab.reconstruct(tiny_run, n=-3, data_dir=data_dir), "got -3"),
        (lambda: vaelab.sample(tiny_run, n=2.5), "got 2.5"),
        (lambda: vaelab.train("cfg", tmp_path / "r"), "needs a Config as its first argument"),
        (lambda: vaelab.train(vaelab.build_config(), tiny_run), "vaelab.train(..., resume=True) or overwrite=True"),
    ]
    for call, fragment in cases:
        with pytest.raises(VaelabError) as e:
            call()
        assert fragment in str(e.value), str(e.value)
    assert vaelab.reconstruct(tiny_run, n=np.int64(2), data_dir=data_dir)[0].shape[0] == 2
    assert not (tmp_path / "r").exists()


# -- a run directory reaches nothing outside itself --------------------------------------------


def _crafted_plugin_run(tiny_run: Path, tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A copy of a run whose config.json names a plugin file that, imported, leaves a mark."""
    run = _copy(tiny_run, tmp_path / "sent-to-me")
    mark = tmp_path / "the-plugin-ran"
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(f"from pathlib import Path\nPath({str(mark)!r}).write_text('ran')\n")
    cfg = json.loads((run / "config.json").read_text())
    cfg["plugins"] = [str(plugin)]
    (run / "config.json").write_text(json.dumps(cfg))
    return run, plugin, mark


def test_a_run_cannot_run_its_plugins_without_leave(tiny_run, tmp_path, data_dir, capsys, monkeypatch):
    import vaelab

    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    run, plugin, mark = _crafted_plugin_run(tiny_run, tmp_path, "evil_cli")
    for command in (["evaluate", run], ["plot", run], ["report", run], ["sample", run], ["explore", run]):
        code, _, err = run_cli(capsys, command)
        assert_one_line(code, err, f"names plugin code that loading the run would run: {plugin}")
        assert "--trust-plugins" in err
        assert not mark.exists()
    code, _, err = run_cli(capsys, ["train", "--resume", run, "--epochs", "2"])
    assert_one_line(code, err, "--trust-plugins")
    with pytest.raises(VaelabError, match="vaelab.trust_plugins"):
        vaelab.load(run)
    assert not mark.exists()
    code, out, err = run_cli(capsys, ["evaluate", run, "--trust-plugins", "--json"])  # the user's say
    assert code == 0, err
    assert mark.read_text() == "ran"
    code, _, _ = run_cli(capsys, ["sample", run])  # remembered for that file on this machine
    assert code == 0
    record = json.loads((Path(os.environ["VAELAB_STATE_DIR"]) / "trusted_plugins.json").read_text())
    assert str(plugin) in record["files"]


def test_trust_plugins_in_the_python_api(tiny_run, tmp_path):
    import vaelab

    run, plugin, mark = _crafted_plugin_run(tiny_run, tmp_path, "evil_api")
    with pytest.raises(VaelabError, match="names plugin code"):
        vaelab.load(run)
    assert vaelab.trust_plugins(run) == [str(plugin)]
    vaelab.load(run)
    assert mark.exists()


def test_symbolic_links_in_a_run_are_refused(tiny_run, tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("not for the report")
    png = outside / "private.png"
    _png(png)

    run = _copy(tiny_run, tmp_path / "lock")
    os.symlink(secret, run / ".lock")
    code, _, err = run_cli(capsys, ["train", "--resume", run, "--epochs", "2"])
    assert_one_line(code, err, ".lock is a symbolic link")
    assert secret.read_text() == "not for the report"

    for name, command, fragment in (
        ("samples.png", ["report"], "samples.png is a symbolic link"),  # a picture read into the page
        ("report.html", ["report"], "report.html: it is a symbolic link"),  # the page written through it
        ("evaluation_test.json", ["report"], "evaluation_test.json is a symbolic link"),
        ("model.safetensors", ["evaluate"], "model.safetensors is a symbolic link"),
        ("metrics.jsonl", ["plot", "--what", "curves"], "metrics.jsonl is a symbolic link"),
        ("config.json", ["evaluate"], "config.json is a symbolic link"),
    ):
        run = _copy(tiny_run, tmp_path / name)
        run_cli(capsys, ["report", run])  # pictures newer than the weights, so a report reads them
        real = run / name
        target = outside / name
        if real.exists():
            shutil.copy(real, target)
            real.unlink()
        else:
            target.write_text("{}")
        if name == "samples.png":
            shutil.copy(png, target)
        os.symlink(target, real)
        before = hashlib.sha256(target.read_bytes()).hexdigest()
        code, _, err = run_cli(capsys, [*command, run])
        assert_one_line(code, err, fragment)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == before, name
        assert real.is_symlink()

"""Your own images: folder:PATH (PNG/JPEG) and npy:PATH, their fixed split, every user error,
and a whole round trip (CLI train and evaluate, then encode and plot) on npy: data with the conv model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab as vaelab_api
from vaelab.config import DataConfig, build_config
from vaelab.data import load_split
from vaelab.data.custom import load_images, parse_image_size, run_name, split_indices
from vaelab.dataprep import load_inputs
from vaelab.errors import VaelabError

RNG = np.random.default_rng(0)


def write_pngs(folder: Path, n: int, shape=(8, 6), rgb=False, start=0) -> list[np.ndarray]:
    """n random uint8 images as PNG files img_000.png... in folder; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(start, start + n):
        a = RNG.integers(0, 256, size=(*shape, 3) if rgb else shape, dtype=np.uint8)
        Image.fromarray(a, "RGB" if rgb else "L").save(folder / f"img_{i:03d}.png")
        arrays.append(a)
    return arrays


def all_splits(name, **kw):
    return {s: load_split(name, s, **kw) for s in ("train", "valid", "test")}


# -- folders ------------------------------------------------------------------------------------


def test_grey_folder_is_read_exactly_and_split_80_10_10(tmp_path):
    arrays = write_pngs(tmp_path / "imgs", 20)
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    (tmp_path / "imgs" / ".hidden.png").write_bytes(b"not an image, skipped because hidden")
    name = f"folder:{tmp_path / 'imgs'}"
    x = load_images(name)
    assert x.dtype == torch.float32 and x.shape == (20, 1, 8, 6)
    expected = torch.from_numpy(np.stack(arrays)).float().div(255).unsqueeze(1)  # files in sorted order
    torch.testing.assert_close(x, expected, rtol=0, atol=0)

    splits = all_splits(name)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [16, 2, 2]
    assert all(s.labels is None and s.images.shape[1:] == (1, 8, 6) for s in splits.values())
    # the three splits partition the images: every image exactly once
    rows = {tuple(img.flatten().tolist()) for s in splits.values() for img in s.images}
    assert len(rows) == 20 and rows == {tuple(img.flatten().tolist()) for img in x}
    # the split is fixed: the same rows every time, independent of the global RNG
    torch.manual_seed(123)
    assert torch.equal(load_split(name, "test").images, splits["test"].images)
    # full_train: train = train + valid
    full = load_split(name, "train", full_train=True).images
    assert len(full) == 18
    assert torch.equal(full, torch.cat([splits["train"].images, splits["valid"].images]))


def test_split_sizes_and_determinism():
    for n in (3, 10, 25, 1000):
        idx = [split_indices(n, s) for s in ("train", "valid", "test")]
        assert sorted(torch.cat(idx).tolist()) == list(range(n))
        hold = max(1, n // 10)
        assert [len(i) for i in idx] == [n - 2 * hold, hold, hold]
        assert torch.equal(split_indices(n, "valid"), idx[1])


def test_mixed_grey_and_rgb_become_rgb_and_subfolders_count(tmp_path):
    grey = write_pngs(tmp_path / "d" / "a", 2)
    rgb = write_pngs(tmp_path / "d" / "b", 2, rgb=True)
    x = load_images(f"folder:{tmp_path / 'd'}")
    assert x.shape == (4, 3, 8, 6)
    # sorted by relative path: a/img_000, a/img_001, b/img_000, b/img_001
    for i, g in enumerate(grey):
        for c in range(3):  # grey repeated into three equal channels
            assert torch.equal(x[i, c], torch.from_numpy(g).float() / 255)
    assert torch.equal(x[2], torch.from_numpy(rgb[0]).permute(2, 0, 1).float() / 255)


def test_jpeg_rgba_and_16_bit_files_are_read(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    Image.fromarray(RNG.integers(0, 256, (8, 6, 3), dtype=np.uint8)).save(d / "a.jpg", quality=95)
    Image.fromarray(np.full((8, 6, 4), 200, np.uint8), "RGBA").save(d / "b.PNG")
    Image.fromarray(np.full((8, 6), 65535, np.uint16)).save(d / "c.png")  # 16-bit grey
    x = load_images(f"folder:{d}")
    assert x.shape == (3, 3, 8, 6) and x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x[1], torch.tensor(200 / 255))  # alpha dropped
    assert torch.equal(x[2], torch.ones(3, 8, 6))  # 16-bit white is 1.0


def test_jpeg_exif_orientation_is_applied(tmp_path):
    for i in range(3):  # stored 4x2, tagged "rotate 90 clockwise" as phone cameras do
        img = Image.fromarray(np.zeros((4, 2, 3), np.uint8))
        exif = img.getexif()
        exif[0x0112] = 6
        img.save(tmp_path / f"{i}.jpg", exif=exif)
    assert load_images(f"folder:{tmp_path}").shape == (3, 3, 2, 4)


def test_image_size_resizes_mixed_sizes(tmp_path):
    write_pngs(tmp_path / "d", 2, shape=(8, 6))
    write_pngs(tmp_path / "d", 2, shape=(16, 12), start=2)
    Image.fromarray(np.full((30, 30), 255, np.uint8)).save(tmp_path / "d" / "white.png")
    x = load_images(f"folder:{tmp_path / 'd'}", "4x3")
    assert x.shape == (5, 1, 4, 3)
    assert torch.allclose(x[-1], torch.ones(1, 4, 3))  # resizing keeps a constant image constant
    cfg = build_config(overrides={"data": {"dataset": f"folder:{tmp_path / 'd'}", "image_size": "4X3"}})
    assert cfg.data.image_size == "4x3"
    assert load_inputs(cfg.data, "train").images.shape[1:] == (1, 4, 3)


# -- npy --------------------------------------------------------------------------------------------


def test_npy_uint8_grey_and_float_rgb(tmp_path):
    a = RNG.integers(0, 256, size=(30, 7, 5), dtype=np.uint8)
    np.save(tmp_path / "grey.npy", a)
    x = load_images(f"npy:{tmp_path / 'grey.npy'}")
    assert x.shape == (30, 1, 7, 5) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy(a).float().div(255).unsqueeze(1), rtol=0, atol=0)

    f = RNG.random((30, 3, 4, 4)).astype(np.float64)
    np.save(tmp_path / "rgb.npy", f)
    splits = all_splits(f"npy:{tmp_path / 'rgb.npy'}")
    assert [len(s) for s in splits.values()] == [24, 3, 3]
    got = torch.cat([s.images for s in splits.values()])
    perm = torch.cat([split_indices(30, s) for s in ("train", "valid", "test")])
    torch.testing.assert_close(got, torch.from_numpy(f).float()[perm])

    np.save(tmp_path / "bits.npy", RNG.random((10, 3, 3)) > 0.5)
    s = load_split(f"npy:{tmp_path / 'bits.npy'}", "train")
    assert s.info.binary and set(s.images.unique().tolist()) <= {0.0, 1.0}


def test_a_source_is_read_once_and_again_when_it_changes(tmp_path, monkeypatch):
    from vaelab.data import custom

    calls = []
    real = custom.read_npy
    monkeypatch.setattr(custom, "read_npy", lambda *a: calls.append(a) or real(*a))
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((10, 4, 4), np.uint8))
    splits = all_splits(f"npy:{path}")
    assert len(calls) == 1 and all(s.images.is_contiguous() for s in splits.values())
    np.save(path, np.full((20, 4, 4), 255, np.uint8))  # a new file: read again
    assert len(load_split(f"npy:{path}", "train")) == 16 and len(calls) == 2
    assert load_split(f"npy:{path}", "test").images.min() == 1


def test_binarization_follows_the_flag_for_own_data(tmp_path):
    np.save(tmp_path / "g.npy", RNG.random((20, 4, 4)).astype(np.float32))
    cfg = DataConfig(dataset=f"npy:{tmp_path / 'g.npy'}", binarize="dynamic")
    cfg.validate()
    assert load_inputs(cfg, "train", training=True).dynamic
    evals = load_inputs(cfg, "valid").images
    assert set(evals.unique().tolist()) <= {0.0, 1.0}  # the fixed draw for evaluation
    cfg.binarize = "none"
    assert not load_inputs(cfg, "train", training=True).dynamic


def test_relative_paths_become_absolute_and_name_the_default_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = DataConfig(dataset="npy:sub/faces.npy")
    cfg.validate()
    assert cfg.dataset == f"npy:{tmp_path / 'sub' / 'faces.npy'}"
    assert run_name(cfg.dataset) == "faces" and run_name("mnist") == "mnist"
    assert parse_image_size("64") == (64, 64) and parse_image_size([28, 20]) == (28, 20)


# -- user errors: one clear message each --------------------------------------------------------


def error_of(name, image_size=None) -> str:
    with pytest.raises(VaelabError) as e:
        load_split(name, "train", image_size=image_size)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_folder_errors(tmp_path):
    assert "does not exist" in error_of(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    assert "is empty" in error_of(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    msg = error_of(f"folder:{tmp_path / 'txt'}")
    assert "no PNG or JPEG" in msg and "a.txt" in msg
    np.save(tmp_path / "a.npy", np.zeros((3, 2, 2), np.uint8))
    assert "npy:PATH" in error_of(f"folder:{tmp_path / 'a.npy'}")

    write_pngs(tmp_path / "mixed", 2, shape=(8, 6))
    write_pngs(tmp_path / "mixed", 1, shape=(9, 6), start=2)
    msg = error_of(f"folder:{tmp_path / 'mixed'}")
    assert "img_000.png is 8x6" in msg and "img_002.png is 9x6" in msg and "--image-size" in msg

    write_pngs(tmp_path / "bad", 3)
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    msg = error_of(f"folder:{tmp_path / 'bad'}")
    assert "broken.png" in msg and "cannot read image" in msg
    # a truncated file fails too (PIL decodes lazily; the loader forces the decode)
    good = (tmp_path / "bad" / "img_000.png").read_bytes()
    (tmp_path / "bad" / "broken.png").write_bytes(good[: len(good) // 2])
    assert "broken.png" in error_of(f"folder:{tmp_path / 'bad'}")

    write_pngs(tmp_path / "two", 2)
    assert "at least 3" in error_of(f"folder:{tmp_path / 'two'}")


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((5, 4), np.uint8), "expected N x H x W"),
        (np.zeros((2, 3, 4, 4, 4), np.uint8), "expected N x H x W"),
        (np.zeros((5, 2, 4, 4), np.uint8), "channels must be 1 or 3"),
        (np.zeros((5, 4, 4, 3), np.uint8), "channels-last"),
        (np.zeros((5, 4, 4), np.int64), "holds int64 values"),
        (np.full((5, 4, 4), 255.0), "floats from 255 to 255"),
        (np.full((5, 4, 4), -0.5, np.float32), "must be in [0, 1]"),
        (np.full((5, 4, 4), np.nan), "NaN"),
        (np.zeros((0, 4, 4), np.uint8), "empty array"),
        (np.array([[[{}]]] * 3, dtype=object), "Python objects"),
    ],
)
def test_npy_errors(tmp_path, array, fragment):
    np.save(tmp_path / "a.npy", array, allow_pickle=True)
    assert fragment in error_of(f"npy:{tmp_path / 'a.npy'}")


def test_npy_file_errors(tmp_path):
    assert "does not exist" in error_of(f"npy:{tmp_path / 'nope.npy'}")
    assert "folder:PATH" in error_of(f"npy:{tmp_path}")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    assert "not a valid .npy" in error_of(f"npy:{tmp_path / 'junk.npy'}")
    np.save(tmp_path / "cut.npy", np.zeros((10, 8, 8), np.uint8))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-100])  # truncated
    assert "cut.npy" in error_of(f"npy:{tmp_path / 'cut.npy'}")
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2, 2)))
    assert ".npz archive" in error_of(f"npy:{tmp_path / 'a.npz'}")


@pytest.mark.parametrize("value", ["abc", "28x", "2x3x4", "0x5", "-3x4", "x", [28, 2.5]])
def test_bad_image_size(value):
    with pytest.raises(VaelabError, match="--image-size"):
        parse_image_size(value)


def test_config_errors(tmp_path):
    with pytest.raises(VaelabError, match="--image-size must be HEIGHTxWIDTH"):
        build_config(overrides={"data": {"dataset": f"npy:{tmp_path}/a.npy", "image_size": "big"}})
    with pytest.raises(VaelabError, match="folder:PATH and npy:PATH data only"):
        build_config(overrides={"data": {"dataset": "mnist", "image_size": "32x32"}})
    with pytest.raises(VaelabError, match="names no path"):
        build_config(overrides={"data": {"dataset": "folder:"}})
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'.*folder:PATH"):
        build_config(overrides={"data": {"dataset": "cifar"}})


# -- the command line on your own data ------------------------------------------------------------


def vaelab(*args, cwd=None):
    # one thread: a tiny model gains nothing from two, and loses 10x or more on a busy 2-core machine
    env = {k: v for k, v in os.environ.items() if k != "VAELAB_DATA_DIR"} | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cli_train_evaluate_encode_plot_on_npy_data(tmp_path, one_thread):
    # 200 blurry blobs, 12x10: a shape that needs the conv model's odd-size round trip (12x10 -> 6x5 -> 3x3)
    yy, xx = np.mgrid[:12, :10]
    centres = RNG.uniform([3, 3], [9, 7], size=(200, 2))
    blobs = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 6)
    np.save(tmp_path / "blobs.npy", (blobs * 255).astype(np.uint8))
    run = tmp_path / "run"
    proc = vaelab(
        "train",
        "--dataset",
        "npy:blobs.npy",
        "--model",
        "conv",
        "--channels",
        "4,8",
        "--hidden",
        "",
        "--latent-dim",
        "2",
        "--binarize",
        "none",
        "--epochs",
        "2",
        "--batch-size",
        "20",
        "--device",
        "cpu",
        "--out",
        run,
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["dataset"] == f"npy:{tmp_path / 'blobs.npy'}"
    assert cfg["model"]["network"] == "conv" and cfg["model"]["input_shape"] == [1, 12, 10]

    proc = vaelab("evaluate", run, "--split", "test", "--json")  # from another folder: the path is absolute
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n"] == 20 and result["neg_elbo"] == pytest.approx(result["rec"] + result["kl"], rel=1e-6)

    # encode and plot in this process (what their commands call), to save two interpreter starts
    z = vaelab_api.encode(run, "valid", device="cpu")
    assert z["mu"].shape == (20, 2) and "labels" not in z  # own data has no labels
    paths = vaelab_api.plot(run, device="cpu")
    assert {p.name for p in paths} >= {"samples.png", "reconstructions.png"} and all(p.is_file() for p in paths)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--dataset", "folder:no/such/folder"], "does not exist"),
        (["--dataset", "npy:x.npy", "--image-size", "huge"], "--image-size must be"),
    ],
)
def test_cli_data_errors_are_one_line(tmp_path, monkeypatch, capsys, args, fragment):
    from vaelab.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", *args, "--epochs", "1", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaelab: error:") and fragment in lines[0], lines
    assert not (tmp_path / "r" / "config.json").exists()  # no run was started

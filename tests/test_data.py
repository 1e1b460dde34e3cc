"""vaelab.data on the real benchmark files: parsers, splits, checksums, binarization, status.

The official files are read from $VAELAB_TEST_DATA_DIR, else from <repo>/../shared/data. If they
are absent, the tests that need them fail (they are the point of these tests).
"""

import gzip
import hashlib
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import (
    DATASETS,
    binarize,
    dataset_status,
    format_status,
    load_split,
    read_amat,
    read_idx,
    read_mat_uint8,
    resolve_data_dir,
)
from vaelab.data.custom import split_permutation
from vaelab.errors import VaelabError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
# sha256 of the plain binarized_mnist_valid.amat, from the data README.
AMAT_VALID_SHA256 = "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"


def shared_data_dir() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # <repo>/../shared/data
    return Path(os.environ.get("VAELAB_TEST_DATA_DIR") or default).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_data_dir()
    missing = [
        f"{info.name}/{f.name}"
        for info in DATASETS.values()
        for f in info.files
        if not (info.name == "fashion_mnist" and "images" in f.name)  # not shipped
        and not any((root / info.name / v.name).exists() for v in f.variants)
    ]
    if missing:
        pytest.fail(
            f"benchmark data missing under {root}: {', '.join(missing)}; "
            "set VAELAB_TEST_DATA_DIR to the folder of the official files"
        )
    return root


@pytest.fixture(scope="module")
def mnist_files(shared):
    d = shared / "mnist"
    return {
        n: read_idx(d / f"{n}-idx{3 if 'images' in n else 1}-ubyte.gz")
        for n in ("train-images", "train-labels", "t10k-images", "t10k-labels")
    }


@pytest.fixture(scope="module")
def mnist_test(shared):
    return load_split("mnist", "test", shared, download=False)


def only_zeros_and_ones(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def copy_dataset(shared: Path, tmp: Path, name: str) -> Path:
    shutil.copytree(shared / name, tmp / name)
    for p in (tmp / name).iterdir():
        p.chmod(0o644)  # the shared copies are read-only
    return tmp / name


# --- parsers -------------------------------------------------------------------------------------


def test_idx_parser_on_mnist(shared, mnist_files):
    for name, magic in [
        ("train-images-idx3-ubyte.gz", 2051),
        ("train-labels-idx1-ubyte.gz", 2049),
        ("t10k-images-idx3-ubyte.gz", 2051),
        ("t10k-labels-idx1-ubyte.gz", 2049),
    ]:
        with gzip.open(shared / "mnist" / name) as f:
            assert int.from_bytes(f.read(4), "big") == magic
    images, labels = mnist_files["train-images"], mnist_files["train-labels"]
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert mnist_files["t10k-images"].shape == (10000, 28, 28)
    assert labels.shape == (60000,) and mnist_files["t10k-labels"].shape == (10000,)
    assert np.bincount(labels).tolist() == MNIST_TRAIN_COUNTS
    assert images.min() == 0 and images.max() == 255
    assert set(np.unique(mnist_files["t10k-labels"])) == set(range(10))


def test_idx_parser_rejects_bad_files(tmp_path):
    def write(name, header, body):
        path = tmp_path / name
        path.write_bytes(gzip.compress(np.array(header, ">i4").tobytes() + body))
        return path

    with pytest.raises(VaelabError, match=r"bad-magic\.gz.*magic number 2050"):
        read_idx(write("bad-magic.gz", [2050, 2, 2, 2], bytes(8)))
    with pytest.raises(VaelabError, match=r"short\.gz.*8 data bytes.*\(3, 2, 2\)"):
        read_idx(write("short.gz", [2051, 3, 2, 2], bytes(8)))
    with pytest.raises(VaelabError, match=r"header\.gz.*truncated"):
        read_idx(write("header.gz", [2051, 3], b""))
    assert read_idx(write("ok.gz", [2051, 2, 1, 3], bytes(range(6)))).tolist() == [[[0, 1, 2]], [[3, 4, 5]]]


def test_truncated_gzip_is_reported(shared, tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes((shared / "mnist" / bad.name).read_bytes()[:3000])
    with pytest.raises(VaelabError, match=r"t10k-labels-idx1-ubyte\.gz is not a valid gzip file"):
        read_idx(bad)


def test_amat_plain_and_gz_are_identical(shared, tmp_path):
    plain = tmp_path / "binarized_mnist" / "binarized_mnist_valid.amat"
    plain.parent.mkdir()
    plain.write_bytes(gzip.decompress((shared / "binarized_mnist" / (plain.name + ".gz")).read_bytes()))
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == AMAT_VALID_SHA256
    from_plain = load_split("binarized_mnist", "valid", tmp_path, download=False).images
    from_gz = load_split("binarized_mnist", "valid", shared, download=False).images
    assert torch.equal(from_plain, from_gz)


def test_amat_tolerant_fallback(shared, tmp_path):
    text = gzip.decompress((shared / "binarized_mnist" / "binarized_mnist_test.amat.gz").read_bytes())
    head = b"".join(text.splitlines(keepends=True)[:40])
    expected = read_amat(tmp_path / "x.amat", head)
    assert expected.shape == (40, 784)
    # CRLF line ends, doubled spaces and a trailing blank line miss the fast path but parse the same.
    messy = head.replace(b"\n", b"\r\n").replace(b"0 1", b"0  1") + b"\r\n"
    np.testing.assert_array_equal(read_amat(tmp_path / "x.amat", messy), expected)
    with pytest.raises(VaelabError, match=r"x\.amat is not a binarized MNIST"):
        read_amat(tmp_path / "x.amat", head.replace(b"1", b"2", 1))
    with pytest.raises(VaelabError, match=r"x\.amat is not a binarized MNIST"):
        read_amat(tmp_path / "x.amat", head[:-3] + b"\n")  # last row one value short


def test_mat_reader_on_frey_face(shared, tmp_path):
    path = shared / "frey_face" / "frey_rawface.mat"
    ff = read_mat_uint8(path, "ff")
    assert ff.shape == (560, 1965) and ff.dtype == np.uint8
    assert ff.min() == 8 and ff.max() == 238
    # The same variable wrapped in a zlib-compressed element (MATLAB -v7 style).
    raw = path.read_bytes()
    body = zlib.compress(raw[128:])
    compressed = tmp_path / "compressed.mat"
    compressed.write_bytes(raw[:128] + np.array([15, len(body)], "<u4").tobytes() + body)
    np.testing.assert_array_equal(read_mat_uint8(compressed, "ff"), ff)
    with pytest.raises(VaelabError, match="has no variable 'gg'"):
        read_mat_uint8(path, "gg")
    with pytest.raises(VaelabError, match="not a MATLAB 5 MAT-file"):
        read_mat_uint8(tmp_path / "x.mat", "ff", b"hello")
    with pytest.raises(VaelabError, match="truncated"):
        read_mat_uint8(tmp_path / "x.mat", "ff", raw[:500_000])


# --- splits --------------------------------------------------------------------------------------


def test_mnist_splits(shared, mnist_files, mnist_test):
    full = load_split("mnist", "train", shared, download=False, full_train=True)
    train = load_split("mnist", "train", shared, download=False)
    valid = load_split("mnist", "valid", shared, download=False)
    assert [len(s) for s in (train, valid, mnist_test, full)] == [50000, 10000, 10000, 60000]
    for s in (train, valid, mnist_test, full):
        assert s.images.shape[1:] == (1, 28, 28) and s.images.dtype == torch.float32
        assert s.images.is_contiguous() and s.images.device.type == "cpu"
        assert s.images.min() == 0 and s.images.max() == 1
        assert s.labels.dtype == torch.int64 and s.labels.shape == (len(s),)
        assert s.info is DATASETS["mnist"]
    pixels = torch.from_numpy(mnist_files["train-images"].astype(np.float32)).unsqueeze(1) / 255
    labels = torch.from_numpy(mnist_files["train-labels"].astype(np.int64))
    assert torch.equal(valid.images, pixels[-10000:]) and torch.equal(valid.labels, labels[-10000:])
    assert torch.equal(train.images, pixels[:50000]) and torch.equal(train.labels, labels[:50000])
    assert torch.equal(full.images, pixels) and torch.bincount(full.labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.equal(mnist_test.labels, torch.from_numpy(mnist_files["t10k-labels"].astype(np.int64)))


def test_binarized_mnist_splits(shared):
    splits = {s: load_split("binarized_mnist", s, shared, download=False) for s in ("train", "valid", "test")}
    assert [len(s) for s in splits.values()] == [50000, 10000, 10000]
    for s in splits.values():
        assert s.images.shape[1:] == (1, 28, 28) and s.labels is None
        assert only_zeros_and_ones(s.images) and s.images.min() == 0 and s.images.max() == 1
    full = load_split("binarized_mnist", "train", shared, download=False, full_train=True)
    assert torch.equal(full.images, torch.cat([splits["train"].images, splits["valid"].images]))


def test_frey_face_splits(shared):
    """The frames are dealt into splits by the fixed seeded permutation (its checksum pinned: a
    changed order would silently change every Frey Face number), not in video order."""
    ff = read_mat_uint8(shared / "frey_face" / "frey_rawface.mat", "ff")
    frames = torch.from_numpy(ff.T.reshape(-1, 1, 28, 20).astype(np.float32)) / 255
    order = split_permutation(len(frames))
    digest = hashlib.sha256(order.numpy().astype("<i8").tobytes()).hexdigest()
    assert digest == "01df21170d8bb45050b246f83c5130a8161db2290a2a871e7d56c5877dc22ad3"
    assert order[:4].tolist() == [644, 800, 757, 1881]
    splits = {s: load_split("frey_face", s, shared, download=False) for s in ("train", "valid", "test")}
    assert [len(s) for s in splits.values()] == [1565, 200, 200]
    assert torch.equal(torch.cat([s.images for s in splits.values()]), frames[order])
    full = load_split("frey_face", "train", shared, download=False, full_train=True)
    assert torch.equal(full.images, frames[order[:1765]])
    assert round(float(full.images.min()) * 255) == 8 and splits["train"].images.shape[1:] == (1, 28, 20)
    assert full.labels is None and full.info.continuous


def test_bad_names(shared):
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'.*mnist, fashion_mnist"):
        load_split("cifar", data_dir=shared)
    with pytest.raises(VaelabError, match="unknown split 'val'.*train, valid, test"):
        load_split("mnist", "val", shared)


# --- verification --------------------------------------------------------------------------------


def test_changed_byte_fails_checksum(shared, tmp_path):
    d = copy_dataset(shared, tmp_path, "mnist")
    path = d / "t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(data)
    with pytest.raises(VaelabError) as e:
        load_split("mnist", "test", tmp_path, download=False)
    msg = str(e.value)
    assert str(path) in msg and "sha256" in msg and "vaelab data download mnist" in msg
    assert "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6" in msg and "\n" not in msg


def test_truncated_file_fails_before_parsing(shared, tmp_path):
    d = copy_dataset(shared, tmp_path, "mnist")
    path = d / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(VaelabError, match=r"t10k-labels-idx1-ubyte\.gz has 1000 bytes, expected 4542"):
        load_split("mnist", "test", tmp_path, download=False)


def test_missing_files_without_download(shared, tmp_path):
    with pytest.raises(VaelabError, match=r"t10k-images-idx3-ubyte\.gz is missing; run `vaelab data download mnist`"):
        load_split("mnist", "test", tmp_path, download=False)
    with pytest.raises(VaelabError, match="vaelab data download fashion_mnist"):
        load_split("fashion_mnist", "test", shared, download=False)


# --- binarization --------------------------------------------------------------------------------


def test_binarize(mnist_test):
    x = mnist_test.images
    a, b, c = binarize(x, "static", 1), binarize(x, "static", 1), binarize(x, "static", 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert only_zeros_and_ones(a) and a.shape == x.shape and a.dtype == x.dtype
    assert abs(float(a.mean()) - float(x.mean())) < 2e-3
    assert binarize(x, "none", 0) is x and binarize(x, "dynamic", 0) is x
    assert binarize(a, "static", 5) is a  # already binary
    with pytest.raises(VaelabError, match="none, static, dynamic"):
        binarize(x, "stochastic", 0)


# --- data folder and status ----------------------------------------------------------------------


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "vaelab"
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_dataset_status(shared, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", str(shared))
    status = {d["name"]: d for d in dataset_status()}
    assert list(status) == ["mnist", "fashion_mnist", "binarized_mnist", "frey_face"]
    assert status["mnist"]["ready"] and len(status["mnist"]["files"]) == 4
    assert all(
        f["present"] and f["verified"] and Path(f["path"]).parent == shared / "mnist" for f in status["mnist"]["files"]
    )
    fashion = {f["name"]: f for f in status["fashion_mnist"]["files"]}
    assert not status["fashion_mnist"]["ready"]
    assert not fashion["train-images-idx3-ubyte.gz"]["present"] and not fashion["t10k-images-idx3-ubyte.gz"]["verified"]
    assert fashion["train-labels-idx1-ubyte.gz"]["verified"]
    assert status["binarized_mnist"]["ready"] and status["frey_face"]["ready"]
    table = format_status()
    assert str(shared) in table and "missing" in table and "vaelab data download" in table

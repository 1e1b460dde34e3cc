"""The benchmark data sets: their official files, checksums and URLs, and where they live locally.

Local layout: ``<data dir>/<dataset>/<official file name>``, so a folder of the official files
(such as a shared read-only copy) can be used as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VaelabError

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class FileInfo:
    """One official file: its name, sha256, size in bytes and URLs (official first, then mirrors).

    ``alternatives`` are other local forms accepted in its place, each checked against its own
    checksum (binarized MNIST: the gzipped ``.amat.gz``). Downloads fetch the primary form.
    """

    name: str
    sha256: str
    size: int
    urls: tuple[str, ...] = ()
    alternatives: tuple[FileInfo, ...] = ()

    @property
    def variants(self) -> tuple[FileInfo, ...]:
        """The primary form first, then the alternatives."""
        return (self, *self.alternatives)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, ...]  # (C, H, W) of one image
    has_labels: bool
    binary: bool  # pixels are already exactly 0 or 1
    continuous: bool  # grey values meant for a continuous (e.g. Gaussian) decoder
    description: str
    files: tuple[FileInfo, ...]
    split_sizes: tuple[int, ...]  # (train, valid, test) with full_train=False
    # Which examples go to train, valid and test: raised whenever a data set starts dealing them
    # differently. A run records the version it was trained under (config data.split_version)
    # and refuses data dealt another way, whose test split may hold examples it trained on.
    split_version: int = 1

    def file(self, name: str) -> FileInfo:
        return next(f for f in self.files if f.name == name)


def _urls(name: str, *bases: str) -> tuple[str, ...]:
    return tuple(f"{base}/{name}" for base in bases)


_MNIST_URLS = (
    "http://yann.lecun.com/exdb/mnist",
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist",
)
_FASHION_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
)
_LAROCHELLE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist"


def _idx_files(bases: tuple[str, ...], table: list[tuple[str, int, str]]) -> tuple[FileInfo, ...]:
    return tuple(FileInfo(name, sha, size, _urls(name, *bases)) for name, size, sha in table)


def _amat(split: str, size: int, sha: str, gz_size: int, gz_sha: str) -> FileInfo:
    name = f"binarized_mnist_{split}.amat"
    return FileInfo(
        name, sha, size, _urls(name, _LAROCHELLE_URL), alternatives=(FileInfo(name + ".gz", gz_sha, gz_size),)
    )


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "mnist",
            (1, 28, 28),
            has_labels=True,
            binary=False,
            continuous=False,
            description="MNIST handwritten digits, grey levels (LeCun, Cortes & Burges)",
            files=_idx_files(
                _MNIST_URLS,
                [
                    (
                        "train-images-idx3-ubyte.gz",
                        9912422,
                        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    ),
                    (
                        "train-labels-idx1-ubyte.gz",
                        28881,
                        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    ),
                    (
                        "t10k-images-idx3-ubyte.gz",
                        1648877,
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    ),
                    (
                        "t10k-labels-idx1-ubyte.gz",
                        4542,
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    ),
                ],
            ),
            split_sizes=(50000, 10000, 10000),
        ),
        DatasetInfo(
            "fashion_mnist",
            (1, 28, 28),
            has_labels=True,
            binary=False,
            continuous=False,
            description="Fashion-MNIST clothing images, grey levels (Zalando Research)",
            files=_idx_files(
                _FASHION_URLS,
                [
                    (
                        "train-images-idx3-ubyte.gz",
                        26421880,
                        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    ),
                    (
                        "train-labels-idx1-ubyte.gz",
                        29515,
                        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    ),
                    (
                        "t10k-images-idx3-ubyte.gz",
                        4422102,
                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    ),
                    (
                        "t10k-labels-idx1-ubyte.gz",
                        5148,
                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    ),
                ],
            ),
            split_sizes=(50000, 10000, 10000),
        ),
        DatasetInfo(
            "binarized_mnist",
            (1, 28, 28),
            has_labels=False,
            binary=True,
            continuous=False,
            description="MNIST with the fixed binarization of Larochelle & Murray (2011)",
            files=(
                _amat(
                    "train",
                    78400000,
                    "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
                    2196952,
                    "af247bd6075cf9adc4715459dcd5f13eaa99a2c92d8d81379a05da94770b6c0e",
                ),
                _amat(
                    "valid",
                    15680000,
                    "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
                    439620,
                    "533b71bc0198f4d73c54ae5fe6c96fc08dc3cf1b3fae24c5521dbc0452507e38",
                ),
                _amat(
                    "test",
                    15680000,
                    "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
                    416802,
                    "32a3c54d03504632bf9f131b4a148c7567aa6fc87da017049b044bdc14c2a0f2",
                ),
            ),
            split_sizes=(50000, 10000, 10000),
        ),
        DatasetInfo(
            "frey_face",
            (1, 28, 20),
            has_labels=False,
            binary=False,
            continuous=True,
            description="Frey Face: 1965 video frames of one face, 28x20 grey (used in the AEVB paper)",
            files=(
                FileInfo(
                    "frey_rawface.mat",
                    "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
                    1100584,
                    ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",),
                ),
            ),
            split_sizes=(1565, 200, 200),
            split_version=2,  # 1: the video's last 200 frames were the test set, 200 before them valid
        ),
    ]
}


@dataclass
class Split:
    """One split of a data set, as loaded."""

    name: str  # dataset name
    split: str  # "train", "valid" or "test"
    images: torch.Tensor  # float32 (N, C, H, W) in [0, 1], contiguous, CPU
    labels: torch.Tensor | None  # int64 (N,), or None for unlabelled data sets
    info: DatasetInfo

    def __len__(self) -> int:
        return len(self.images)


def get_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise VaelabError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$VAELAB_DATA_DIR``, else ``~/.cache/vaelab``."""
    chosen = data_dir if data_dir is not None else os.environ.get("VAELAB_DATA_DIR") or "~/.cache/vaelab"
    return Path(chosen).expanduser().absolute()


def local_file(root: Path, dataset: str, f: FileInfo) -> tuple[Path, FileInfo]:
    """Where the local copy of ``f`` is and which form it has: the first form present,
    else the primary form's path (which then does not exist)."""
    for variant in f.variants:
        path = root / dataset / variant.name
        if path.exists():
            return path, variant
    return root / dataset / f.name, f


def fix_hint(path: Path) -> str:
    """What to do about a bad data file, for error messages."""
    dataset = path.parent.name
    if dataset in DATASETS:
        return f"delete it and run `vaelab data download {dataset}`"
    return "delete it and download it again"

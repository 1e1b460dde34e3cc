"""Loading the splits of the benchmark data sets as tensors, binarization, and a status report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from .custom import is_custom, load_custom_split
from .download import fetch_file, read_verified
from .formats import read_amat, read_idx, read_mat_uint8
from .registry import DATASETS, SPLITS, DatasetInfo, get_info, local_file, resolve_data_dir


@dataclass
class Split:
    name: str                    # dataset name
    split: str                   # "train", "valid" or "test"
    images: torch.Tensor         # float32 (N, C, H, W) in [0, 1], contiguous, CPU
    labels: torch.Tensor | None  # int64 (N,), or None for unlabelled data sets
    info: DatasetInfo

    def __len__(self) -> int:
        return len(self.images)


def _file_bytes(info: DatasetInfo, file_name: str, root: Path, download: bool) -> tuple[Path, bytes]:
    """Path and verified contents of one of the data set's files, downloading it if allowed."""
    f = info.file(file_name)
    path, variant = local_file(root, info.name, f)
    if not path.exists():
        if not download:
            raise VaelabError(f"{path} is missing; run `vaelab data download {info.name}`, or pass --data-dir "
                              f"(or set VAELAB_DATA_DIR) to a folder that has {info.name}/{f.name}")
        path, variant = fetch_file(info, f, root)
    return path, read_verified(path, variant, info.name)


def _idx_pair(info: DatasetInfo, prefix: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    images_path, images = _file_bytes(info, f"{prefix}-images-idx3-ubyte.gz", root, download)
    labels_path, labels = _file_bytes(info, f"{prefix}-labels-idx1-ubyte.gz", root, download)
    images, labels = read_idx(images_path, images), read_idx(labels_path, labels)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise VaelabError(f"{images_path} and {labels_path} do not form an image/label pair "
                          f"(shapes {images.shape} and {labels.shape}); delete them and run "
                          f"`vaelab data download {info.name}`")
    return images, labels


def _amat(info: DatasetInfo, split: str, root: Path, download: bool) -> np.ndarray:
    return read_amat(*_file_bytes(info, f"binarized_mnist_{split}.amat", root, download))


def load_split(name: str, split: str = "train", data_dir=None, *, download: bool = True,
               full_train: bool = False, image_size=None) -> Split:
    """Load one split of a data set, downloading missing files if ``download``.

    ``folder:PATH`` and ``npy:PATH`` are your own images (resized to ``image_size`` = "HxW" if
    given), split by a fixed permutation: see :mod:`vaelab.data.custom`.

    Splits (``full_train`` only changes "train"):
    - mnist, fashion_mnist: train = first 50000 training images, valid = last 10000, test = the
      10000 test images. full_train: train = all 60000, so valid is then part of train.
    - binarized_mnist: its own 50000/10000/10000 files. full_train: train = train + valid
      (60000, as in the IWAE paper), so valid is then part of train.
    - frey_face: 1965 frames; train = first 1565, valid = next 200, test = last 200.
      full_train: train = first 1765 (train + valid).
    Every file's size and sha256 are checked before it is parsed. Pixels are scaled to [0, 1]
    (x / 255; binarized_mnist is already 0/1).
    """
    if is_custom(name):
        return load_custom_split(name, split, full_train=full_train, image_size=image_size)
    if image_size is not None:
        raise VaelabError(f"--image-size applies to folder:PATH and npy:PATH data only, not {name}")
    info = get_info(name)
    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    root = resolve_data_dir(data_dir)
    n_train, n_valid, _ = info.split_sizes
    labels = None

    if info.name in ("mnist", "fashion_mnist"):
        images, labels = _idx_pair(info, "t10k" if split == "test" else "train", root, download)
        if split != "test":  # the last n_valid training images are the validation set
            rows = slice(-n_valid, None) if split == "valid" else slice(None if full_train else n_train)
            images, labels = images[rows], labels[rows]
    elif info.name == "binarized_mnist":
        images = _amat(info, split, root, download)
        if split == "train" and full_train:
            images = np.concatenate([images, _amat(info, "valid", root, download)])
    elif info.name == "frey_face":
        path, raw = _file_bytes(info, "frey_rawface.mat", root, download)
        ff = read_mat_uint8(path, "ff", raw)  # uint8 (560, 1965)
        images = ff.T.reshape(-1, *info.shape[1:])  # one 28x20 image (row-major) per column of ff
        rows = {"train": slice(n_train + n_valid if full_train else n_train),
                "valid": slice(n_train, n_train + n_valid),
                "test": slice(n_train + n_valid, None)}[split]
        images = images[rows]
    else:  # pragma: no cover - every registry entry has a branch above
        raise AssertionError(info.name)

    # astype copies into a fresh contiguous, writable array (the parsed arrays view read-only bytes).
    x = torch.from_numpy(images.astype(np.float32)).reshape(-1, *info.shape)
    if not info.binary:
        x.div_(255)
    y = torch.from_numpy(labels.astype(np.int64)) if labels is not None else None
    return Split(info.name, split, x, y, info)


BINARIZE_MODES = ("none", "static", "dynamic")


def binarize(images: torch.Tensor, mode: str, seed: int) -> torch.Tensor:
    """Turn grey values in [0, 1] into Bernoulli targets.

    - "none": unchanged; the grey values themselves are the targets (as pytorch/examples).
    - "static": one fixed Bernoulli draw, from a torch.Generator seeded with ``seed``: the same
      seed gives the same bits (for a given torch version). Use a different seed per split so that
      equally sized splits do not get correlated draws.
    - "dynamic": unchanged; the trainer draws fresh bits every epoch from these grey values.
    Data that is already binary (only 0s and 1s) is returned unchanged in every mode.
    """
    if mode not in BINARIZE_MODES:
        raise VaelabError(f"unknown binarization mode {mode!r}; choose one of: {', '.join(BINARIZE_MODES)}")
    if mode != "static" or ((images == 0) | (images == 1)).all():
        return images
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=generator)


def dataset_status(data_dir=None) -> list[dict]:
    """Which files of each data set are present and verified (size and sha256) in the data folder.

    One dict per data set: name, description, ready (all files verified), files: one dict per file
    with name, path, present, verified, problem (the error message, or None).
    """
    root = resolve_data_dir(data_dir)
    report = []
    for info in DATASETS.values():
        files = []
        for f in info.files:
            path, variant = local_file(root, info.name, f)
            problem = None
            try:
                read_verified(path, variant, info.name)
            except VaelabError as e:
                problem = str(e)
            files.append({"name": variant.name, "path": str(path), "present": path.exists(),
                          "verified": problem is None, "problem": problem})
        report.append({"name": info.name, "description": info.description,
                       "ready": all(f["verified"] for f in files), "files": files})
    return report


def format_status(data_dir=None) -> str:
    """A table of :func:`dataset_status` for ``vaelab data list``."""
    root = resolve_data_dir(data_dir)
    status = dataset_status(root)
    width = max(len(f["name"]) for d in status for f in d["files"])
    lines = [f"data folder: {root}"]
    for d in status:
        lines.append(f"\n{d['name']}: {'ready' if d['ready'] else 'NOT READY'} - {d['description']}")
        for f in d["files"]:
            state = "ok" if f["verified"] else "CORRUPT (size or sha256 mismatch)" if f["present"] else "missing"
            lines.append(f"  {f['name']:<{width}}  {state}")
    missing = [d["name"] for d in status if not d["ready"]]
    if missing:
        lines.append(f"\nto fetch: vaelab data download NAME  (not ready: {', '.join(missing)})")
    return "\n".join(lines)

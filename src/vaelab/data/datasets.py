"""Loading the splits of the benchmark data sets as tensors, binarization, and a status report."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from ..registry import DATASETS as SOURCES
from ..registry import register_dataset
from .custom import is_custom, load_custom_split, split_permutation
from .download import fetch_file, read_verified
from .formats import read_amat, read_idx, read_mat_uint8
from .registry import DATASETS, SPLITS, DatasetInfo, Split, local_file, resolve_data_dir


def _file_bytes(info: DatasetInfo, file_name: str, root: Path, download: bool) -> tuple[Path, bytes]:
    """Path and verified contents of one of the data set's files, downloading it if allowed."""
    f = info.file(file_name)
    path, variant = local_file(root, info.name, f)
    if not path.exists():
        if not download:
            raise VaelabError(
                f"{path} is missing; run `vaelab data download {info.name}`, or pass --data-dir "
                f"(or set VAELAB_DATA_DIR) to a folder that has {info.name}/{f.name}"
            )
        path, variant = fetch_file(info, f, root)
    return path, read_verified(path, variant, info.name)


def _idx_pair(info: DatasetInfo, prefix: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    images_path, images_raw = _file_bytes(info, f"{prefix}-images-idx3-ubyte.gz", root, download)
    labels_path, labels_raw = _file_bytes(info, f"{prefix}-labels-idx1-ubyte.gz", root, download)
    images, labels = read_idx(images_path, images_raw), read_idx(labels_path, labels_raw)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise VaelabError(
            f"{images_path} and {labels_path} do not form an image/label pair "
            f"(shapes {images.shape} and {labels.shape}); delete them and run "
            f"`vaelab data download {info.name}`"
        )
    return images, labels


def _amat(info: DatasetInfo, split: str, root: Path, download: bool) -> np.ndarray:
    return read_amat(*_file_bytes(info, f"binarized_mnist_{split}.amat", root, download))


class DataSource(ABC):
    """A data set by name (`--dataset NAME`): its images per split. Register your own with

        @vaelab.register_dataset("faces")
        class Faces(vaelab.data.DataSource):
            shape = (1, 64, 64)
            def load(self, split, data_dir, full_train): return images, labels

    `load` returns images (N, C, H, W), uint8 in 0..255 (0/1 for a `binary` set) or floats in
    [0, 1], and labels (N,) or None. Capabilities: `binary` (pixels are exactly 0 or 1),
    `continuous` (grey values meant for a continuous decoder, never binarized), `has_labels`.
    Raise `split_version` when `load` starts dealing the examples into splits differently: runs
    trained under the old version then refuse the new splits."""

    shape: tuple[int, int, int]
    description: str = ""
    binary: bool = False
    continuous: bool = False
    has_labels: bool = False
    split_version: int = 1

    @abstractmethod
    def load(self, split: str, data_dir: Path, full_train: bool): ...

    def info(self) -> DatasetInfo:
        name = getattr(type(self), "registered_name", type(self).__name__)
        return DatasetInfo(
            name,
            tuple(self.shape),
            self.has_labels,
            self.binary,
            self.continuous,
            self.description,
            files=(),
            split_sizes=(0, 0, 0),
            split_version=self.split_version,
        )


class OfficialDataset(DataSource):
    """One of the benchmark data sets with official, checksummed files (data/registry.py); the
    files are downloaded when missing (`download`)."""

    spec: DatasetInfo
    download = True

    def info(self) -> DatasetInfo:
        return self.spec

    def file(self, name: str, root: Path) -> tuple[Path, bytes]:
        return _file_bytes(self.spec, name, root, self.download)


class _IdxDigits(OfficialDataset):
    """mnist, fashion_mnist: train = first 50000 training images, valid = last 10000, test = the
    10000 test images; full_train: train = all 60000 (valid is then part of train)."""

    def load(self, split, root, full_train):
        n_train, n_valid, _ = self.spec.split_sizes
        images, labels = _idx_pair(self.spec, "t10k" if split == "test" else "train", root, self.download)
        if split != "test":  # the last n_valid training images are the validation set
            rows = slice(-n_valid, None) if split == "valid" else slice(None if full_train else n_train)
            images, labels = images[rows], labels[rows]
        return images, labels


class _Larochelle(OfficialDataset):
    """binarized_mnist: its own 50000/10000/10000 files; full_train: train = train + valid (60000,
    as in the IWAE paper)."""

    def load(self, split, root, full_train):
        images = _amat(self.spec, split, root, self.download)
        if split == "train" and full_train:
            images = np.concatenate([images, _amat(self.spec, "valid", root, self.download)])
        return images, None


class _Frey(OfficialDataset):
    """frey_face: 1965 frames of one video, dealt into splits in a fixed random order (the
    permutation custom data sets use): train = the first 1565 of that order, valid = the next 200,
    test = the last 200; full_train: train = the first 1765.

    Not in video order: consecutive frames are near-duplicates and the face drifts through the
    video, so a held-out block from its end is a different distribution (with the AEVB protocol
    the test bound of such a block was 200 nats below the training bound after one epoch). Kingma's
    own code shuffles the frames before holding some out (nips14-ssl, gpulearn_z_x.py)."""

    def load(self, split, root, full_train):
        n_train, n_valid, _ = self.spec.split_sizes
        path, raw = _file_bytes(self.spec, "frey_rawface.mat", root, self.download)
        ff = read_mat_uint8(path, "ff", raw)  # uint8 (560, 1965)
        frames = ff.T.reshape(-1, *self.spec.shape[1:])  # one 28x20 image (row-major) per column of ff
        rows = {
            "train": slice(n_train + n_valid if full_train else n_train),
            "valid": slice(n_train, n_train + n_valid),
            "test": slice(n_train + n_valid, None),
        }[split]
        return frames[split_permutation(len(frames)).numpy()[rows]], None


for _spec, _reader in (
    (DATASETS["mnist"], _IdxDigits),
    (DATASETS["fashion_mnist"], _IdxDigits),
    (DATASETS["binarized_mnist"], _Larochelle),
    (DATASETS["frey_face"], _Frey),
):
    register_dataset(_spec.name)(
        type(
            _reader.__name__.lstrip("_") + "_" + _spec.name,
            (_reader,),
            {
                "spec": _spec,
                "shape": _spec.shape,
                "description": _spec.description,
                "binary": _spec.binary,
                "continuous": _spec.continuous,
                "has_labels": _spec.has_labels,
            },
        )
    )


def split_version(name: str) -> int:
    """How data set `name` deals its examples into splits now (DatasetInfo.split_version),
    without loading it."""
    return 1 if is_custom(name) or name not in SOURCES else SOURCES[name]().info().split_version


def load_split(
    name: str, split: str = "train", data_dir=None, *, download: bool = True, full_train: bool = False, image_size=None
) -> Split:
    """Load one split of a data set, downloading missing official files if ``download``.

    Built-in sets and users' registered DataSources by name (see each class for its splits;
    ``full_train`` only changes "train"); ``folder:PATH`` and ``npy:PATH`` are your own images
    (resized to ``image_size`` = "HxW" if given), split by a fixed permutation: see
    :mod:`vaelab.data.custom`. Every official file's size and sha256 are checked before it is
    parsed. Pixels are scaled to [0, 1] (uint8 / 255; binary sets are 0/1 already).
    """
    if is_custom(name):
        return load_custom_split(name, split, full_train=full_train, image_size=image_size)
    if image_size is not None:
        raise VaelabError(f"--image-size applies to folder:PATH and npy:PATH data only, not {name}")
    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    source = SOURCES[name]()
    if isinstance(source, OfficialDataset):
        source.download = download
    info = source.info()
    images, labels = source.load(split, resolve_data_dir(data_dir), full_train)
    images = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    scale = images.dtype == np.uint8 and not info.binary
    # a fresh contiguous, writable float32 copy (the parsed arrays view read-only bytes)
    x = torch.from_numpy(images.astype(np.float32))
    if x.ndim in (2, 3) and x.shape[1:].numel() == math.prod(info.shape):
        x = x.reshape(-1, *info.shape)  # (N, H, W) grey, or flat rows (N, C*H*W)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(info.shape):
        raise VaelabError(
            f"data set {name} gave images of shape {tuple(x.shape)} for {split}; its DataSource "
            f"declares (N, {', '.join(map(str, info.shape))})"
        )
    if scale:
        x.div_(255)
    y = torch.from_numpy(np.asarray(labels).astype(np.int64)) if labels is not None else None
    return Split(name, split, x, y, info)


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
            files.append(
                {
                    "name": variant.name,
                    "path": str(path),
                    "present": path.exists(),
                    "verified": problem is None,
                    "problem": problem,
                }
            )
        report.append(
            {
                "name": info.name,
                "description": info.description,
                "ready": all(f["verified"] for f in files),
                "files": files,
            }
        )
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

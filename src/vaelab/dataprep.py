"""From a data config to the tensors a model sees.

Binarization decides the Bernoulli targets:
- none:    grey values in [0, 1] are the targets (as pytorch/examples does);
- static:  one fixed Bernoulli draw per split, seeded by `data.binarize_seed`;
- dynamic: training draws fresh bits for every batch, so every epoch sees a new draw (as the IWAE
           paper); evaluation uses the fixed draw of `static`, so figures are reproducible and
           comparable across epochs and runs.
Data that is already binary (binarized_mnist) or continuous (frey_face) is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import DataConfig
from .data import binarize, load_split
from .data.datasets import split_version
from .errors import VaelabError


@dataclass
class Inputs:
    images: torch.Tensor  # float32 (N, C, H, W)
    labels: torch.Tensor | None
    dynamic: bool  # draw fresh Bernoulli targets per batch from these grey values
    split_version: int  # how the data set dealt its examples into splits (DatasetInfo.split_version)


def eval_split_for(cfg: DataConfig, watch: str = "auto") -> str:
    """The split watched during training: `watch`, or for "auto" valid, and test when valid is
    part of training."""
    if watch != "auto":
        return watch
    return "test" if cfg.full_train else "valid"


def split_changed(cfg: DataConfig, now: int | None = None) -> bool:
    """Whether a trained run's data settings record another split version than the one its data
    set is dealt by now (`now`, DatasetInfo.split_version, else looked up without loading the
    data). False for a run not trained yet."""
    if cfg.split_version is None:
        return False
    return cfg.split_version != (split_version(cfg.dataset) if now is None else now)


def load_inputs(cfg: DataConfig, split: str, training: bool = False, expect_shape=None) -> Inputs:
    """The images of a split as the model sees them. `expect_shape` (C, H, W), a trained model's
    input shape, and `cfg.split_version`, the way its data set was split when it was trained (None
    for a run not trained yet), turn data that changed since training into one clear error."""
    s = load_split(cfg.dataset, split, cfg.data_dir, full_train=cfg.full_train, image_size=cfg.image_size)
    version = s.info.split_version
    if split_changed(cfg, version):
        raise VaelabError(
            f"this run was trained on {cfg.dataset} as split by vaelab's split version {cfg.split_version}; "
            f"this vaelab deals its examples into train/valid/test differently (version {version}), so the "
            f"{split} split is not the one the run was trained and checked against; train a new run"
        )
    if expect_shape is not None and tuple(s.images.shape[1:]) != tuple(expect_shape):
        got, want = ("x".join(map(str, shape)) for shape in (s.images.shape[1:], expect_shape))
        raise VaelabError(
            f"the data {cfg.dataset} now holds images of {got} (CxHxW), but this run was trained on "
            f"{want}: the data changed after training; restore it, or train a new run on it"
        )
    if s.info.binary or s.info.continuous or cfg.binarize == "none":
        return Inputs(s.images, s.labels, False, version)
    if cfg.binarize == "dynamic" and training:
        return Inputs(s.images, s.labels, True, version)
    # A different stream per split, so valid and test bits are independent draws.
    offset = {"train": 0, "valid": 1, "test": 2}[split]
    return Inputs(binarize(s.images, "static", cfg.binarize_seed * 3 + offset), s.labels, False, version)

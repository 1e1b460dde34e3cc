"""The conditional VAE (Sohn, Lee & Yan 2015, "Learning Structured Output Representation using
Deep Conditional Generative Models"; Kingma et al. 2014's M2 without its classifier): a class
label y conditions both halves,

    q(z | x, y)        the base family's encoder on x, plus a learned embedding of y added to its
                       output (the parameters of q), so the posterior moves with the class;
    p(x | z, y)        the base family's decoder on [z, one-hot(y)];
    p(z)               the latent family's prior (N(0, I) for the Gaussian), independent of y,

so every bound it reports is a bound on -log p(x | y), named so by the evaluation. The class count
comes from the training labels (model.n_classes, recorded in the run). `--model cvae --option
base=mlp|conv` picks the network the conditioning wraps; any latent family and likelihood work.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import VaelabError
from ..parts import NetworkFamily
from ..registry import NETWORKS, Option, register_network

BASE = Option(str, "mlp", "the network family the condition wraps (mlp, conv, ...)")


def _classes(cfg: Any) -> int:
    if not cfg.n_classes:
        raise VaelabError("--model cvae needs labelled data: its class count comes from the training labels")
    return int(cfg.n_classes)


def _base(cfg: Any) -> Any:
    name = BASE.check(cfg.options.get("base", BASE.default), "option base")
    if name == "cvae":
        raise VaelabError("--option base=cvae would wrap the conditional network in itself; pick mlp or conv")
    return NETWORKS[name]


class ConditionalEncoder(nn.Module):
    """params = base(x) + E[y]: the base encoder's output shifted by a learned vector per class."""

    def __init__(self, base: nn.Module, n_classes: int, n_out: int):
        super().__init__()
        self.base = base
        self.embed = nn.Embedding(n_classes, n_out)
        nn.init.zeros_(self.embed.weight)  # starts as the unconditional encoder

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.embed(y)


class ConditionalDecoder(nn.Module):
    """The base decoder on [z, one-hot(y)]."""

    def __init__(self, base: nn.Module, n_classes: int):
        super().__init__()
        self.base, self.n_classes = base, n_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(y, self.n_classes).to(z.dtype)
        return self.base(torch.cat([z, onehot], -1))


@register_network("cvae")
class ConditionalNetwork(NetworkFamily):
    conditional = True
    options = {"base": BASE}

    @staticmethod
    def encoder(cfg: Any, input_shape: tuple[int, int, int], n_out: int) -> nn.Module:
        return ConditionalEncoder(_base(cfg).encoder(cfg, input_shape, n_out), _classes(cfg), n_out)

    @staticmethod
    def decoder(cfg: Any, n_in: int, output_shape: tuple[int, int, int], n_params: int) -> nn.Module:
        k = _classes(cfg)
        return ConditionalDecoder(_base(cfg).decoder(cfg, n_in + k, output_shape, n_params), k)

"""Gated dense networks (Dauphin et al. 2017), as the VampPrior paper's models use them
(Tomczak & Welling 2018; their code's GatedDense): each hidden layer is h = (W x + b) * sigmoid(V x + c),
no other non-linearity. `--model gated --hidden 300,300`; the decoder mirrors the encoder and ends in
a linear layer to the likelihood's parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..parts import NetworkFamily
from ..registry import register_network


class GatedDense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def _stack(sizes: list[int]) -> list[nn.Module]:
    return [GatedDense(a, b) for a, b in zip(sizes[:-1], sizes[1:])]


@register_network("gated")
class Gated(NetworkFamily):
    per_pixel_output = True

    @staticmethod
    def encoder(cfg: Any, input_shape, n_out):
        sizes = [math.prod(input_shape), *cfg.hidden]
        return nn.Sequential(nn.Flatten(), *_stack(sizes), nn.Linear(sizes[-1], n_out))

    @staticmethod
    def decoder(cfg: Any, n_in, output_shape, n_params):
        sizes = [n_in, *reversed(cfg.hidden)]
        return nn.Sequential(*_stack(sizes), nn.Linear(sizes[-1], n_params * math.prod(output_shape)))

    @staticmethod
    def set_output_bias(decoder, bias):
        with torch.no_grad():
            decoder[-1].bias[: bias.numel()] = bias.to(decoder[-1].bias)

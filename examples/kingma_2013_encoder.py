"""A network of your own: the encoder of Kingma's code of the AEVB paper's time (anglepy,
October 2013, `models/MLBN_Inverse.py`), whose log-variance output is damped,

    log sigma^2 = 0.1 W h + b,    W and b starting at 0,

so that q(z|x) starts as N(mu, I) for every x and its variances move a tenth as fast as its
means (under Adagrad each weight's step is about the step size, whatever its gradient's scale).
vaelab's `mlp` computes log sigma^2 = W h + b with W and b drawn like every other weight. The
decoder and everything else is `mlp`'s.

$ vaelab train --plugin examples/kingma_2013_encoder.py --preset aevb-frey --model mlp-damped-logvar --epochs 5666 --out runs/frey-damped-logvar

(5666 epochs of 1765 frames are 10^7 examples.)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

import vaelab
from vaelab.networks import MLP, mlp
from vaelab.registry import ACTIVATIONS

LOGVAR_FACTOR = 0.1  # MLBN_Inverse.logvar_factor


class DampedLogvarEncoder(nn.Module):
    """Hidden layers as `mlp`'s, then mu = W_mu h + b_mu and log sigma^2 = 0.1 W h + b. W and b
    are plain parameters, not an nn.Linear, so the model's --init leaves them at 0."""

    def __init__(self, input_shape, n_out: int, hidden: list[int], activation: str):
        super().__init__()
        dim = n_out // 2
        self.hidden = nn.Sequential(mlp([math.prod(input_shape), *hidden], activation), ACTIVATIONS[activation]())
        self.mean = nn.Linear(hidden[-1], dim)
        self.logvar_weight = nn.Parameter(torch.zeros(dim, hidden[-1]))
        self.logvar_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        h = self.hidden(x.flatten(1))
        logvar = LOGVAR_FACTOR * F.linear(h, self.logvar_weight) + self.logvar_bias
        return torch.cat([self.mean(h), logvar], dim=-1)


@vaelab.register_network("mlp-damped-logvar")
class MLPDampedLogvar(MLP):
    """`mlp` with Kingma's 2013 encoder (a Gaussian posterior: [mu, log sigma^2] per dimension)."""

    @staticmethod
    def encoder(cfg, input_shape, n_out):
        return DampedLogvarEncoder(input_shape, n_out, cfg.hidden, cfg.activation)

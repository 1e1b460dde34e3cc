"""Networks map tensors to tensors; the latent family and the likelihood give them meaning.

An encoder network takes images (B, C, H, W) and returns (B, n_out) parameters of q(z|x).
A decoder network takes latents (B, n_in) and returns (B, n_out) parameters of p(x|z), laid
out channel-block by channel-block (for two parameters per pixel: all first, then all second),
which is also how a (B, 2C, H, W) convolutional output flattens.
"""

from __future__ import annotations

import math

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    def __init__(self, input_shape, n_out: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = mlp([math.prod(input_shape), *hidden, n_out], activation)

    def forward(self, x):
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    def __init__(self, n_in: int, output_shape, n_params: int, hidden: list[int], activation: str):
        super().__init__()
        # The decoder mirrors the encoder: hidden sizes in reverse order.
        self.net = mlp([n_in, *reversed(hidden), n_params * math.prod(output_shape)], activation)

    def forward(self, z):
        return self.net(z)


# name -> (encoder class, decoder class)
NETWORKS = {"mlp": (MLPEncoder, MLPDecoder)}

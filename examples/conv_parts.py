"""A network of your own, registered from outside vaelab: a small convolutional encoder and
decoder with batch normalisation and a residual block, trained from the command line.

$ vaelab train --plugin examples/conv_parts.py --model resconv --dataset mnist --latent-dim 16 --epochs 5 --out runs/resconv

Everything else works on the run as on any other: `vaelab evaluate runs/resconv --iw-samples`,
`vaelab plot runs/resconv`, `vaelab train --resume runs/resconv --epochs 10` (the plugin is
recorded in runs/resconv/config.json and imported again by each of them).

A network family builds two torch modules from the model's config: the encoder maps images
(B, C, H, W) to the n_out parameters of q(z|x); the decoder maps latents (B, n_in) to the
likelihood's parameters for every pixel, flat, parameter-block by parameter-block.
"""

import math

from torch import nn

import vaelab
from vaelab.parts import NetworkFamily


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return nn.functional.relu(x + self.body(x))


class Encoder(nn.Module):
    def __init__(self, input_shape, n_out: int, width: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),  # H/2
            Residual(width),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),  # H/4
            nn.Flatten(),
            nn.Linear(2 * width * math.ceil(h / 4) * math.ceil(w / 4), n_out),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, n_in: int, output_shape, n_params: int, width: int = 32):
        super().__init__()
        c, h, w = output_shape
        self.start = (2 * width, math.ceil(h / 4), math.ceil(w / 4))
        self.fc = nn.Sequential(nn.Linear(n_in, math.prod(self.start)), nn.ReLU())
        self.net = nn.Sequential(
            nn.Upsample(size=(math.ceil(h / 2), math.ceil(w / 2))),
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            Residual(width),
            nn.Upsample(size=(h, w)),
            nn.Conv2d(width, n_params * c, 3, padding=1),
        )

    def forward(self, z):
        return self.net(self.fc(z).view(-1, *self.start)).flatten(1)


@vaelab.register_network("resconv")
class ResConv(NetworkFamily):
    """Convolutions with a residual block; `--channels` sets the width (its first entry)."""

    @staticmethod
    def encoder(cfg, input_shape, n_out):
        return Encoder(input_shape, n_out, width=cfg.channels[0])

    @staticmethod
    def decoder(cfg, n_in, output_shape, n_params):
        return Decoder(n_in, output_shape, n_params, width=cfg.channels[0])

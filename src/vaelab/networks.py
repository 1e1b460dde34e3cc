"""Networks map tensors to tensors; the latent family and the likelihood give them meaning.

An encoder network takes images (B, C, H, W) and returns (B, n_out) parameters of q(z|x).
A decoder network takes latents (B, n_in) and returns (B, n_out) parameters of p(x|z), laid
out channel-block by channel-block (for two parameters per pixel: all first, then all second),
which is also how a (B, 2C, H, W) convolutional output flattens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .parts import NetworkFamily
from .registry import ACTIVATIONS, INITS, register_init, register_network

ACTIVATIONS.add("tanh", nn.Tanh)
ACTIVATIONS.add("relu", nn.ReLU)
ACTIVATIONS.add("softplus", nn.Softplus)  # the default nonlinearity of Kingma's code of the AEVB paper's time (anglepy)
INITS.add("torch", lambda net: None)  # keeps PyTorch's default


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


@register_init("glorot")
def init_glorot(net: nn.Module) -> None:
    """Glorot & Bengio (2010) uniform weights, U(+-sqrt(6 / (fan_in + fan_out))), zero biases: the
    initialisation of the IWAE paper (section 5)."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@register_init("normal")
def init_normal(net: nn.Module, std: float = 0.01) -> None:
    """Every weight and bias from N(0, std^2): the AEVB paper's "random sampling from N(0, 0.01)"
    (section 5), with 0.01 the standard deviation as in Kingma's code of the time."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            for p in m.parameters(recurse=False):
                nn.init.normal_(p, 0.0, std)


class MLPEncoder(nn.Module):
    def __init__(self, input_shape, n_out: int, hidden: list[int], activation: str, channels=()):
        super().__init__()
        self.net = mlp([math.prod(input_shape), *hidden, n_out], activation)

    def forward(self, x):
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    def __init__(self, n_in: int, output_shape, n_params: int, hidden: list[int], activation: str, channels=()):
        super().__init__()
        # The decoder mirrors the encoder: hidden sizes in reverse order.
        self.net = mlp([n_in, *reversed(hidden), n_params * math.prod(output_shape)], activation)

    def forward(self, z):
        return self.net(z)


# -- convolutional ------------------------------------------------------------------------------
#
# Every shape comes from the input: a plan of feature-map sizes is computed once from (H, W) and
# shared by the encoder and the decoder, so the decoder's transposed convolutions land on
# exactly (H, W) for any size (28x20 -> 14x10 -> 7x5 and back) with no cropping or padding.

KERNEL = 3  # 3x3 kernels, padding 1: a stride-1 layer keeps the size, a stride-2 layer gives ceil(n / 2)


def conv_plan(size: tuple[int, int], n_layers: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Feature-map sizes [(H, W), after layer 1, ...] and per-layer strides for `n_layers` 3x3
    convolutions. A side is halved (stride 2) while it is larger than 2, then kept (stride 1), so
    small or narrow images never shrink to nothing."""
    sizes: list[tuple[int, int]] = [(size[0], size[1])]
    strides: list[tuple[int, int]] = []
    for _ in range(n_layers):
        (h, w) = sizes[-1]
        stride = (2 if h > 2 else 1, 2 if w > 2 else 1)
        strides.append(stride)
        sizes.append(((h - 1) // stride[0] + 1, (w - 1) // stride[1] + 1))  # ceil(n / s)
    return sizes, strides


class ConvEncoder(nn.Module):
    """One 3x3 convolution per entry of `channels` (stride 2 while the map is larger than 2),
    each followed by the activation; then fully connected layers `hidden` (may be empty) to the
    n_out parameters of q(z|x). As the TensorFlow CVAE tutorial and the Keras VAE example."""

    def __init__(self, input_shape, n_out: int, hidden: list[int], activation: str, channels=(32, 64)):
        super().__init__()
        c, h, w = input_shape
        sizes, strides = conv_plan((h, w), len(channels))
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip([c, *channels[:-1]], channels, strides):
            layers += [nn.Conv2d(c_in, c_out, KERNEL, stride, KERNEL // 2), ACTIVATIONS[activation]()]
        self.conv = nn.Sequential(*layers)
        self.feature_shape = (channels[-1], *sizes[-1])
        self.head = mlp([math.prod(self.feature_shape), *hidden, n_out], activation)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    """The encoder mirrored: fully connected layers (reversed `hidden`) to the encoder's last
    feature map, then one 3x3 transposed convolution per entry of `channels` in reverse, the
    last giving n_params * C maps of exactly the input size: (B, n_params * C, H, W), flattened,
    which is the channel-block layout the likelihoods expect."""

    def __init__(self, n_in: int, output_shape, n_params: int, hidden: list[int], activation: str, channels=(32, 64)):
        super().__init__()
        c, h, w = output_shape
        sizes, strides = conv_plan((h, w), len(channels))
        self.feature_shape = (channels[-1], *sizes[-1])
        self.fc = nn.Sequential(
            mlp([n_in, *reversed(hidden), math.prod(self.feature_shape)], activation), ACTIVATIONS[activation]()
        )
        c_ins = list(reversed(channels))
        c_outs = [*reversed(channels[:-1]), n_params * c]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(c_ins, c_outs)):
            layer = len(channels) - 1 - i  # undo encoder layer `layer`: sizes[layer+1] -> sizes[layer]
            stride, src, dst = strides[layer], sizes[layer + 1], sizes[layer]
            # a transposed 3x3 conv with padding 1 gives (n - 1) * s + 1 + output_padding
            extra = (dst[0] - ((src[0] - 1) * stride[0] + 1), dst[1] - ((src[1] - 1) * stride[1] + 1))
            assert all(0 <= e < s for e, s in zip(extra, stride)), (dst, src, stride)
            layers.append(nn.ConvTranspose2d(c_in, c_out, KERNEL, stride, KERNEL // 2, output_padding=extra))
            if i < len(channels) - 1:
                layers.append(ACTIVATIONS[activation]())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z):
        return self.deconv(self.fc(z).view(-1, *self.feature_shape)).flatten(1)


@register_network("mlp")
class MLP(NetworkFamily):
    """Fully connected: `hidden` sizes with `activation` between them; the decoder mirrors the
    encoder (hidden sizes in reverse)."""

    per_pixel_output = True

    @staticmethod
    def encoder(cfg, input_shape, n_out):
        return MLPEncoder(input_shape, n_out, cfg.hidden, cfg.activation)

    @staticmethod
    def decoder(cfg, n_in, output_shape, n_params):
        return MLPDecoder(n_in, output_shape, n_params, cfg.hidden, cfg.activation)

    @staticmethod
    def set_output_bias(decoder, bias):
        last = decoder.net[-1]
        with torch.no_grad():
            last.bias[: bias.numel()] = bias.to(last.bias)


@register_network("conv")
class Conv(NetworkFamily):
    """3x3 convolutions with `channels` (stride 2 while the map is larger than 2x2), then fully
    connected `hidden` layers; the decoder mirrors it with transposed convolutions."""

    @staticmethod
    def encoder(cfg, input_shape, n_out):
        return ConvEncoder(input_shape, n_out, cfg.hidden, cfg.activation, channels=cfg.channels)

    @staticmethod
    def decoder(cfg, n_in, output_shape, n_params):
        return ConvDecoder(n_in, output_shape, n_params, cfg.hidden, cfg.activation, channels=cfg.channels)

"""A network and a likelihood of your own: the Frey Face decoder of Kingma's later code, anglepy's
`VAE_Z_X` with `type_px='bounded01'` (added June 2014, after the AEVB paper; the model
nips14-ssl's gpulearn_z_x.py trains on Frey Face). The code of the paper's time (anglepy's
`DLVM`, April 2014, `type_px='sigmoidgaussian'`) computes the log-variance from the hidden layer,
as vaelab's `gaussian` likelihood on the `mlp` network does.

Each pixel is a mixture of a Gaussian, whose mean is a sigmoid of the decoder's output, and a
uniform density on [0, 1]:

    p(x_i | z) = w_i + (1 - w_i) N(x_i; sigmoid(W h + b)_i, exp(c_i)),    w_i = sigmoid(u_i)

for x_i in [0, 1] (the uniform part is 0 outside it; Kingma's code adds w_i for every x, which
is the same on images), where the log-variance c_i and the mixture logit u_i are one free
parameter per pixel, not outputs of the hidden layer (both start at 0). The paper's wording
("a decoder with Gaussian outputs, identical to the encoder, except that the means were
constrained to the interval (0, 1)") is that of vaelab's `gaussian`, with no uniform part.

$ vaelab train --plugin examples/kingma_frey_decoder.py --preset aevb-frey --model mlp-pixel-scale --likelihood gaussian-uniform --epochs 567 --out runs/frey-kingma-decoder

(567 epochs of 1765 frames are 10^6 examples; `--likelihood gaussian --model mlp-pixel-scale`
is the same decoder without the uniform part.)
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

import vaelab
from vaelab.likelihoods import LOG_2PI, GaussianLikelihood
from vaelab.networks import MLP, MLPDecoder


class PixelScaleDecoder(nn.Module):
    """The MLP decoder computes the first parameter of each pixel (the mean); every further
    parameter is one free value per pixel, the same for every z."""

    def __init__(self, means: nn.Module, n_free: int, n_pixels: int):
        super().__init__()
        self.means = means
        self.free = nn.Parameter(torch.zeros(n_free * n_pixels))

    def forward(self, z):
        mean = self.means(z)
        return torch.cat([mean, self.free.expand(*mean.shape[:-1], -1)], dim=-1)


@vaelab.register_network("mlp-pixel-scale")
class MLPPixelScale(MLP):
    """`mlp`, except that the decoder's second and later parameters per pixel are free per-pixel
    values rather than outputs of the hidden layer."""

    per_pixel_output = False

    @staticmethod
    def decoder(cfg, n_in, output_shape, n_params):
        n_pixels = math.prod(output_shape)
        return PixelScaleDecoder(MLPDecoder(n_in, output_shape, 1, cfg.hidden, cfg.activation), n_params - 1, n_pixels)


@vaelab.register_likelihood("gaussian-uniform")
class GaussianUniform(GaussianLikelihood):
    """log p(x_i|z) = log(w_i + (1 - w_i) N(x_i; mean_i, var_i)): parameters [mean logit,
    log-variance, mixture logit] per pixel."""

    n_params = 3

    def split3(self, params):
        gauss, logit_w = params.split([2 * params.shape[-1] // 3, params.shape[-1] // 3], dim=-1)
        return gauss, logit_w

    def log_prob(self, x, params):
        gauss, logit_w = self.split3(params)
        mean, logvar = self.split(gauss)
        log_normal = -0.5 * (((x - mean) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI)
        log_uniform = torch.where((x >= 0) & (x <= 1), 0.0, -math.inf)  # Kingma's code: 0 for every x
        return torch.logaddexp(F.logsigmoid(logit_w) + log_uniform, F.logsigmoid(-logit_w) + log_normal).sum(-1)

    def mean(self, params):
        return super().mean(self.split3(params)[0])

    def sample(self, params, generator=None):
        gauss, logit_w = self.split3(params)
        x = super().sample(gauss, generator).clamp(0, 1)
        uniform = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        pick = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < torch.sigmoid(logit_w)
        return torch.where(pick, uniform, x)

    def distribution(self, params):
        return None

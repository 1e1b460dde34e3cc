"""The VAE: an encoder network and a latent family make q(z|x); a decoder network and a
likelihood make p(x|z); the prior comes with the latent family.

    x --encoder--> params --latent--> q(z|x)        z --decoder--> params --likelihood--> p(x|z)

The parts are picked by name from registries, so a new network, latent family or likelihood
is one entry in a dict, and nothing here or in the trainer changes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .latents import LATENTS
from .likelihoods import LIKELIHOODS
from .networks import NETWORKS

__all__ = ["VAE", "NETWORKS", "LATENTS", "LIKELIHOODS"]


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(cfg.input_shape)
        self.latent = LATENTS[cfg.latent](cfg.latent_dim)
        self.likelihood = LIKELIHOODS[cfg.likelihood]()
        encoder_cls, decoder_cls = NETWORKS[cfg.network]
        self.encoder = encoder_cls(self.input_shape, self.latent.n_params, cfg.hidden, cfg.activation)
        self.decoder = decoder_cls(self.latent.dim, self.input_shape, self.likelihood.n_params,
                                   cfg.hidden, cfg.activation)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the two halves -------------------------------------------------------------------
    def encode(self, x):
        """Parameters of q(z|x) for images x (B, C, H, W): for the Gaussian, [mu, logvar]."""
        return self.encoder(x)

    def decode(self, z):
        """Parameters of p(x|z) for latents z (..., D), flat over pixels: (..., n_params * P)."""
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*lead, -1)

    def log_px_given_z(self, x, dec_params):
        """log p(x|z) in nats, x (B, C, H, W), dec_params (..., B, n*P) -> (..., B)."""
        return self.likelihood.log_prob(x.flatten(1), dec_params)

    # -- what users ask of a trained model --------------------------------------------------
    def posterior(self, x):
        """q(z|x) as a torch.distributions object."""
        return self.latent.posterior(self.encode(x))

    def prior(self):
        return self.latent.prior(self.device)

    def decode_mean(self, z):
        """E[x|z] as images (B, C, H, W)."""
        return self.likelihood.mean(self.decode(z)).reshape(-1, *self.input_shape)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True):
        """n images from the model: z ~ p(z), then E[x|z] (mean=True) or a draw from p(x|z)."""
        z = self.latent.sample_prior(n, device=self.device, generator=generator)
        params = self.decode(z)
        x = self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
        return x.reshape(n, *self.input_shape)

    @torch.inference_mode()
    def reconstruct(self, x):
        """E[x|z] at the posterior mean of z: the model's reconstruction of x."""
        return self.decode_mean(self.latent.mean(self.encode(x)))

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_example(self) -> int:
        """Multiply-adds x 2 of one forward pass (linear layers), for benchmarks."""
        return sum(2 * m.in_features * m.out_features for m in self.modules()
                   if isinstance(m, nn.Linear))


def n_pixels(model: VAE) -> int:
    return math.prod(model.input_shape)

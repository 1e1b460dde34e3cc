"""Latent families: how encoder outputs become q(z|x), and the prior p(z).

A family works on a flat parameter tensor from the encoder and offers what the objectives
need: reparameterized samples, log-densities, the analytic KL, prior samples. The hot path
is plain tensor arithmetic; `posterior()` and `prior()` give torch.distributions objects for
users who want the full protocol.
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D

LOG_2PI = math.log(2 * math.pi)


class GaussianLatent:
    """q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.n_params = 2 * dim

    @staticmethod
    def split(params):
        mu, logvar = params.chunk(2, dim=-1)
        return mu, logvar

    def mean(self, params):
        return self.split(params)[0]

    def rsample(self, params, n: int):
        """n reparameterized samples z = mu + sigma * eps: shape (n, B, dim)."""
        mu, logvar = self.split(params)
        eps = torch.randn((n, *mu.shape), dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def log_q(self, z, params):
        """log q(z|x) summed over dimensions; z (..., B, dim) -> (..., B)."""
        mu, logvar = self.split(params)
        return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)

    def propose(self, params, n: int):
        """n samples from q(z|x) and their log-density: the importance-sampling proposal."""
        z = self.rsample(params, n)
        return z, self.log_q(z, params)

    def log_prior(self, z):
        return -0.5 * (z ** 2 + LOG_2PI).sum(-1)

    def kl(self, params):
        """KL(q(z|x) || N(0, I)) in closed form (AEVB paper, Appendix B): (B,)."""
        mu, logvar = self.split(params)
        return 0.5 * (mu ** 2 + torch.exp(logvar) - 1.0 - logvar).sum(-1)

    def sample_prior(self, n: int, device=None, generator=None):
        return torch.randn(n, self.dim, device=device, generator=generator)

    def posterior(self, params) -> D.Distribution:
        mu, logvar = self.split(params)
        return D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1)

    def prior(self, device=None) -> D.Distribution:
        zeros = torch.zeros(self.dim, device=device)
        return D.Independent(D.Normal(zeros, torch.ones_like(zeros)), 1)


LATENTS = {"gaussian": GaussianLatent}

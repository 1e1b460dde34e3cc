"""Priors p(z), apart from the posterior family, and the closed-form KLs of (family, prior) pairs.

    standard-normal       N(0, I) over R^dim (the Gaussian family's default)
    uniform-categorical   N independent uniform categoricals over one-hot codes (the categorical
                          family's default)

A prior is built for a posterior family (it takes the family's dimension). `--prior auto` picks
the family's `default_prior`. A learned prior (parts.Prior with `learned = True`) is an nn.Module
whose parameters train with the model.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import distributions as D

from .latents import LOG_2PI, CategoricalPosterior, GaussianPosterior
from .parts import PosteriorFamily, Prior, register_kl
from .registry import register_prior


@register_prior("standard-normal")
class StandardNormal(Prior):
    """p(z) = N(0, I)."""

    def __init__(self, cfg, posterior: PosteriorFamily):
        super().__init__()
        self.dim = posterior.dim

    def log_prob(self, z):
        return -0.5 * (z**2 + LOG_2PI).sum(-1)

    def sample(self, n, device=None, generator=None):
        return torch.randn(n, self.dim, device=device, generator=generator)

    def distribution(self, device=None):
        zeros = torch.zeros(self.dim, device=device)
        return D.Independent(D.Normal(zeros, torch.ones_like(zeros)), 1)


@register_kl(GaussianPosterior, StandardNormal)
def _kl_gaussian_standard_normal(q: GaussianPosterior, params, p: StandardNormal):
    """KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2) (AEVB, appendix B),
    per dimension: (B, D)."""
    mu, logvar = q.split(params)
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)


class CategoricalPrior(Prior):
    """N independent categoricals over one-hot codes laid end to end, (..., N*K)."""

    support = "one-hot"

    def __init__(self, cfg, posterior: PosteriorFamily):
        super().__init__()
        self.n, self.k = cfg.categorical_dims

    @abstractmethod
    def log_probs(self) -> torch.Tensor:
        """Normalised log-probabilities of each variable's classes, (N, K)."""

    def log_prob(self, z):
        return (z.unflatten(-1, (self.n, self.k)) * self.log_probs().to(z)).sum((-2, -1))

    def sample(self, n, device=None, generator=None):
        probs = self.log_probs().exp().to(device)
        idx = torch.multinomial(probs, n, replacement=True, generator=generator).T  # (n, N)
        return torch.nn.functional.one_hot(idx, self.k).float().flatten(-2)

    def distribution(self, device=None):
        return D.Independent(D.OneHotCategorical(logits=self.log_probs().to(device)), 1)


@register_prior("uniform-categorical")
class UniformCategorical(CategoricalPrior):
    """p(z) = K^-N: every class of every variable equally likely."""

    def log_probs(self):
        return torch.full((self.n, self.k), -math.log(self.k))

    def log_prob(self, z):  # the same value for every one-hot code, without touching z's entries
        return torch.full(z.shape[:-1], -self.n * math.log(self.k), dtype=z.dtype, device=z.device)

    def sample(self, n, device=None, generator=None):
        idx = torch.randint(self.k, (n, self.n), device=device, generator=generator)
        return torch.nn.functional.one_hot(idx, self.k).float().flatten(-2)


@register_kl(CategoricalPosterior, CategoricalPrior)
def _kl_categorical(q: CategoricalPosterior, params, p: CategoricalPrior):
    """KL(q || p) = sum_n sum_k q_nk (log q_nk - log p_nk), per variable n: (B, N)."""
    log_pi = q.log_probs(params)
    return (log_pi.exp() * (log_pi - p.log_probs().to(log_pi))).sum(-1)

"""A latent family of your own: a Laplace posterior q(z|x) = prod_d Laplace(mu_d, b_d) with the
standard normal prior. No closed-form KL is declared for this pair, so it trains with the
Monte-Carlo KL; asking for `--kl analytic` is a clear error.

$ vaelab train --plugin examples/laplace_latent.py --latent laplace --kl mc --dataset mnist --latent-dim 20 --epochs 5 --out runs/laplace

Its importance-sampled log-likelihood uses the same proposal: `vaelab evaluate runs/laplace
--iw-samples 1000`. To give the pair a closed form, declare it with
`@vaelab.register_kl(LaplacePosterior, SomePrior)`.
"""

import math

import torch
from torch import distributions as D

import vaelab
from vaelab.parts import PosteriorFamily


@vaelab.register_latent("laplace")
class LaplacePosterior(PosteriorFamily):
    """The encoder gives [mu, log b] for each of `latent_dim` dimensions; samples are
    reparameterized by inverse CDF: z = mu - b sign(u) log(1 - 2|u|), u ~ U(-1/2, 1/2)."""

    default_prior = "standard-normal"

    def __init__(self, cfg):
        super().__init__()
        self.dim = cfg.latent_dim
        self.n_params = 2 * self.dim

    def split(self, params):
        mu, log_b = params.chunk(2, dim=-1)
        return mu, log_b.clamp(-9.0, 9.0)

    def rsample(self, params, n):
        mu, log_b = self.split(params)
        u = torch.rand((n, *mu.shape), dtype=mu.dtype, device=mu.device) - 0.5
        u = u.clamp(-0.5 + 1e-7, 0.5 - 1e-7)
        return mu - log_b.exp() * u.sign() * torch.log1p(-2 * u.abs())

    def log_prob(self, z, params):
        mu, log_b = self.split(params)
        return (-(z - mu).abs() * torch.exp(-log_b) - log_b - math.log(2)).sum(-1)

    def mean(self, params):
        return self.split(params)[0]

    def named_params(self, params):
        mu, log_b = self.split(params)
        return {"mu": mu, "log_b": log_b}

    def distribution(self, params):
        mu, log_b = self.split(params)
        return D.Independent(D.Laplace(mu, log_b.exp()), 1)

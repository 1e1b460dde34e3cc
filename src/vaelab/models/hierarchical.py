"""Two stochastic layers (Burda, Grosse & Salakhutdinov 2016, section 5 and appendix C):

    proposal    q(z1, z2 | x) = q(z1 | x) q(z2 | z1)
    generative  p(x, z1, z2)  = p(z2) p(z1 | z2) p(x | z1),   p(z2) = N(0, I)

The model's encoder network gives q(z1|x) (x -> 200 -> 200 -> z1 in the paper); this module adds
the rest as two registered parts, so a two-layer model is `--latent gaussian-2layer` (its prior,
`gaussian-2layer`, comes with it):

- the posterior family holds the network z1 -> hidden -> [mu2, logvar2] of q(z2|z1);
- the prior holds the network z2 -> hidden -> [mu1, logvar1] of p(z1|z2);
- the decoder sees z1 only; pictures show the top layer z2, decoded through the mean of
  p(z1|z2).

z lays the layers side by side, (..., d1 + d2), so log w = log p(x|z1) + log p(z1|z2) + log p(z2)
- log q(z1|x) - log q(z2|z1) is the usual one. The settings: `--latent-dim` is d1 (100 in the
paper); `[model.options] z2_dim` (50) and `layer_hidden` (the deterministic layers between the
stochastic ones, [100, 100]). Gaussians have a linear mean and a linear log-variance (the
paper's exp-linear standard deviation, written as a log-variance).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import distributions as D

from ..errors import VaelabError
from ..latents import LOG_2PI
from ..networks import mlp
from ..parts import LatentView, PosteriorFamily, Prior
from ..registry import Option, register_latent, register_prior

# one declaration for the posterior and its prior, which share the layer sizes
OPTIONS = {
    "z2_dim": Option(int, 50, "dimensions of the top layer z2", ge=1),
    "layer_hidden": Option(list, [100, 100], "deterministic layers between z1 and z2", of=int, ge=1),
}


def _sizes(cfg: Any) -> tuple[int, int, list[int]]:
    z2, hidden = (OPTIONS[k].check(cfg.options.get(k, OPTIONS[k].default), f"option {k}") for k in OPTIONS)
    return cfg.latent_dim, z2, hidden


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


@register_latent("gaussian-2layer")
class TwoLayerPosterior(PosteriorFamily):
    """q(z1|x) from the encoder's [mu1, logvar1], then q(z2|z1) from a network of its own."""

    default_prior = "gaussian-2layer"
    options = OPTIONS

    def __init__(self, cfg: Any):
        super().__init__()
        self.d1, self.d2, hidden = _sizes(cfg)
        self.dim, self.n_params = self.d1 + self.d2, 2 * self.d1
        self.up = mlp([self.d1, *hidden, 2 * self.d2], cfg.activation)  # z1 -> [mu2, logvar2]

    def extra_repr(self) -> str:
        return f"z1={self.d1}, z2={self.d2}"

    def _q2(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu2, logvar2 = self.up(z1).chunk(2, dim=-1)
        return mu2, logvar2

    def rsample(self, params, n: int):
        mu1, logvar1 = params.chunk(2, dim=-1)
        z1 = mu1 + torch.exp(0.5 * logvar1) * torch.randn((n, *mu1.shape), dtype=mu1.dtype, device=mu1.device)
        mu2, logvar2 = self._q2(z1)
        z2 = mu2 + torch.exp(0.5 * logvar2) * torch.randn_like(mu2)
        return torch.cat([z1, z2], -1)  # (n, B, d1 + d2)

    def log_prob(self, z, params):
        z1, z2 = z.split([self.d1, self.d2], -1)
        mu1, logvar1 = params.chunk(2, dim=-1)
        return _log_normal(z1, mu1, logvar1) + _log_normal(z2, *self._q2(z1))

    def mean(self, params):
        """[E q(z1|x), E q(z2 | z1 = E q(z1|x))]: the means the pictures place."""
        mu1 = params.chunk(2, dim=-1)[0]
        return torch.cat([mu1, self._q2(mu1)[0]], -1)

    def named_params(self, params):
        mu1, logvar1 = params.chunk(2, dim=-1)
        mu2, logvar2 = self._q2(mu1)
        return {"mu1": mu1, "logvar1": logvar1, "mu2_at_mu1": mu2, "logvar2_at_mu1": logvar2}

    def distribution(self, params):
        return None  # a chain of two Gaussians has no torch.distributions form

    def to_decoder(self, z):
        return z[..., : self.d1]

    @property
    def decoder_dim(self) -> int:
        return self.d1

    @property
    def view(self) -> LatentView:
        return LatentView("continuous", self.d2)  # the top layer

    def view_to_latent(self, v: torch.Tensor, prior: Prior) -> torch.Tensor:
        z1 = prior.conditional_mean(v) if isinstance(prior, TwoLayerPrior) else torch.zeros(*v.shape[:-1], self.d1)
        return torch.cat([z1.to(v), v], -1)

    def latent_to_view(self, z: torch.Tensor) -> torch.Tensor:
        return z[..., self.d1 :]

    def layers(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z1": z[..., : self.d1], "z2": z[..., self.d1 :]}


@register_prior("gaussian-2layer")
class TwoLayerPrior(Prior):
    """p(z2) = N(0, I) and p(z1|z2) from a network: z2 -> hidden -> [mu1, logvar1]."""

    options = OPTIONS

    learned = True

    def __init__(self, cfg: Any, posterior: PosteriorFamily):
        super().__init__()
        self.d1, self.d2, hidden = _sizes(cfg)
        if posterior.dim != self.d1 + self.d2:
            raise VaelabError(
                f"the gaussian-2layer prior is over z1 ({self.d1}) and z2 ({self.d2}); --latent "
                f"{cfg.latent} has {posterior.dim} dimensions"
            )
        self.down = mlp([self.d2, *hidden, 2 * self.d1], cfg.activation)

    def _p1(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu1, logvar1 = self.down(z2).chunk(2, dim=-1)
        return mu1, logvar1

    def conditional_mean(self, z2: torch.Tensor) -> torch.Tensor:
        """E[z1 | z2]: how the top layer's pictures reach the decoder."""
        return self._p1(z2)[0]

    def log_prob(self, z):
        z1, z2 = z.split([self.d1, self.d2], -1)
        return _log_normal(z1, *self._p1(z2)) - 0.5 * (z2**2 + LOG_2PI).sum(-1)

    def sample(self, n, device=None, generator=None):
        z2 = torch.randn(n, self.d2, device=device, generator=generator)
        mu1, logvar1 = self._p1(z2)
        eps = torch.randn(mu1.shape, device=device, generator=generator)
        return torch.cat([mu1 + torch.exp(0.5 * logvar1) * eps, z2], -1)

    def distribution(self, device=None) -> D.Distribution | None:
        return None

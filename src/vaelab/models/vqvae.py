"""VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning"):
a deterministic posterior over a codebook.

    z_e = encoder(x), split into M = latent_dim / code_dim vectors of code_dim
    k_m = argmin_j ||z_e,m - e_j||        (the nearest of K codebook entries e_j)
    decoder input = z_e + sg(e_k - z_e)   (= e_k forward; the straight-through gradient backward)

`--latent vq`: the sampled variable is z_e itself (a point mass, so log q = 0 and importance
sampling has nothing to average: vaelab.parts.DeterministicPosterior), and the decoder's input is
its codebook lookup, made by `to_decoder` inside VAE.decode, so any objective trains the encoder
through the straight-through estimator. The prior `vq-uniform` is uniform over the K^M codes
(the paper's prior during training), so the ELBO's KL is the constant M log K and neg_elbo = rec +
M log K: the bound this posterior admits (paper, section 3.1).

The codebook learns either from the `vqvae` objective's codebook term ||sg(z_e) - e||^2 (with the
commitment term beta ||z_e - sg(e)||^2, beta = `--option commitment`, 0.25 in the paper) or, with
`--option ema=true`, by exponential moving averages of the vectors assigned to each entry (the
paper's appendix; decay `--option ema_decay`). Evaluation reports the codebook's usage (the
fraction of entries any test point picks) and perplexity (exp of the entropy of their frequencies).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import VaelabError
from ..parts import DeterministicPosterior, Prior
from ..registry import Option, register_latent, register_objective, register_prior

OPTIONS = {
    "codebook_size": Option(int, 512, "K, the codebook's entries", ge=2),
    "code_dim": Option(int, 16, "the size of each code vector; latent_dim must be a multiple of it", ge=1),
    "ema": Option(bool, False, "learn the codebook by exponential moving averages instead of its loss term"),
    "ema_decay": Option(float, 0.99, "the moving averages' decay", gt=0, le=1),
}


def _option(cfg: Any, key: str) -> Any:
    return OPTIONS[key].check(cfg.options.get(key, OPTIONS[key].default), f"option {key}")


@register_latent("vq")
class VectorQuantizer(DeterministicPosterior):
    support = "codebook"
    default_prior = "vq-uniform"
    options = OPTIONS

    def __init__(self, cfg: Any):
        super().__init__()
        self.dim = self.n_params = cfg.latent_dim
        self.k, self.code_dim = _option(cfg, "codebook_size"), _option(cfg, "code_dim")
        if cfg.latent_dim % self.code_dim:
            raise VaelabError(
                f"--latent vq splits --latent-dim {cfg.latent_dim} into vectors of --option code_dim={self.code_dim}: "
                "make --latent-dim a multiple of code_dim"
            )
        self.m = cfg.latent_dim // self.code_dim
        self.ema, self.decay = _option(cfg, "ema"), _option(cfg, "ema_decay")
        self.codebook = nn.Parameter(torch.empty(self.k, self.code_dim).uniform_(-1 / self.k, 1 / self.k))
        self.codebook.requires_grad_(not self.ema)  # learned by moving averages, not by the optimizer
        self.ema_count: torch.Tensor
        self.ema_sum: torch.Tensor
        self.register_buffer("ema_count", torch.ones(self.k))
        self.register_buffer("ema_sum", self.codebook.detach().clone())

    def code(self, params: torch.Tensor) -> torch.Tensor:
        return params  # z_e: the point mass the posterior puts all its weight on

    def indices(self, z_e: torch.Tensor) -> torch.Tensor:
        """The nearest codebook entry of each of the M vectors of z_e (..., dim) -> (..., M)."""
        flat = z_e.reshape(-1, self.code_dim)
        d = (flat * flat).sum(-1, keepdim=True) - 2 * flat @ self.codebook.T + (self.codebook**2).sum(-1)
        return d.argmin(-1).reshape(*z_e.shape[:-1], self.m)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(e_k as (..., dim), k (..., M)): each vector's nearest entry."""
        k = self.indices(z_e)
        return self.codebook[k].reshape(z_e.shape), k

    def to_decoder(self, z: torch.Tensor) -> torch.Tensor:
        """The codebook lookup of z_e with the straight-through gradient: e_k forward, the
        identity backward (to the encoder); the codebook itself learns from its own loss term,
        or here by moving averages while training (option ema)."""
        z_q, k = self.quantize(z)
        if self.ema and self.training:
            self._ema_update(z.detach(), k)
        return z + (z_q - z).detach()

    @torch.no_grad()
    def _ema_update(self, z_e: torch.Tensor, k: torch.Tensor) -> None:
        flat, idx = z_e.reshape(-1, self.code_dim), k.reshape(-1)
        counts = torch.bincount(idx, minlength=self.k).to(flat.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.k * 1e-5) * n  # Laplace smoothing: no entry divides by 0
        self.codebook.data.copy_(self.ema_sum / smoothed[:, None])

    def statistics(self, params: torch.Tensor) -> dict[str, float]:
        """codebook_usage: the fraction of entries some point picks; codebook_perplexity: exp of
        the entropy of the entries' frequencies (K when all are used equally, 1 for one entry)."""
        counts = torch.bincount(self.indices(params.to(self.codebook.device)).reshape(-1), minlength=self.k).double()
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"codebook_usage": float((counts > 0).double().mean()), "codebook_perplexity": float(entropy.exp())}


@register_prior("vq-uniform")
class UniformCodes(Prior):
    """Uniform over the K^M codes: log p = -M log K at every code (the KL of the deterministic
    posterior is then M log K)."""

    support = "codebook"

    def __init__(self, cfg: Any, posterior: Any):
        super().__init__()
        if not isinstance(posterior, VectorQuantizer):
            raise VaelabError("--prior vq-uniform is the prior of --latent vq")
        self.log_k, self.m = math.log(posterior.k), posterior.m
        self.latent = [posterior]  # a plain list: not a second owner of its parameters

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return z.new_full(z.shape[:-1], -self.m * self.log_k)

    def sample(self, n: int, device: Any = None, generator: torch.Generator | None = None) -> torch.Tensor:
        q = self.latent[0]
        k = torch.randint(q.k, (n, q.m), device=q.codebook.device, generator=generator)
        return q.codebook.detach()[k].reshape(n, q.dim)


@register_objective(
    "vqvae",
    options={"commitment": Option(float, 0.25, "beta, the commitment term's weight", ge=0, resumable=True)},
)
def vqvae_loss(model: Any, x: torch.Tensor, ctx: Any) -> tuple[torch.Tensor, dict]:
    """The VQ-VAE loss (paper, eq. 3): -log p(x|z_q) + ||sg(z_e) - e||^2 + beta ||z_e - sg(e)||^2,
    per example; the codebook term is left out when the codebook learns by moving averages. The
    terms report neg_elbo = rec + M log K, the bound of the deterministic posterior."""
    q = model.latent
    if not isinstance(q, VectorQuantizer):
        raise VaelabError("--objective vqvae trains --latent vq")
    z_e = model.encode(x, ctx.y)
    lw = model.log_weights(x, 1, params=z_e, y=ctx.y)
    rec, kl = -lw.log_px_z[0], lw.ratio[0]
    z_q = q.quantize(z_e)[0]
    codebook = ((z_q - z_e.detach()) ** 2).sum(-1)
    commitment = ((z_e - z_q.detach()) ** 2).sum(-1)
    beta = ctx.options["commitment"]
    loss = rec.mean() + beta * commitment.mean() + (0.0 if q.ema else codebook.mean())
    return loss, {"neg_elbo": rec + kl, "rec": rec, "kl": kl, "codebook": codebook, "commitment": commitment}

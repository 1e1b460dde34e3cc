"""Objectives: plain functions of (model, x) returning per-example terms in nats.

The ELBO (Kingma & Welling 2014, eq. 10 with analytic KL, eq. 7 with Monte-Carlo KL):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)),   estimated with L samples z = g(eps, x).

`neg_elbo` is reported as a positive number (lower is better), as the papers' tables do.
"""

from __future__ import annotations

import torch

from .model import VAE


def elbo_terms(model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic"):
    """Per-example `rec` (-E_q log p(x|z)), `kl` and `neg_elbo` = rec + kl, each (B,).

    With kl="mc" the KL is estimated from the same samples as log q(z|x) - log p(z)."""
    params = model.encode(x)
    z = model.latent.rsample(params, samples)                 # (L, B, D)
    log_px = model.log_px_given_z(x, model.decode(z))         # (L, B)
    rec = -log_px.mean(0)
    if kl == "analytic":
        kl_term = model.latent.kl(params)
    else:
        kl_term = (model.latent.log_q(z, params) - model.latent.log_prior(z)).mean(0)
    return {"neg_elbo": rec + kl_term, "rec": rec, "kl": kl_term}


def elbo_loss(model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic", beta: float = 1.0):
    """The training loss (mean over the batch of rec + beta * kl) and the per-example terms."""
    terms = elbo_terms(model, x, samples, kl)
    loss = (terms["rec"] + beta * terms["kl"]).mean() if beta != 1.0 else terms["neg_elbo"].mean()
    return loss, terms

"""Objectives: plain functions of (model, x) returning per-example terms in nats.

The ELBO (Kingma & Welling 2014, eq. 10 with analytic KL, eq. 7 with Monte-Carlo KL):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)),   estimated with L samples z = g(eps, x).

The importance-weighted bound (Burda, Grosse & Salakhutdinov 2016, eq. 8):

    L_k(x) = E[log (1/k) sum_i w_i],   w_i = p(x, z_i) / q(z_i|x),   z_i ~ q(z|x),

computed in log space (logsumexp - log k). Its gradient is sum_i w~_i grad log w_i with the
normalised weights w~_i = softmax(log w)_i, exactly what autograd of logsumexp gives; the
weights must not be detached, or the gradient is wrong.

Terms are reported as positive numbers (lower is better), as the papers' tables do:
`neg_elbo`, `rec` (-E_q log p(x|z)), `kl`, and for the IWAE objective `neg_iwae` = -L_k.

Each training objective maps (model, x, train config) to (loss, per-example terms); the trainer
picks one by name from OBJECTIVES and knows nothing else about it.
"""

from __future__ import annotations

import math

import torch

from .model import VAE


def elbo_terms(model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic"):
    """Per-example `rec`, `kl` and `neg_elbo` = rec + kl, each (B,).

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


def elbo_loss(model: VAE, x: torch.Tensor, t) -> tuple[torch.Tensor, dict]:
    """Mean over the batch of rec + beta * kl (the ELBO for beta = 1), with L = t.samples."""
    terms = elbo_terms(model, x, t.samples, t.kl)
    loss = terms["neg_elbo"].mean() if t.beta == 1.0 else (terms["rec"] + t.beta * terms["kl"]).mean()
    return loss, terms


def iwae_terms(model: VAE, x: torch.Tensor, k: int):
    """Per-example `neg_iwae` = -L_k, and the ELBO terms estimated from the same k samples."""
    params = model.encode(x)
    z = model.latent.rsample(params, k)                                   # (k, B, D)
    log_px_z = model.log_px_given_z(x, model.decode(z))                   # (k, B)
    log_q_minus_prior = model.latent.log_q(z, params) - model.latent.log_prior(z)
    log_w = log_px_z - log_q_minus_prior
    rec, kl = -log_px_z.mean(0), log_q_minus_prior.mean(0)
    return {"neg_iwae": math.log(k) - torch.logsumexp(log_w, 0), "neg_elbo": rec + kl, "rec": rec, "kl": kl}


def iwae_loss(model: VAE, x: torch.Tensor, t) -> tuple[torch.Tensor, dict]:
    terms = iwae_terms(model, x, t.k)
    return terms["neg_iwae"].mean(), terms


OBJECTIVES = {"elbo": elbo_loss, "iwae": iwae_loss}

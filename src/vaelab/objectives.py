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

For a discrete (categorical) latent the ELBO's gradient has two estimators (train.estimator):
`reparam`, the path-wise gradient through the latent family's relaxed samples (Gumbel-Softmax,
or straight-through with --hard), and `score-function`, REINFORCE with a baseline
(`score_function_terms`).

Each training objective maps (model, x, train config) to (loss, per-example terms); the trainer
picks one by name from OBJECTIVES and knows nothing else about it.
"""

from __future__ import annotations

import math

import torch

from .model import VAE


def elbo_terms(model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic", params=None):
    """Per-example `rec`, `kl` and `neg_elbo` = rec + kl, each (B,).

    With kl="mc" the KL is estimated from the same samples as log q(z|x) - log p(z). `params`,
    the encoder's output for x, is computed when not given."""
    params = model.encode(x) if params is None else params
    if kl == "analytic":
        z = model.latent.rsample(params, samples)                                 # (L, B, D)
        kl_term = model.latent.kl(params)
    else:
        z, log_ratio = model.latent.rsample_with_log_ratio(params, samples)       # log q - log p
        kl_term = log_ratio.mean(0)
    log_px = model.log_px_given_z(x, model.decode(z))         # (L, B)
    rec = -log_px.mean(0)
    return {"neg_elbo": rec + kl_term, "rec": rec, "kl": kl_term}


def elbo_loss(model: VAE, x: torch.Tensor, t) -> tuple[torch.Tensor, dict]:
    """Mean over the batch of rec + beta * kl (the ELBO for beta = 1), with L = t.samples,
    differentiated by the estimator `t.estimator` (the path-wise one unless told)."""
    if t.estimator != "reparam":
        return ESTIMATORS[t.estimator](model, x, t)
    terms = elbo_terms(model, x, t.samples, t.kl)
    loss = terms["neg_elbo"].mean() if t.beta == 1.0 else (terms["rec"] + t.beta * terms["kl"]).mean()
    return loss, terms


def iwae_terms(model: VAE, x: torch.Tensor, k: int):
    """Per-example `neg_iwae` = -L_k, and the ELBO terms estimated from the same k samples."""
    params = model.encode(x)
    z, log_q_minus_prior = model.latent.rsample_with_log_ratio(params, k)  # (k, B, D), (k, B)
    log_px_z = model.log_px_given_z(x, model.decode(z))                   # (k, B)
    log_w = log_px_z - log_q_minus_prior
    rec, kl = -log_px_z.mean(0), log_q_minus_prior.mean(0)
    return {"neg_iwae": math.log(k) - torch.logsumexp(log_w, 0), "neg_elbo": rec + kl, "rec": rec, "kl": kl}


def iwae_loss(model: VAE, x: torch.Tensor, t) -> tuple[torch.Tensor, dict]:
    terms = iwae_terms(model, x, t.k)
    return terms["neg_iwae"].mean(), terms


def score_function_terms(model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic", beta: float = 1.0,
                         baseline=None):
    """The ELBO with the score-function (REINFORCE, likelihood-ratio) gradient for a discrete
    latent (Williams 1992; Mnih & Gregor 2014): the surrogate loss, per example (B,), and the
    usual per-example terms.

    For z ~ q_phi(z|x) one-hot and a learning signal f(z),

        grad_phi E_q[f(z)] = E_q[f(z) grad_phi log q_phi(z|x)] + E_q[grad_phi f(z)],

    with no path through the sample. With the analytic KL, f(z) = log p_theta(x|z) does not
    depend on phi and the KL is differentiated exactly:

        surrogate = -(f(z) - b).detach() * log q(z|x) - log p(x|z) + beta * KL(q || p).

    With the Monte-Carlo KL, f(z) = log p(x|z) - beta (log q(z|x) - log p(z)); its own
    phi-gradient -beta grad log q(z|x) has expectation zero (E_q[grad log q] = grad 1 = 0) and
    is left out, so

        surrogate = -(f(z) - b).detach() * log q(z|x) - log p(x|z).

    Either way the gradient of the surrogate is the REINFORCE estimate of -grad ELBO for phi and
    the exact -grad_theta log p(x|z) for the decoder; the baseline b (a moving average, or a
    learned b(x), see baselines.py) depends on x but not on z, so it leaves the expectation
    unchanged and reduces the variance. With L samples the terms are averaged over them.

    Returns (surrogate (B,), terms, baseline loss): the terms are the ELBO's `neg_elbo`, `rec`,
    `kl`, estimated from the discrete samples."""
    params = model.encode(x)
    z, log_q = model.latent.propose(params, samples)                          # (L, B, D), (L, B)
    log_px = model.log_px_given_z(x, model.decode(z))                          # (L, B)
    if kl == "analytic":
        kl_term = model.latent.kl(params)
        signal = log_px.detach()
        exact = beta * kl_term
    else:
        kl_sample = (log_q - model.latent.log_prior(z)).detach()
        kl_term = kl_sample.mean(0)
        signal = log_px.detach() - beta * kl_sample
        exact = 0.0
    if baseline is not None:
        b, baseline_loss = baseline(x, signal.mean(0))
    else:
        b, baseline_loss = 0.0, log_px.new_zeros(())
    surrogate = (-(signal - b) * log_q - log_px).mean(0) + exact
    rec = -log_px.detach().mean(0)
    return surrogate, {"neg_elbo": rec + kl_term.detach(), "rec": rec, "kl": kl_term.detach()}, baseline_loss


def score_function_loss(model: VAE, x: torch.Tensor, t) -> tuple[torch.Tensor, dict]:
    """The ELBO's score-function estimator with the model's baseline (if any), plus the loss
    that trains a learned baseline; see `score_function_terms`."""
    surrogate, terms, baseline_loss = score_function_terms(model, x, t.samples, t.kl, t.beta,
                                                           getattr(model, "baseline", None))
    return surrogate.mean() + baseline_loss, terms


# How the ELBO's gradient is estimated (train.estimator); "reparam" is elbo_loss itself.
ESTIMATORS = {"score-function": score_function_loss}

OBJECTIVES = {"elbo": elbo_loss, "iwae": iwae_loss}

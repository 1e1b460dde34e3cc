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

Every objective is built on one quantity, computed in one place (`VAE.log_weights`):

    log w = log p(x|z) + log p(z) - log q(z|x),   z ~ q(z|x),

the ELBO with Monte-Carlo KL is its mean, L_k its log-mean-exp, the score-function estimator's
learning signal is made of it, and so is the importance-sampled `nll` (evaluation.py).

Each training objective maps (model, x, StepContext) to (loss, per-example terms); it is
registered by name (`@register_objective`), and the trainer knows nothing else about it. The
context carries what an objective may need beyond the images: the batch's labels `ctx.y` for a
conditional model (pass them on as `model.log_weights(x, n, y=ctx.y)`), the train settings and
the objective's own options, the global step and epoch, the size of the training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import TrainConfig
from .klcontrol import kl_penalty
from .model import VAE
from .parts import check_baseline_output
from .registry import ESTIMATORS, OBJECTIVES, register_estimator, register_objective


@dataclass
class StepContext:
    """What an objective may need besides the model and the batch."""

    train: TrainConfig  # the run's settings
    kl_weight: float = 1.0  # the KL's weight at this step (klcontrol: --beta, warm-up)
    step: int = 0  # 0-based global step of this update
    epoch: int = 0  # 0-based epoch
    n_train: int = 0  # examples in the training set
    steps_per_epoch: int = 0
    # the batch's class labels (B,) for a conditional model, passed on as model.log_weights(..., y=ctx.y);
    # None for a model that takes no condition
    y: torch.Tensor | None = None

    @property
    def options(self) -> dict:
        """The objective's and estimator's own settings (declared with `options=` when they are
        registered; validated, with defaults filled in)."""
        return self.train.options


def elbo_terms(model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic", params=None, y=None):
    """Per-example `rec`, `kl` and `neg_elbo` = rec + kl, each (B,), from `samples` path-wise
    samples of z. kl="analytic" uses the (posterior, prior) pair's closed form (an error for a
    pair without one); "mc" estimates it from the same samples as mean(log q(z|x) - log p(z)).
    y: the labels of a conditional model's batch (the terms then bound -log p(x|y))."""
    lw = model.log_weights(x, samples, params=params, ratio=kl != "analytic", y=y)
    rec = -lw.log_px_z.mean(0)
    kl_term = model.analytic_kl(lw.params) if kl == "analytic" else lw.ratio.mean(0)
    return {"neg_elbo": rec + kl_term, "rec": rec, "kl": kl_term}


@register_objective("elbo", uses_estimator=True)
def elbo_loss(model: VAE, x: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, dict]:
    """Mean over the batch of rec + beta * kl (the ELBO for beta = 1), with L = train.samples,
    differentiated by the estimator train.estimator."""
    return ESTIMATORS[ctx.train.estimator](model, x, ctx)


@register_estimator("reparam")
def reparameterized(model: VAE, x: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, dict]:
    """The path-wise gradient through the family's samples (reparameterized, or relaxed), of
    rec + w KL with the step's KL weight w (--beta, warm-up) and free bits (klcontrol)."""
    t, w = ctx.train, ctx.kl_weight
    if t.free_bits > 0:
        lw = model.log_weights(x, t.samples, ratio=t.kl != "analytic", y=ctx.y)
        rec = -lw.log_px_z.mean(0)
        groups = model.kl_groups(lw.params) if t.kl == "analytic" else lw.ratio.mean(0)[:, None]
        kl = groups.sum(-1)
        loss = rec.mean() + w * kl_penalty(groups, t.free_bits)
        return loss, {"neg_elbo": rec + kl, "rec": rec, "kl": kl}
    terms = elbo_terms(model, x, t.samples, t.kl, y=ctx.y)
    loss = terms["neg_elbo"].mean() if w == 1.0 else (terms["rec"] + w * terms["kl"]).mean()
    return loss, terms


def iwae_terms(model: VAE, x: torch.Tensor, k: int, y=None):
    """Per-example `neg_iwae` = -L_k, and the ELBO terms estimated from the same k samples."""
    lw = model.log_weights(x, k, y=y)
    rec, kl = -lw.log_px_z.mean(0), lw.ratio.mean(0)
    return {"neg_iwae": math.log(k) - torch.logsumexp(lw.log_w, 0), "neg_elbo": rec + kl, "rec": rec, "kl": kl}


@register_objective("iwae", samples_per_point=lambda t: t.k)
def iwae_loss(model: VAE, x: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, dict]:
    terms = iwae_terms(model, x, ctx.train.k, ctx.y)
    return terms["neg_iwae"].mean(), terms


def score_function_terms(
    model: VAE, x: torch.Tensor, samples: int = 1, kl: str = "analytic", beta: float = 1.0, baseline=None, y=None
):
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
    unchanged and reduces the variance. NVIL's baseline also returns a scale s > 0 that does not
    depend on z (variance normalisation); the phi-terms are divided by it, the score-function
    term and the analytic KL alike, so the encoder's step keeps its direction in expectation
    and s sets only its size (the decoder's term is not scaled). With L samples the terms are
    averaged over them.

    Returns (surrogate (B,), terms, baseline loss): the terms are the ELBO's `neg_elbo`, `rec`,
    `kl`, estimated from the discrete samples."""
    lw = model.log_weights(x, samples, proposal=True, y=y)  # discrete z, log q with its gradient
    log_px, log_q = lw.log_px_z, lw.log_q  # (L, B)
    assert log_q is not None  # proposal=True keeps it
    exact: torch.Tensor | float
    if kl == "analytic":
        kl_term = model.analytic_kl(lw.params)
        signal = log_px.detach()
        exact = beta * kl_term
    else:
        kl_sample = lw.ratio.detach()
        kl_term = kl_sample.mean(0)
        signal = log_px.detach() - beta * kl_sample
        exact = 0.0
    b: torch.Tensor | float
    scale: torch.Tensor | float
    if baseline is not None:
        b, scale, baseline_loss = check_baseline_output(baseline, signal, baseline(x, signal))
    else:
        b, scale, baseline_loss = 0.0, 1.0, log_px.new_zeros(())
    surrogate = (-(signal - b) * log_q / scale - log_px).mean(0) + exact / scale
    rec = -log_px.detach().mean(0)
    return surrogate, {"neg_elbo": rec + kl_term.detach(), "rec": rec, "kl": kl_term.detach()}, baseline_loss


@register_estimator("score-function", pathwise=False, discrete_only=True, uses_baseline=True)
def score_function_loss(model: VAE, x: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, dict]:
    """The ELBO's score-function estimator with the model's baseline (if any), plus the loss
    that trains a learned baseline; see `score_function_terms`."""
    t = ctx.train
    surrogate, terms, baseline_loss = score_function_terms(
        model, x, t.samples, t.kl, ctx.kl_weight, model.baseline, y=ctx.y
    )
    return surrogate.mean() + baseline_loss, terms


__all__ = ["OBJECTIVES", "ESTIMATORS", "StepContext", "elbo_terms", "iwae_terms", "score_function_terms"]

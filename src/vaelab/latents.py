"""Posterior families q(z|x): how encoder outputs become a distribution over the latent.

A family works on a flat parameter tensor from the encoder and offers what the objectives
need: reparameterized samples and log q(z|x) (vaelab.parts.PosteriorFamily). The prior p(z) is a
separate part (priors.py); closed-form KLs for (family, prior) pairs are declared there. The hot
path is plain tensor arithmetic; `distribution()` gives a torch.distributions object for users.
"""

from __future__ import annotations

import math

import torch
from torch import distributions as D

from .parts import LatentView, PosteriorFamily, Prior
from .registry import register_latent
from .schedules import gumbel_temperature

LOG_2PI = math.log(2 * math.pi)


def _logsumexp(v, keepdim: bool = False):
    """logsumexp over the last dimension. Written out because torch's CPU softmax-family kernels
    are slow over a short last dimension (K = 10 classes): on a (500, 20, 10) block,
    log_softmax forward + backward took 78 ms against 2.4 ms for this on 2 busy cores."""
    m = v.detach().amax(-1, keepdim=True)  # any constant is exact; the max keeps exp <= 1
    out = (v - m).exp().sum(-1, keepdim=True).log() + m
    return out if keepdim else out.squeeze(-1)


def _log_softmax(v):
    """log_softmax over the last dimension (see _logsumexp). The max is subtracted first and
    never added back, so at a small temperature, where v = (log pi + g) / tau is in the
    thousands, the result keeps float32's relative precision and exp() of it sums to 1."""
    s = v - v.detach().amax(-1, keepdim=True)
    return s - s.exp().sum(-1, keepdim=True).log()


@register_latent("gaussian")
class GaussianPosterior(PosteriorFamily):
    """q(z|x) = N(mu, diag(exp(logvar))), z of `latent_dim` dimensions; the encoder gives [mu, logvar]."""

    def __init__(self, cfg):
        super().__init__()
        self.dim = cfg.latent_dim
        self.n_params = 2 * self.dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

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

    def log_prob(self, z, params):
        """log q(z|x) summed over dimensions; z (..., B, dim) -> (..., B)."""
        mu, logvar = self.split(params)
        return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)

    def named_params(self, params) -> dict[str, torch.Tensor]:
        mu, logvar = self.split(params)
        return {"mu": mu, "logvar": logvar}

    def distribution(self, params) -> D.Distribution:
        mu, logvar = self.split(params)
        return D.Independent(D.Normal(mu, torch.exp(0.5 * logvar)), 1)


@register_latent("categorical")
class CategoricalPosterior(PosteriorFamily):
    """N independent categorical variables of K classes; z lays their one-hot codes side by
    side, (..., N*K). The encoder gives N*K logits, the prior is uniform: p(z) = K^-N.

    Training (the module in train mode) uses the Gumbel-Softmax / Concrete relaxation
    (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017): per variable

        y = softmax((log pi + g) / tau),   g_k = -log(-log u_k),  u_k ~ U(0, 1),

    a point inside the simplex that is differentiable in log pi and tends to the one-hot
    Gumbel-max sample one_hot(argmax(log pi + g)) ~ Categorical(pi) as tau -> 0. With `hard`
    the forward pass uses that one-hot sample and the backward pass the gradient of y
    (straight-through Gumbel-Softmax). For numerical safety the uniforms are clamped away
    from 0 and 1 and y is computed as exp(log_softmax(.)) in the dtype of the logits, so
    nothing overflows or divides by zero at small tau (1e-3 included).

    Evaluation (eval mode) is the discrete model itself: z is the one-hot Gumbel-max sample and
    log q(z|x) the categorical log-probability, so the reported `neg_elbo` and the
    importance-sampled `nll` are figures of the discrete VAE, not of its relaxation. `propose`
    (importance sampling, the score-function estimator) is always discrete.

    KL: analytic with a categorical prior (priors.py), or Monte-Carlo. The Monte-Carlo KL of the
    relaxed sample is log q(y) - log p(y) for the Concrete densities of q (logits) and of the
    prior (its logits, uniform by default) at the same tau, evaluated in log space (the
    ExpConcrete density of x = log y, Maddison et al. 2017, appendix C; the change of variables
    cancels in the ratio). Per variable, with tau x_k = tau * log_softmax((l + g) / tau)_k, which
    stays finite as tau -> 0:

        log q(x) - log p(x) = sum_k (l_k - m_k) - K logsumexp_k(l_k - tau x_k) + K logsumexp_k(m_k - tau x_k)

    for normalised logits l = log pi of q and m of the prior. The temperature follows
    `schedules.gumbel_temperature` of the global step, which the trainer passes in through
    `set_step`.
    """

    discrete = True
    scheduled = True
    relaxed = True
    support = "one-hot"
    default_prior = "uniform-categorical"

    def __init__(self, cfg):
        super().__init__()
        self.n, self.k = cfg.categorical_dims
        self.dim = self.n_params = self.n * self.k
        self.tau0, self.tau_min, self.anneal_rate, self.anneal_every = (
            cfg.tau0,
            cfg.tau_min,
            cfg.anneal_rate,
            cfg.anneal_every,
        )
        self.hard = cfg.hard
        self.set_step(0)

    @property
    def view(self) -> LatentView:
        return LatentView("categorical", self.dim, self.n, self.k)

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, tau={self.tau:.3g}, hard={self.hard}"

    # -- the schedule ------------------------------------------------------------------------
    def set_step(self, step: int) -> None:
        """Set the temperature for the 0-based global training step."""
        self.step = step
        self.tau = gumbel_temperature(step, self.tau0, self.tau_min, self.anneal_rate, self.anneal_every)

    def schedule_state(self) -> dict[str, float]:
        return {"tau": self.tau}

    # -- sampling ----------------------------------------------------------------------------
    def log_probs(self, params):
        """Normalised log-probabilities log pi, (..., N, K)."""
        return _log_softmax(params.unflatten(-1, (self.n, self.k)))

    def _perturbed(self, params, n: int):
        """(log pi, log pi + g) with Gumbel noise g: (B, N, K), (n, B, N, K)."""
        log_pi = self.log_probs(params)
        finfo = torch.finfo(log_pi.dtype)
        u = torch.rand((n, *log_pi.shape), dtype=log_pi.dtype, device=log_pi.device)
        u = u.clamp(finfo.tiny, 1.0 - finfo.eps)
        return log_pi, log_pi - torch.log(-torch.log(u))

    def _discrete(self, params, n: int):
        """Gumbel-max: one-hot samples z ~ q(z|x) (no gradient) and log q(z|x) (with gradient
        to the logits): (n, B, N*K), (n, B)."""
        log_pi, perturbed = self._perturbed(params, n)
        idx = perturbed.argmax(-1, keepdim=True)  # (n, B, N, 1)
        z = torch.zeros_like(perturbed).scatter_(-1, idx, 1.0)
        log_q = log_pi.expand_as(perturbed).gather(-1, idx).squeeze(-1).sum(-1)
        return z.flatten(-2), log_q

    def _relaxed(self, params, n: int):
        """Gumbel-Softmax samples (straight-through if `hard`), (n, B, N*K), with tau * log y
        (n, B, N, K) and log pi (B, N, K), which the Concrete densities need."""
        log_pi, perturbed = self._perturbed(params, n)
        tau = self.tau
        log_y = _log_softmax(perturbed / tau)
        y, tau_x = log_y.exp(), tau * log_y  # tau * log y = O(logit range) for any tau
        if self.hard:
            one_hot = torch.zeros_like(y).scatter_(-1, y.argmax(-1, keepdim=True), 1.0)
            y = one_hot + (y - y.detach())  # exactly one-hot forward, gradient of y backward
        return y.flatten(-2), tau_x, log_pi

    def rsample(self, params, n: int):
        """n samples: relaxed (or straight-through) in training, one-hot in evaluation: (n, B, N*K)."""
        if self.training:
            return self._relaxed(params, n)[0]
        return self._discrete(params, n)[0]

    def rsample_with_log_ratio(self, params, n: int, prior: Prior):
        """n samples and log q(z|x) - log p(z) at them: the relaxed (Concrete) densities in
        training, the categorical ones in evaluation: (n, B, N*K), (n, B)."""
        if not self.training:
            z, log_q = self._discrete(params, n)
            return z, log_q - prior.log_prob(z)
        z, tau_x, log_pi = self._relaxed(params, n)
        m = prior.log_probs().to(log_pi)  # (N, K) normalised prior logits
        k = self.k
        log_ratio = ((log_pi - m).sum(-1) - k * _logsumexp(log_pi - tau_x) + k * _logsumexp(m - tau_x)).sum(-1)
        return z, log_ratio

    def propose(self, params, n: int):
        """n one-hot samples from q(z|x) and their categorical log-probability (with gradient
        to the logits: the score-function estimator uses it): (n, B, N*K), (n, B)."""
        return self._discrete(params, n)

    # -- densities ---------------------------------------------------------------------------
    def log_prob(self, z, params):
        """log q(z|x) of one-hot z (..., B, N*K) -> (..., B)."""
        return (z.unflatten(-1, (self.n, self.k)) * self.log_probs(params)).sum((-2, -1))

    # -- what users ask for ------------------------------------------------------------------
    def mean(self, params):
        """E_q[z]: the class probabilities, (B, N*K)."""
        return self.log_probs(params).exp().flatten(-2)

    def distribution(self, params) -> D.Distribution:
        """q(z|x) over (N, K) one-hot arrays."""
        return D.Independent(D.OneHotCategorical(logits=self.log_probs(params)), 1)

    def named_params(self, params) -> dict[str, torch.Tensor]:
        """Class probabilities and normalised log-probabilities, each (B, N, K)."""
        log_pi = self.log_probs(params)
        return {"probs": log_pi.exp(), "log_probs": log_pi}

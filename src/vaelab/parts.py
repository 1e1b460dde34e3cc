"""The declared interfaces of a VAE's parts. A part of each kind subclasses its base here, states
its capabilities as class attributes, and registers itself with a decorator (vaelab.registry):

    x (, y) --NetworkFamily.encoder--> params --PosteriorFamily--> q(z|x(,y))      Prior --> p(z)
    z (, y) --NetworkFamily.decoder--> params --Likelihood--> p(x|z(,y))

Callers never test `hasattr` or a part's name: they read these attributes.

    PosteriorFamily.discrete       z is a discrete code (one-hot), sampled without a path gradient
    PosteriorFamily.scheduled      follows the training step (set_step), e.g. a temperature
    PosteriorFamily.relaxed        trains through a continuous relaxation of a discrete z
    PosteriorFamily.support        what z is ("real" vectors, "one-hot" codes); a prior must match
    PosteriorFamily.view           how to picture it: a LatentView (continuous or categorical)
    Prior.learned                  has parameters trained with the model
    NetworkFamily.per_pixel_output  the decoder's last layer has one bias per output (--output-bias)
    NetworkFamily.conditional      its encoder and decoder take the class labels y: bounds on -log p(x|y)
    Likelihood.n_params            decoder outputs per pixel
    <any part>.options             its own settings, {key: vaelab.Option(type, default, help, ...)}:
                                   validated, recorded in the run, listed by `vaelab plugins`
    Baseline                       a score-function control variate: forward(x, signal) -> (b, scale, loss)

The KL between a posterior and a prior has a closed form only for some pairs: they are declared
with `register_kl(PosteriorClass, PriorClass)`, as torch.distributions does; every other pair uses
the Monte-Carlo estimate, and asking for the analytic one is a clear error.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import distributions as D
from torch import nn

from . import registry
from .errors import VaelabError

Tensor = torch.Tensor


@dataclass(frozen=True)
class LatentView:
    """How pictures show a latent: `continuous` (points in R^dim, drawn on a Phi^-1 grid and by
    traversals) or `categorical` (n_vars one-hot variables of n_classes each, dim = their product)."""

    kind: str
    dim: int
    n_vars: int = 0
    n_classes: int = 0


class NetworkFamily(ABC):
    """Builds the encoder, images (B, C, H, W) -> (B, n_out) parameters of q(z|x), and the decoder,
    latents (B, n_in) -> (B, n_params * C*H*W) parameters of p(x|z) laid out parameter-block by
    parameter-block (all first parameters, then all second ones). Both are nn.Modules."""

    per_pixel_output: bool = False
    # A conditional family's networks take the batch's class labels y (B,) too: the encoder is
    # called as encoder(x, y), the decoder as decoder(z, y); the model's bounds are then bounds on
    # -log p(x|y). cfg.n_classes (from the training labels) says how many classes there are.
    conditional: bool = False
    options: dict[str, registry.Option] = {}  # the family's own settings (--option KEY=VALUE)

    @staticmethod
    @abstractmethod
    def encoder(cfg: Any, input_shape: tuple[int, int, int], n_out: int) -> nn.Module: ...

    @staticmethod
    @abstractmethod
    def decoder(cfg: Any, n_in: int, output_shape: tuple[int, int, int], n_params: int) -> nn.Module: ...

    @staticmethod
    def set_output_bias(decoder: nn.Module, bias: Tensor) -> None:
        """Set the first len(bias) output biases (families with per_pixel_output)."""
        raise VaelabError("this network has no per-pixel output bias")


class PosteriorFamily(nn.Module, ABC):
    """q(z|x) from the encoder's flat parameters (B, n_params). z is (n, B, dim) for n samples.
    An nn.Module, so train()/eval() reach it and a family may have parameters or networks of its own.

    `kind` says what the family is, and so what the evaluation may report for it:
    - "stochastic": rsample, and log_prob at any z (importance sampling bounds log p(x));
    - "flow" (subclass FlowPosterior): samples come with log q(z|x) at them, and there is no
      log_prob at an arbitrary z and no closed-form mean; its KL is Monte Carlo;
    - "deterministic" (subclass DeterministicPosterior): one code per x, a point mass; importance
      sampling would only repeat its bound, so no importance-sampled nll is reported for it.
    Active units are counted only for continuous stochastic families (not discrete, not
    deterministic codes)."""

    kind: str = "stochastic"
    discrete: bool = False
    scheduled: bool = False
    relaxed: bool = False
    support: str = "real"
    default_prior: str = "standard-normal"
    options: dict[str, registry.Option] = {}  # the family's own settings (--option KEY=VALUE)
    dim: int
    n_params: int

    @abstractmethod
    def rsample(self, params: Tensor, n: int) -> Tensor:
        """n samples with a path-wise gradient (reparameterized, or relaxed in training)."""

    @abstractmethod
    def log_prob(self, z: Tensor, params: Tensor) -> Tensor:
        """log q(z|x) summed over the latent: z (..., B, dim) -> (..., B)."""

    @abstractmethod
    def mean(self, params: Tensor) -> Tensor:
        """E_q[z], (B, dim): what reconstructions decode and the pictures place."""

    @abstractmethod
    def distribution(self, params: Tensor) -> D.Distribution | None:
        """q(z|x) as a torch.distributions object, for users (None where it has no such form)."""

    def propose(self, params: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """n samples of the model as evaluated and log q(z|x) at them: the importance-sampling
        proposal and the score-function estimator's samples. Default: rsample."""
        z = self.rsample(params, n)
        return z, self.log_prob(z, params)

    def rsample_with_log_ratio(self, params: Tensor, n: int, prior: Prior) -> tuple[Tensor, Tensor]:
        """n path-wise samples and log q(z|x) - log p(z) at them, (n, B): the Monte-Carlo KL's
        integrand (a relaxed family gives the ratio of the relaxed densities)."""
        z = self.rsample(params, n)
        return z, self.log_prob(z, params) - prior.log_prob(z)

    def named_params(self, params: Tensor) -> dict[str, Tensor]:
        """The posterior parameters by name (`vaelab encode`)."""
        return {"params": params}

    def to_decoder(self, z: Tensor) -> Tensor:
        """The part of z the decoder sees (all of it, except in layered models)."""
        return z

    @property
    def decoder_dim(self) -> int:
        return self.dim

    @property
    def view(self) -> LatentView:
        return LatentView("continuous", self.decoder_dim)

    def view_to_latent(self, v: Tensor, prior: Prior) -> Tensor:
        """A point the pictures place (view coordinates, `view.dim` of them) as a full latent z
        to decode; a layered family completes the lower layers from its prior."""
        return v

    def latent_to_view(self, z: Tensor) -> Tensor:
        """Where a latent (e.g. a posterior mean) lies in the view."""
        return z

    def layers(self, z: Tensor) -> dict[str, Tensor]:
        """The latent's stochastic layers by name (active units are counted per layer)."""
        return {"z": z}

    def statistics(self, params: Tensor) -> dict[str, float]:
        """Numbers about the family itself that `evaluate` reports beside the bounds, from the
        encoder's parameters of every point of a split (a codebook's usage and perplexity)."""
        return {}

    def set_step(self, step: int) -> None:
        """The 0-based global training step, for `scheduled` families."""

    def schedule_state(self) -> dict[str, float]:
        """The scheduled values in force (logged per epoch), e.g. {"tau": 0.5}."""
        return {}


class FlowPosterior(PosteriorFamily):
    """A normalizing flow: a base density pushed through invertible steps, whose density is known at
    its own samples only. Implement `sample_with_log_q(params, n) -> (z (n, B, dim), log q (n, B))`,
    differentiable (reparameterized); everything else follows from it."""

    kind = "flow"

    @abstractmethod
    def sample_with_log_q(self, params: Tensor, n: int) -> tuple[Tensor, Tensor]: ...

    def rsample(self, params: Tensor, n: int) -> Tensor:
        return self.sample_with_log_q(params, n)[0]

    def propose(self, params: Tensor, n: int) -> tuple[Tensor, Tensor]:
        return self.sample_with_log_q(params, n)

    def rsample_with_log_ratio(self, params: Tensor, n: int, prior: Prior) -> tuple[Tensor, Tensor]:
        z, log_q = self.sample_with_log_q(params, n)
        return z, log_q - prior.log_prob(z)

    def log_prob(self, z: Tensor, params: Tensor) -> Tensor:
        raise VaelabError(
            f"{type(self).__name__} is a flow: log q(z|x) is known only at its own samples "
            "(sample_with_log_q), not at an arbitrary z"
        )

    MEAN_SAMPLES = 100

    def mean(self, params: Tensor) -> Tensor:
        """E_q[z] has no closed form for a flow: the average of MEAN_SAMPLES samples estimates it
        (what reconstructions decode and the pictures place)."""
        return self.rsample(params, self.MEAN_SAMPLES).mean(0)

    def distribution(self, params: Tensor) -> D.Distribution | None:
        return None


class DeterministicPosterior(PosteriorFamily):
    """One code per x (a codebook's nearest entry, an autoencoder's z): a point mass, so log q = 0
    at its code, every sample is the code, and importance sampling has nothing to average.
    Implement `code(params) -> z (B, dim)`."""

    kind = "deterministic"

    @abstractmethod
    def code(self, params: Tensor) -> Tensor: ...

    def rsample(self, params: Tensor, n: int) -> Tensor:
        z = self.code(params)
        return z.expand(n, *z.shape)

    def log_prob(self, z: Tensor, params: Tensor) -> Tensor:
        return z.new_zeros(z.shape[:-1])

    def mean(self, params: Tensor) -> Tensor:
        return self.code(params)

    def distribution(self, params: Tensor) -> D.Distribution | None:
        return None


class Prior(nn.Module, ABC):
    """p(z). `attach(model)` is called once the model is built, for priors defined through it
    (the VampPrior's pseudo-inputs pass through the encoder)."""

    learned: bool = False
    support: str = "real"
    options: dict[str, registry.Option] = {}  # the prior's own settings (--option KEY=VALUE)

    @abstractmethod
    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) summed over the latent: (..., dim) -> (...)."""

    @abstractmethod
    def sample(self, n: int, device: Any = None, generator: torch.Generator | None = None) -> Tensor:
        """n draws, (n, dim)."""

    def distribution(self, device: Any = None) -> D.Distribution | None:
        return None

    def log_probs(self) -> Tensor:
        """For priors over one-hot codes: the normalised log-probabilities of each variable's
        classes, (N, K), which a relaxed categorical family's Concrete densities need."""
        raise VaelabError(f"{type(self).__name__} is not a prior over categorical variables")

    def attach(self, model: nn.Module) -> None:
        pass

    def images(self) -> dict[str, Tensor]:
        """Images the prior is made of, to show (the VampPrior's pseudo-inputs), by title; (N, C, H, W)."""
        return {}


class Likelihood(ABC):
    """p(x|z) over the pixels from the decoder's parameters: log_prob sums over pixels and
    broadcasts over leading sample dimensions, x (B, P) with params (..., B, n_params * P) -> (..., B)."""

    n_params: int = 1
    options: dict[str, registry.Option] = {}  # the likelihood's own settings (--option KEY=VALUE)

    @abstractmethod
    def log_prob(self, x: Tensor, params: Tensor) -> Tensor: ...

    @abstractmethod
    def mean(self, params: Tensor) -> Tensor: ...

    @abstractmethod
    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor: ...

    def distribution(self, params: Tensor) -> D.Distribution | None:
        return None


# -- the KL pair registry -------------------------------------------------------------------------

KLFn = Callable[..., Tensor]
_KL: dict[tuple[type, type], KLFn] = {}


def _call_kl(fn: KLFn, posterior: PosteriorFamily, prior: Prior, params: Tensor) -> Tensor:
    return fn(posterior, params, prior)


def register_kl(posterior: type, prior: type) -> Callable[[KLFn], KLFn]:
    """Declare KL(q || p) in closed form for a (posterior family, prior) pair, per latent group
    (dimension, or categorical variable): the KL is the sum over the last axis.

    @register_kl(GaussianPosterior, StandardNormal)
    def _(q, params, p): return ...   # (B, G)
    """

    def add(fn: KLFn) -> KLFn:
        _KL[(posterior, prior)] = fn
        return fn

    return add


def analytic_kl(posterior: PosteriorFamily, prior: Prior) -> Callable[[Tensor], Tensor] | None:
    """The closed-form KL for this pair as params -> (B, G) per latent group, or None: looked up
    along both classes' method resolution orders, most specific first."""
    for q in type(posterior).__mro__:
        for p in type(prior).__mro__:
            fn = _KL.get((q, p))
            if fn is not None:
                return functools.partial(_call_kl, fn, posterior, prior)
    return None


class Baseline(nn.Module, ABC):
    """A control variate b for the score-function estimator (--baseline NAME), subtracted from the
    learning signal f(z): E_q[(f(z) - b) grad log q(z|x)] = E_q[f(z) grad log q(z|x)] whenever b
    does not depend on the draw z it is subtracted from. Built as `cls(input_shape)` (C, H, W) and
    kept in the model: its parameters train with the model's optimizer, its buffers (running
    statistics) are saved in every checkpoint, so a resumed run continues it exactly.

    forward(x, signal) -> (b, scale, loss), called once per training step:
        x       the batch, (B, C, H, W)
        signal  the learning signal of each of the L draws per example, (L, B), detached
        b       broadcastable to (L, B): (B,) or a scalar for one baseline per example, (L, B)
                for one per draw (b[l] must not depend on draw l, as a leave-one-out mean)
        scale   a positive scalar tensor that does not depend on z, by which the encoder's whole
                gradient is divided (NVIL's variance normalisation; 1 for none)
        loss    a scalar tensor added to the training loss, which trains the baseline's own
                weights (0 for a baseline without any)
    Update running statistics only when `self.training` (evaluation must not move them)."""

    options: dict[str, registry.Option] = {}  # the baseline's own settings (--option KEY=VALUE)

    @abstractmethod
    def forward(self, x: Tensor, signal: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...


def check_baseline_output(baseline: Baseline, signal: Tensor, out: Any) -> tuple[Tensor, Tensor, Tensor]:
    """`out` as the estimator needs it (shapes only: nothing waits for the device), or a one-line
    error naming the baseline: a plugin's wrong shape must not broadcast silently into the loss."""
    name = getattr(type(baseline), "registered_name", type(baseline).__name__)
    if not (isinstance(out, tuple) and len(out) == 3 and all(isinstance(t, Tensor) for t in out)):
        raise VaelabError(f"baseline {name!r} must return three tensors (b, scale, loss); see vaelab.parts.Baseline")
    b, scale, loss = out
    try:
        fits = torch.broadcast_shapes(b.shape, signal.shape) == signal.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise VaelabError(
            f"baseline {name!r} returned b of shape {tuple(b.shape)} for a learning signal of shape "
            f"(L, B) = {tuple(signal.shape)}; return ({signal.shape[-1]},) or {tuple(signal.shape)}"
        )
    for what, t in (("scale", scale), ("loss", loss)):
        if t.numel() != 1:
            raise VaelabError(f"baseline {name!r} returned a {what} of shape {tuple(t.shape)}; it must be one number")
    return b, scale.reshape(()), loss.reshape(())


def has_closed_form_kl(latent: str, prior: str) -> bool:
    """Whether the registered latent family `latent` and prior `prior` ("auto": the family's own)
    have a closed-form KL (`register_kl`), read from the classes before any model is built."""
    q = registry.POSTERIORS[latent]
    p = registry.PRIORS[q.default_prior if prior == "auto" else prior]
    return any((qc, pc) in _KL for qc in q.__mro__ for pc in p.__mro__)


def require_analytic_kl(posterior: PosteriorFamily, prior: Prior) -> Callable[[Tensor], Tensor]:
    fn = analytic_kl(posterior, prior)
    if fn is None:
        raise VaelabError(
            f"--kl analytic: KL({type(posterior).__name__} || {type(prior).__name__}) has no closed "
            "form in vaelab; use --kl mc (the Monte-Carlo estimate)"
        )
    return fn


# The registries check that every registered class implements its interface.
registry.NETWORKS.base = NetworkFamily
registry.POSTERIORS.base = PosteriorFamily
registry.PRIORS.base = Prior
registry.LIKELIHOODS.base = Likelihood
registry.ACTIVATIONS.base = nn.Module  # built with no arguments: ACTIVATIONS[name]()
registry.BASELINES.base = Baseline

__all__ = [
    "Baseline",
    "DeterministicPosterior",
    "FlowPosterior",
    "LatentView",
    "Likelihood",
    "NetworkFamily",
    "PosteriorFamily",
    "Prior",
    "analytic_kl",
    "has_closed_form_kl",
    "register_kl",
    "require_analytic_kl",
]

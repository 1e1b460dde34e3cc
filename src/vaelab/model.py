"""The VAE: parts joined by distributions, each picked by name from its registry.

    x --encoder--> params --posterior family--> q(z|x)          prior --> p(z)
    z --decoder--> params --likelihood--> p(x|z)

Everything the objectives and the evaluation need is one quantity, computed here alone:

    log w = log p(x|z) + log p(z) - log q(z|x),   z ~ q(z|x)        (`log_weights`)

A new network, posterior family, prior or likelihood is a registered class (vaelab.parts); nothing
here or in the trainer changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .errors import VaelabError, require_count
from .parts import analytic_kl, require_analytic_kl
from .registry import BASELINES, INITS, LIKELIHOODS, NETWORKS, POSTERIORS, PRIORS

__all__ = ["VAE", "LogWeights", "given"]


def given(y):
    """The condition as extra arguments: () without one, so a model (or a plugin's override of
    encode/decode) that takes no condition keeps its one-argument calls."""
    return () if y is None else (y,)


@dataclass
class LogWeights:
    """n samples z ~ q(z|x) per point and the terms of their importance log-weights, each (n, B):
    log w = log_px_z - log_ratio, with log_ratio = log q(z|x) - log p(z). `log_q` (with its
    gradient to the encoder) is kept for proposals, which the score-function estimator needs."""

    z: torch.Tensor
    log_px_z: torch.Tensor
    log_ratio: torch.Tensor | None
    params: torch.Tensor
    log_q: torch.Tensor | None = None

    @property
    def ratio(self) -> torch.Tensor:
        """log q(z|x) - log p(z), (n, B) (computed unless log_weights was told ratio=False)."""
        if self.log_ratio is None:
            raise AssertionError("log_weights(..., ratio=False) did not compute log q - log p")
        return self.log_ratio

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_px_z - self.ratio


class VAE(nn.Module):
    checkpoint_info: dict  # {"epoch", "step"} of the weights a loaded model holds

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(cfg.input_shape)
        self.latent = POSTERIORS[cfg.latent](cfg)
        self.prior = PRIORS[self.latent.default_prior if cfg.prior == "auto" else cfg.prior](cfg, self.latent)
        if self.prior.support != self.latent.support:
            raise VaelabError(
                f"--prior {cfg.prior} is a prior over {self.prior.support} values, but --latent "
                f"{cfg.latent} has {self.latent.support} latents; pick a prior for them "
                f"(--prior auto gives {self.latent.default_prior})"
            )
        if cfg.hard and not self.latent.relaxed:
            raise VaelabError(
                f"--hard (straight-through) needs a latent trained through a relaxation "
                f"(--latent categorical); --latent {cfg.latent} has none"
            )
        self.likelihood = LIKELIHOODS[cfg.likelihood]()
        family = NETWORKS[cfg.network]
        self.network = family
        # a conditional network takes the batch's labels y: the bounds are on -log p(x|y)
        self.conditional: bool = family.conditional
        self.n_classes: int | None = cfg.n_classes if self.conditional else None
        self.encoder = family.encoder(cfg, self.input_shape, self.latent.n_params)
        self.decoder = family.decoder(cfg, self.latent.decoder_dim, self.input_shape, self.likelihood.n_params)
        for net in (self.encoder, self.decoder):
            INITS[cfg.init](net)
        # The score-function estimator's control variate: model state (a running average, or
        # the weights of a learned b(x)), so it is checkpointed and trained with the rest.
        self.baseline = BASELINES[cfg.baseline](self.input_shape) if cfg.baseline != "none" else None
        self.prior.attach(self)

    def init_output_bias(self, mean_image: torch.Tensor) -> None:
        """Start the decoder at the data's mean: the output bias of every pixel's mean parameter
        is logit(mean training pixel), clipped to [0.001, 0.999] (the IWAE code's
        `get_train_bias`), so an untrained model already predicts the average image."""
        if not self.network.per_pixel_output:
            raise VaelabError(
                f"--output-bias data-mean needs a network with one output bias per pixel; "
                f"--model {self.cfg.network} has none"
            )
        p = mean_image.flatten().double().clamp(1e-3, 1 - 1e-3)
        self.network.set_output_bias(self.decoder, (p.log() - (-p).log1p()).float())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the position in training -----------------------------------------------------------
    def set_step(self, step: int) -> None:
        """Tell a scheduled posterior family (the categorical temperature) the 0-based global
        training step; the trainer calls it before every step."""
        self.latent.set_step(step)

    def schedule_state(self) -> dict[str, float]:
        """The scheduled values now in force, e.g. {"tau": 0.5}, for the metrics."""
        return self.latent.schedule_state()

    # -- the two halves -------------------------------------------------------------------
    def encode(self, x, y=None):
        """Parameters of q(z|x) (q(z|x,y) for a conditional model) for images x (B, C, H, W): for
        the Gaussian, [mu, logvar]. Always float32: under mixed precision the networks run in
        bf16/fp16, while the densities, the KL and the likelihood are computed in float32."""
        self.check_input(x)
        if self.conditional:
            return self.encoder(x, self.check_condition(y, x.shape[0])).float()
        return self.encoder(x).float()

    def decode(self, z, y=None):
        """Parameters of p(x|z) (p(x|z,y)) for latents z (..., D), flat over pixels: (..., n_params * P).
        y, for a conditional model, holds one label per point of z's last batch axis."""
        z = self.latent.to_decoder(z)
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        if self.conditional:
            y = self.check_condition(y, lead[-1] if lead else 1)
            return self.decoder(flat, y.expand(*lead).reshape(-1)).reshape(*lead, -1).float()
        return self.decoder(flat).reshape(*lead, -1).float()

    def check_condition(self, y, batch: int) -> torch.Tensor:
        """The labels a conditional model needs: a long tensor (B,) of classes in 0..n_classes-1
        (a plain list or int is taken as labels); else one VaelabError naming what is expected."""
        if y is None:
            raise VaelabError(
                f"this model is conditional (--model {self.cfg.network}): it needs the class labels y of the "
                f"batch, {batch} of them in 0..{(self.n_classes or 0) - 1}"
            )
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y, device=self.device)
        if y.dim() == 0:
            y = y.expand(batch)
        if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or tuple(y.shape) != (batch,):
            raise VaelabError(
                f"a conditional model takes labels y as whole numbers of shape ({batch},), got "
                f"{y.dtype} {tuple(y.shape)}"
            )
        return y.long()

    def log_px_given_z(self, x, dec_params):
        """log p(x|z) in nats, x (B, C, H, W), dec_params (..., B, n*P) -> (..., B)."""
        return self.likelihood.log_prob(x.flatten(1), dec_params)

    # -- the one quantity ---------------------------------------------------------------------
    def log_weights(self, x, n: int, *, params=None, proposal: bool = False, ratio: bool = True, y=None) -> LogWeights:
        """n samples z ~ q(z|x) for each point of x and their log p(x|z), log q(z|x) - log p(z).

        proposal=False: path-wise samples (reparameterized; relaxed in training for a relaxed
        family), for gradients through z. proposal=True: samples of the model as evaluated (a
        discrete family's one-hot codes), with log q(z|x) kept in `log_q`: importance sampling
        and the score-function estimator. ratio=False skips log q - log p (an analytic KL).
        y: the batch's labels, for a conditional model (then log w bounds log p(x|y))."""
        require_count(n, "n (samples of z per point)")
        condition = given(y)
        params = self.encode(x, *condition) if params is None else params
        log_q = None
        if proposal:
            z, log_q = self.latent.propose(params, n)  # (n, B, D), (n, B)
            log_ratio = log_q - self.prior.log_prob(z) if ratio else None
        elif ratio:
            z, log_ratio = self.latent.rsample_with_log_ratio(params, n, self.prior)
        else:
            z, log_ratio = self.latent.rsample(params, n), None
        return LogWeights(z, self.log_px_given_z(x, self.decode(z, *condition)), log_ratio, params, log_q)

    def analytic_kl(self, params) -> torch.Tensor:
        """KL(q(z|x) || p(z)) in closed form, (B,); a VaelabError for a pair without one."""
        return self.kl_groups(params).sum(-1)

    def kl_groups(self, params) -> torch.Tensor:
        """The closed-form KL per latent group (dimension, categorical variable): (B, G)."""
        return require_analytic_kl(self.latent, self.prior)(params)

    def decode_view(self, v, y=None):
        """E[x|z] as images for points v of the latent's view (what the pictures place)."""
        return self.decode_mean(self.latent.view_to_latent(v, self.prior), *given(y))

    @property
    def has_analytic_kl(self) -> bool:
        return analytic_kl(self.latent, self.prior) is not None

    # -- what users ask of a trained model --------------------------------------------------
    def check_input(self, x) -> None:
        """A batch handed to the model from outside: a tensor of shape (B, *input_shape), else one
        VaelabError naming the shape expected (a cheap check: no pass over the values)."""
        if not isinstance(x, torch.Tensor):
            raise VaelabError(
                f"the model takes a torch.Tensor of shape (B, {', '.join(map(str, self.input_shape))}), got "
                f"{type(x).__name__}; convert it with torch.as_tensor(x, dtype=torch.float32)"
            )
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise VaelabError(
                f"the model takes a batch of shape (B, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )

    def posterior(self, x, y=None):
        """q(z|x) (q(z|x,y) for a conditional model) as a torch.distributions object."""
        return self.latent.distribution(self.encode(x, *given(y)))

    def prior_distribution(self):
        """p(z) as a torch.distributions object (None for a prior without one)."""
        return self.prior.distribution(self.device)

    def decode_mean(self, z, y=None):
        """E[x|z] (E[x|z,y]) as images (B, C, H, W)."""
        return self.likelihood.mean(self.decode(z, *given(y))).reshape(-1, *self.input_shape)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True, y=None):
        """n images from the model: z ~ p(z), then E[x|z] (mean=True) or a draw from p(x|z); for a
        conditional model, of the classes y (one label for all, or one per image)."""
        require_count(n, "n (images)")
        z = self.prior.sample(n, device=self.device, generator=generator)
        params = self.decode(z, *given(y))
        x = self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
        return x.reshape(n, *self.input_shape)

    @torch.inference_mode()
    def reconstruct(self, x, y=None):
        """E[x|z] at the posterior mean of z: the model's reconstruction of x (of x given y)."""
        return self.decode_mean(self.latent.mean(self.encode(x, *given(y))), *given(y))

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def layer_shapes(self, part: str | None = None) -> list[tuple[nn.Module, tuple, tuple]]:
        """(layer, input shape, output shape) of every linear and convolution layer, in call
        order, on one example (batch of 1): the encoder on an image, the decoder on one z.
        `part` = "encoder" or "decoder" limits it to that network."""
        kinds = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
        found: list[tuple[nn.Module, tuple, tuple]] = []
        parts = {"encoder": self.encoder, "decoder": self.decoder}
        nets = [parts[part]] if part else list(parts.values())
        hooks = [
            m.register_forward_hook(lambda m, i, o: found.append((m, tuple(i[0].shape), tuple(o.shape))))
            for net in nets
            for m in net.modules()
            if isinstance(m, kinds)
        ]
        y = (torch.zeros(1, dtype=torch.long, device=self.device),) if self.conditional else ()
        try:
            with torch.no_grad():
                if part in (None, "encoder"):
                    self.encoder(torch.zeros(1, *self.input_shape, device=self.device), *y)
                if part in (None, "decoder"):
                    self.decoder(torch.zeros(1, self.latent.decoder_dim, device=self.device), *y)
        finally:
            for h in hooks:
                h.remove()
        return found

    def flops_per_example(self) -> int:
        """2 x multiply-adds of one forward pass (encoder, then decoder on one z) through the
        linear and convolution layers, for benchmarks; elementwise work is not counted.
        Linear: in x out. Conv2d: output elements x in_channels/groups x kernel area (each output
        is a dot product). ConvTranspose2d: input elements x out_channels/groups x kernel area
        (each input scatters a kernel into every output channel)."""
        total = 0
        for m, shape_in, shape_out in self.layer_shapes():
            if isinstance(m, nn.Linear):
                total += m.in_features * m.out_features
            elif not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            elif isinstance(m, nn.ConvTranspose2d):
                total += math.prod(shape_in) * m.out_channels // m.groups * math.prod(m.kernel_size)
            else:
                total += math.prod(shape_out) * m.in_channels // m.groups * math.prod(m.kernel_size)
        return 2 * total


def n_pixels(model: VAE) -> int:
    return math.prod(model.input_shape)

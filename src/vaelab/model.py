"""The VAE: an encoder network and a latent family make q(z|x); a decoder network and a
likelihood make p(x|z); the prior comes with the latent family.

    x --encoder--> params --latent--> q(z|x)        z --decoder--> params --likelihood--> p(x|z)

The parts are picked by name from registries, so a new network, latent family or likelihood
is one entry in a dict, and nothing here or in the trainer changes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .baselines import BASELINES
from .config import ModelConfig
from .latents import LATENTS
from .likelihoods import LIKELIHOODS
from .networks import INITS, NETWORKS

__all__ = ["VAE", "NETWORKS", "LATENTS", "LIKELIHOODS"]


class VAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.input_shape = tuple(cfg.input_shape)
        self.latent = LATENTS[cfg.latent].from_config(cfg)
        self.likelihood = LIKELIHOODS[cfg.likelihood]()
        encoder_cls, decoder_cls = NETWORKS[cfg.network]
        self.encoder = encoder_cls(self.input_shape, self.latent.n_params, cfg.hidden, cfg.activation,
                                   channels=cfg.channels)
        self.decoder = decoder_cls(self.latent.dim, self.input_shape, self.likelihood.n_params,
                                   cfg.hidden, cfg.activation, channels=cfg.channels)
        for net in (self.encoder, self.decoder):
            INITS[cfg.init](net)
        # The score-function estimator's control variate: model state (a running average, or
        # the weights of a learned b(x)), so it is checkpointed and trained with the rest.
        self.baseline = BASELINES[cfg.baseline](self.input_shape) if cfg.baseline != "none" else None

    def init_output_bias(self, mean_image: torch.Tensor) -> None:
        """Start the decoder at the data's mean: the output bias of every pixel's mean parameter
        is logit(mean training pixel), clipped to [0.001, 0.999] (the IWAE code's
        `get_train_bias`), so an untrained model already predicts the average image."""
        p = mean_image.flatten().double().clamp(1e-3, 1 - 1e-3)
        self.decoder.set_output_bias((p.log() - (-p).log1p()).float())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the position in training -----------------------------------------------------------
    def set_step(self, step: int) -> None:
        """Tell the parts that follow a schedule (the categorical latent's temperature) the
        0-based global training step; the trainer calls it before every step."""
        if hasattr(self.latent, "set_step"):
            self.latent.set_step(step)

    def schedule_state(self) -> dict[str, float]:
        """The scheduled values now in force, e.g. {"tau": 0.5}, for the metrics."""
        return self.latent.schedule_state() if hasattr(self.latent, "schedule_state") else {}

    # -- the two halves -------------------------------------------------------------------
    def encode(self, x):
        """Parameters of q(z|x) for images x (B, C, H, W): for the Gaussian, [mu, logvar].
        Always float32: under mixed precision the networks run in bf16/fp16, while the
        densities, the KL and the likelihood are computed in float32."""
        return self.encoder(x).float()

    def decode(self, z):
        """Parameters of p(x|z) for latents z (..., D), flat over pixels: (..., n_params * P)."""
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*lead, -1).float()

    def log_px_given_z(self, x, dec_params):
        """log p(x|z) in nats, x (B, C, H, W), dec_params (..., B, n*P) -> (..., B)."""
        return self.likelihood.log_prob(x.flatten(1), dec_params)

    # -- what users ask of a trained model --------------------------------------------------
    def posterior(self, x):
        """q(z|x) as a torch.distributions object."""
        return self.latent.posterior(self.encode(x))

    def prior(self):
        return self.latent.prior(self.device)

    def decode_mean(self, z):
        """E[x|z] as images (B, C, H, W)."""
        return self.likelihood.mean(self.decode(z)).reshape(-1, *self.input_shape)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True):
        """n images from the model: z ~ p(z), then E[x|z] (mean=True) or a draw from p(x|z)."""
        z = self.latent.sample_prior(n, device=self.device, generator=generator)
        params = self.decode(z)
        x = self.likelihood.mean(params) if mean else self.likelihood.sample(params, generator)
        return x.reshape(n, *self.input_shape)

    @torch.inference_mode()
    def reconstruct(self, x):
        """E[x|z] at the posterior mean of z: the model's reconstruction of x."""
        return self.decode_mean(self.latent.mean(self.encode(x)))

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
        hooks = [m.register_forward_hook(lambda m, i, o: found.append((m, tuple(i[0].shape), tuple(o.shape))))
                 for net in nets for m in net.modules() if isinstance(m, kinds)]
        try:
            with torch.no_grad():
                if part in (None, "encoder"):
                    self.encoder(torch.zeros(1, *self.input_shape, device=self.device))
                if part in (None, "decoder"):
                    self.decoder(torch.zeros(1, self.latent.dim, device=self.device))
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
            elif isinstance(m, nn.ConvTranspose2d):
                total += math.prod(shape_in) * m.out_channels // m.groups * math.prod(m.kernel_size)
            else:
                total += math.prod(shape_out) * m.in_channels // m.groups * math.prod(m.kernel_size)
        return 2 * total


def n_pixels(model: VAE) -> int:
    return math.prod(model.input_shape)

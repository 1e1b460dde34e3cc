"""Will it fit? Memory a model or a step needs, checked before anything large is allocated, so a
setting that cannot fit is one clear line instead of a process the kernel kills without a word.

Sizes come from the model itself built on PyTorch's "meta" device (shapes without storage), so
they hold for every network, latent family and likelihood, a user's own included.
"""

from __future__ import annotations

import math

import torch

from .memory import human, require_host

FLOAT = 4  # bytes


def require(needed: float, what: str, fix: str, *, device: torch.device | str = "cpu") -> None:
    """Raise a VaelabError when `needed` bytes exceed what the device has free."""
    device = torch.device(device)
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        require_host(needed, what, fix, free, f"the GPU's {human(free)} free")
    else:
        require_host(needed, what, fix)


def meta_model(model_cfg):
    """The VAE of a model config with shapes but no storage (nothing allocated)."""
    from .model import VAE

    with torch.device("meta"):
        return VAE(model_cfg)


def model_bytes(model) -> int:
    return sum(p.numel() for p in model.parameters()) * FLOAT


def activation_sizes(model) -> tuple[int, int]:
    """Floats of one example's activations in the encoder, and of one latent sample's in the
    decoder (layer outputs, the activations after them, the likelihood's parameters per pixel)."""
    enc = sum(math.prod(out[1:]) for _, _, out in model.layer_shapes("encoder"))
    dec = sum(math.prod(out[1:]) for _, _, out in model.layer_shapes("decoder"))
    pixels = math.prod(model.input_shape)
    return 2 * enc, 2 * dec + (model.likelihood.n_params + 3) * pixels + 4 * model.latent.dim


def check_model(model_cfg, device="cpu") -> None:
    """The model's weights fit (loading a run, building a new model)."""
    meta = meta_model(model_cfg)
    require(
        2 * model_bytes(meta),
        f"a model of {sum(p.numel() for p in meta.parameters()):,} parameters",
        "make --hidden, --latent-dim or --channels smaller",
        device=device,
    )


def check_training(cfg, device="cpu") -> None:
    """One training step fits: weights, gradients and two optimizer moments, and the step's
    activations for a batch with its samples (L, or k for the IWAE objective), kept for the
    backward pass and their gradients."""
    meta = meta_model(cfg.model)
    t = cfg.train
    from .registry import OBJECTIVES

    samples = OBJECTIVES[t.objective].samples_per_point(t)
    enc, dec = activation_sizes(meta)
    weights = 4 * model_bytes(meta)
    step = 3 * FLOAT * t.batch_size * (enc + samples * dec)
    n = sum(p.numel() for p in meta.parameters())
    require(
        weights + step,
        f"training this model ({n:,} parameters, batch {t.batch_size} x {samples} sample(s) per point)",
        "make --hidden, --latent-dim or --channels smaller, or lower --batch-size, --samples or --k",
        device=device,
    )

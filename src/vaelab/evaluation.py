"""Evaluation: the ELBO on a data split and posterior inference, batched, without autograd.

Every evaluation runs under its own seed inside `torch.random.fork_rng`, so the figures are
reproducible and evaluating never disturbs the random stream of a training run.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from .model import VAE
from .objectives import elbo_terms


@contextmanager
def seeded(seed: int, device: torch.device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    n = values.numel()
    std = values.std().item() if n > 1 else 0.0
    return values.mean().item(), std / math.sqrt(n)


@torch.inference_mode()
def evaluate_elbo(model: VAE, x: torch.Tensor, batch_size: int = 1000, samples: int = 1,
                  kl: str = "analytic", seed: int = 0) -> dict:
    """Mean per-example `neg_elbo`, `rec`, `kl` in nats (and `neg_elbo_stderr`) over x."""
    was_training = model.training
    model.eval()
    device = model.device
    out = {"neg_elbo": [], "rec": [], "kl": []}
    with seeded(seed, device):
        for i in range(0, x.shape[0], batch_size):
            terms = elbo_terms(model, x[i:i + batch_size].to(device), samples, kl)
            for k in out:
                out[k].append(terms[k])
    model.train(was_training)
    per_example = {k: torch.cat(v) for k, v in out.items()}
    result = {k: _mean_and_stderr(v)[0] for k, v in per_example.items()}
    result["neg_elbo_stderr"] = _mean_and_stderr(per_example["neg_elbo"])[1]
    result["n"] = x.shape[0]
    return result


@torch.inference_mode()
def encode_all(model: VAE, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Posterior parameters for every row of x, batched: (N, n_params), on the CPU."""
    model.eval()
    return torch.cat([model.encode(x[i:i + batch_size].to(model.device)).cpu()
                      for i in range(0, x.shape[0], batch_size)])

"""KL warm-up and free bits: the two most asked-for remedies for posterior collapse, as pure
functions of the training position (so a resumed run continues them exactly).

KL warm-up (deterministic warm-up; Bowman et al. 2016, Sønderby et al. 2016, the VampPrior paper):
the KL's weight rises linearly from 0 to `--beta` over `--warmup-epochs` epochs, step by step,

    w_t = beta * min(1, (t + 1) / (warmup_epochs * steps_per_epoch)),   t = the 0-based global step.

Free bits (Kingma et al. 2016, "Improved variational inference with inverse autoregressive flow",
eq. 15): the KL of each latent group is not penalised below lambda nats, averaged over the batch:

    loss = mean_B rec + w * sum_g max(lambda, mean_B KL_g),

with groups the latent dimensions (or categorical variables) where the (posterior, prior) pair has
a closed-form KL, and the whole latent otherwise (a Monte-Carlo KL has no per-group split). The
reported terms are always the true `rec`, `kl` and `neg_elbo`: only the gradient changes.
"""

from __future__ import annotations

import torch

from .config import TrainConfig


def kl_weight(t: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The KL's weight at the 0-based global `step`."""
    if t.warmup_epochs <= 0:
        return t.beta
    return t.beta * min(1.0, (step + 1) / (t.warmup_epochs * max(steps_per_epoch, 1)))


def kl_penalty(kl_groups: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The batch's KL penalty, a scalar: sum over groups of max(lambda, batch mean of the group's
    KL); kl_groups is (B, G). Without free bits, the batch mean of the summed KL."""
    per_group = kl_groups.mean(0)
    if free_bits > 0:
        per_group = per_group.clamp_min(free_bits)
    return per_group.sum()

"""Baselines for the score-function (REINFORCE) estimator: control variates b that are
subtracted from the learning signal f(z) without changing the gradient's expectation,

    E_q[(f(z) - b) grad log q(z|x)] = E_q[f(z) grad log q(z|x)]   when b does not depend on z,

because E_q[grad log q(z|x)] = grad sum_z q(z|x) = grad 1 = 0. A good b is close to E_q[f(z)],
which makes (f - b) small and the estimator's variance with it.

A baseline is a part of the model (its state and weights live in the checkpoint, and the
optimizer trains the learned one), called as `b, loss = baseline(x, signal)`: b (B,) for each
example of the batch, and a loss to add to the objective that trains the baseline (zero for
the moving average). It updates its running statistics only in training mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .registry import BASELINES


class MovingAverageBaseline(nn.Module):
    """b = an exponential moving average of the batch-mean learning signal, one number for all
    examples. The first batch initialises it to its own mean; after that each batch uses the
    average of the batches before it, then updates it: avg <- decay avg + (1 - decay) mean(f)."""

    average: torch.Tensor
    updates: torch.Tensor

    def __init__(self, input_shape, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("average", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current(self, signal: torch.Tensor) -> torch.Tensor:
        """The average, or the batch mean of `signal` if nothing was averaged yet (a select,
        not a branch: no wait for the device)."""
        mean = signal.detach().mean().to(self.average.dtype)
        return torch.where(self.updates == 0, mean, self.average)

    def update(self, signal: torch.Tensor) -> None:
        if not self.training:
            return
        with torch.no_grad():
            mean = signal.detach().mean().to(self.average.dtype)
            ema = self.decay * self.average + (1 - self.decay) * mean
            self.average.copy_(torch.where(self.updates == 0, mean, ema))
            self.updates += 1

    def forward(self, x: torch.Tensor, signal: torch.Tensor):
        """signal (B,) -> baseline (B,), loss 0."""
        b = self.current(signal).expand(signal.shape[-1])
        self.update(signal)
        return b, signal.new_zeros(())


class LearnedBaseline(nn.Module):
    """b(x) = moving average + h(x): an input-dependent baseline, h a small MLP on the pixels
    (one hidden layer of 100 tanh units) trained by least squares to predict the centred
    signal f - average, as in NVIL (Mnih & Gregor 2014, section 3.3). The centring lets h
    start at zero (its last layer is zero-initialised) and learn only the per-example part,
    which a baseline fitted from scratch to signals of hundreds of nats would take thousands
    of Adam steps to reach."""

    def __init__(self, input_shape, hidden: int = 100, decay: float = 0.99):
        super().__init__()
        self.average = MovingAverageBaseline(input_shape, decay)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, signal: torch.Tensor):
        """signal (B,) -> baseline (B,) and the regression loss mean((f - b(x))^2) that trains h."""
        centre = self.average.current(signal)
        b = centre + self.net(x).squeeze(-1)
        loss = ((signal.detach() - b) ** 2).mean()
        self.average.update(signal)
        return b.detach(), loss


BASELINES.add("moving-average", MovingAverageBaseline)
BASELINES.add("learned", LearnedBaseline)

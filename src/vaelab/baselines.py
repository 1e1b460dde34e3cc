"""Baselines for the score-function (REINFORCE) estimator: control variates b that are
subtracted from the learning signal f(z) without changing the gradient's expectation,

    E_q[(f(z) - b) grad log q(z|x)] = E_q[f(z) grad log q(z|x)]   when b does not depend on z,

because E_q[grad log q(z|x)] = grad sum_z q(z|x) = grad 1 = 0. A good b is close to E_q[f(z)],
which makes (f - b) small and the estimator's variance with it.

A baseline is a part of the model (its state and weights live in the checkpoint, and the
optimizer trains the learned one) with the interface vaelab.parts.Baseline, called as
`b, scale, loss = baseline(x, signal)` with the learning signal of every draw (L, B): b (B,) for
each example, a positive scale that does not depend on z (1, or NVIL's running max(1, sd)) by
which the estimator divides the encoder's whole gradient, and a loss added to the objective to
train the baseline (zero for the moving average). It updates its running statistics only in
training mode. A user's own is registered with @vaelab.register_baseline(NAME).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .parts import Baseline
from .registry import BASELINES


@torch.no_grad()
def _running_update(average: torch.Tensor, updates: torch.Tensor, value: torch.Tensor, decay: float) -> None:
    """average <- value on the first update, then decay * average + (1 - decay) * value (a
    select, not a branch: no wait for the device); counts the update."""
    value = value.to(average.dtype)
    average.copy_(torch.where(updates == 0, value, decay * average + (1 - decay) * value))
    updates += 1


class MovingAverageBaseline(Baseline):
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
        _running_update(self.average, self.updates, signal.detach().mean(), self.decay)

    def forward(self, x: torch.Tensor, signal: torch.Tensor):
        """signal (L, B) -> baseline (B,), scale 1, loss 0."""
        b = self.current(signal).expand(signal.shape[-1])
        self.update(signal)
        return b, signal.new_ones(()), signal.new_zeros(())


class LearnedBaseline(Baseline):
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
        """signal (L, B) -> baseline (B,), scale 1, and the regression loss mean((f - b(x))^2)
        that trains h."""
        centre = self.average.current(signal)
        b = centre + self.net(x).squeeze(-1)
        loss = ((signal.detach() - b) ** 2).mean()
        self.average.update(signal)
        return b.detach(), signal.new_ones(()), loss


class NVILBaseline(LearnedBaseline):
    """NVIL's control variate (Mnih & Gregor 2014, section 3.3 and Algorithm 1): the learned
    baseline, and variance normalisation: the encoder's gradient is divided by max(1, sqrt(v)),
    v a running average of the variance of the centred signal f - b(x) over the batch (the
    first batch's own variance, then v <- decay v + (1 - decay) var, decay 0.99 like the
    average). In NVIL the learning signal holds the whole log-ratio, so dividing it divides the
    encoder's whole gradient; vaelab divides the analytic KL's gradient by the same scale (see
    `score_function_terms`), so with either KL the step's direction is unchanged in
    expectation and only its size is held near unit scale as the signal's spread changes. The
    floor at 1 leaves small signals alone."""

    variance: torch.Tensor
    updates: torch.Tensor

    def __init__(self, input_shape, hidden: int = 100, decay: float = 0.99):
        super().__init__(input_shape, hidden, decay)
        self.register_buffer("variance", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, signal: torch.Tensor):
        b, _, loss = super().forward(x, signal)
        if self.training:
            _running_update(self.variance, self.updates, (signal.detach() - b).var(unbiased=False), self.average.decay)
        return b, self.variance.sqrt().clamp(min=1.0), loss


BASELINES.add("moving-average", MovingAverageBaseline)
BASELINES.add("learned", LearnedBaseline)
BASELINES.add("nvil", NVILBaseline)

"""A baseline of your own for the score-function (REINFORCE) estimator: the leave-one-out
baseline of Kool, van Hoof & Welling (2019, "Buy 4 REINFORCE samples, get a baseline for free!").
With L draws of z per example, draw l's baseline is the mean learning signal of the other L - 1,

    b_l = (sum_j f(z_j) - f(z_l)) / (L - 1),

which does not depend on z_l, so the gradient stays unbiased, and has no weights to learn.

$ vaelab train --plugin examples/leave_one_out_baseline.py --preset gumbel-softmax-paper --estimator score-function --baseline leave-one-out --samples 4 --out runs/sf-loo

A baseline subclasses vaelab.parts.Baseline: it is built with the input shape and called with
the batch and the (L, B) learning signal; it returns b, a scale by which the encoder's gradient is
divided (1 here) and a loss that trains its own weights (0 here). See vaelab/baselines.py for the
moving average and NVIL's learned baseline.
"""

import torch

import vaelab
from vaelab.parts import Baseline


@vaelab.register_baseline("leave-one-out")
class LeaveOneOut(Baseline):
    def __init__(self, input_shape):
        super().__init__()

    def forward(self, x: torch.Tensor, signal: torch.Tensor):
        draws = signal.shape[0]
        if draws < 2:
            raise vaelab.VaelabError("the leave-one-out baseline needs two or more draws per example: add --samples 4")
        b = (signal.sum(0, keepdim=True) - signal) / (draws - 1)  # (L, B)
        return b, signal.new_ones(()), signal.new_zeros(())

"""Adagrad whose running sum of squared gradients starts at S instead of 0: each weight moves by
lr g / sqrt(S + its sum of g^2 so far). While a weight's squared gradients add up to less than S
it moves as in plain SGD at step lr / sqrt(S) (10^-4 for S = 10^4 and the AEVB step 0.01); after
that, as in Adagrad. torch's Adagrad (S = 0) moves every weight by the whole step lr from the
first one. How long the SGD-like start lasts depends on the weight: in the N_z = 2 Frey Face run
of docs/reproductions.md (the command below with --epochs 56658), after 6912 steps the squares
had added up to a median 116 for the decoder's output weights and 2150 for the encoder's first
layer, and past 10^4 for a tenth of the encoder's first layer.

$ vaelab train --plugin examples/adagrad_initial_sum.py --preset aevb-frey --optimizer adagrad-sum1e4 --latent-dim 2 --out runs/frey-sum1e4

`--optimizer adagrad-sum1e3`, `adagrad-sum1e4`, `adagrad-sum1e5` start the sums at 10^3, 10^4,
10^5. The running sums are the optimizer's state, saved with every checkpoint, so `vaelab train
--resume` continues them exactly. Neither the AEVB paper nor Kingma's code of the time starts
Adagrad this way: the example exists to test whether a slow, SGD-like start explains the paper's
Frey Face curves (docs/reproductions.md, "Figure 2: the paper's early curves").
"""

import vaelab
from vaelab.optim import adagrad

INITIAL_SUMS = {"adagrad-sum1e3": 1e3, "adagrad-sum1e4": 1e4, "adagrad-sum1e5": 1e5}


def _builder(initial_sum: float):
    def build(params, t, device):
        opt = adagrad(params, t, device)  # vaelab's own Adagrad, its sums then started at S
        for state in opt.state.values():
            state["sum"].fill_(initial_sum)
        return opt

    return build


for _name, _sum in INITIAL_SUMS.items():
    vaelab.register_optimizer(_name)(_builder(_sum))

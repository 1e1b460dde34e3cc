"""An optimizer of your own: Adagrad as Kingma's code of the AEVB paper's time ran it, whose
first steps only add their squared gradients to the running sums and move no weight (anglepy's
`step_pvem`, October 2013: `warmup=10`, and it updates once `nsteps > warmup`, so 11 steps warm
up). Every later step is torch's Adagrad.

$ vaelab train --plugin examples/warmup_adagrad.py --preset aevb-frey --optimizer adagrad-warmup --out runs/frey-warmup

The function gets the parameters, the train settings (`--lr`, `--weight-decay`, ...; see
vaelab.config.TrainConfig) and the device, and returns a torch optimizer; its state is saved with
every checkpoint, so `vaelab train --resume` continues it exactly.
"""

import torch

import vaelab

WARMUP = 11  # steps that only accumulate


class WarmupAdagrad(torch.optim.Adagrad):
    def __init__(self, params, warmup: int, **kwargs):
        super().__init__(params, **kwargs)
        self.warmup = warmup

    @torch.no_grad()
    def step(self, closure=None):
        first = self.param_groups[0]["params"][0]
        if int(self.state[first]["step"]) >= self.warmup:  # the count is saved with the state
            return super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                state["sum"].addcmul_(g, g)
                state["step"] += 1
        return None


@vaelab.register_optimizer("adagrad-warmup")
def adagrad_warmup(params, t, device):
    return WarmupAdagrad(params, WARMUP, lr=t.lr, weight_decay=t.weight_decay)

"""An initialisation of your own: that of Kingma's code of the AEVB paper's time (anglepy,
April 2014, `models/DLVM.py`, `init_w`). Every weight and bias from N(0, 0.01^2) as vaelab's
`--init normal`, except that the encoder's log-variance output (its weights and biases) and the
decoder's output biases start at 0, so q(z|x) starts as N(mu, I) for every x.

$ vaelab train --plugin examples/dlvm_init.py --preset aevb-frey --init normal-dlvm --out runs/frey-dlvm-init

The function gets one network (the encoder, then the decoder) and sets its weights in place; it
runs once, before training, and a resumed run loads the trained weights instead.
"""

import torch
from torch import nn

import vaelab
from vaelab.networks import MLPDecoder, MLPEncoder, init_normal


@vaelab.register_init("normal-dlvm")
def normal_dlvm(net):
    if not isinstance(net, (MLPEncoder, MLPDecoder)):  # which outputs are log-variances is the MLP's layout
        raise vaelab.VaelabError(
            f"--init normal-dlvm is DLVM's initialisation of --model mlp, not of {type(net).__name__}"
        )
    init_normal(net)
    out = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        if isinstance(net, MLPEncoder):  # outputs (mu, log sigma^2): zero the second half
            half = out.out_features // 2
            out.weight[half:].zero_()
            out.bias[half:].zero_()
        else:  # MLPDecoder: its output biases (DLVM's out_b and out_logvar_b)
            out.bias.zero_()

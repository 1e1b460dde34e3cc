"""An initialisation of your own: the AEVB paper's "random sampling from N(0, 0.01)" read as a
variance, every weight and bias from N(0, 0.1^2), where vaelab's `--init normal` reads 0.01 as
the standard deviation (as Kingma's code of the time does).

$ vaelab train --plugin examples/variance_init.py --preset aevb-frey --init normal-variance --out runs/frey-variance-init

The function gets one network (the encoder, then the decoder) and sets its weights in place; it
runs once, before training, and a resumed run loads the trained weights instead.
"""

import vaelab
from vaelab.networks import init_normal


@vaelab.register_init("normal-variance")
def normal_variance(net):
    init_normal(net, std=0.1)

"""A data set of your own: Frey Face split as Kingma's 2014 code splits it, 1600 training frames
and the other 365 held out (nips14-ssl, gpulearn_z_x.py: `n_train = 1600`, after shuffling the
frames), where vaelab's built-in `frey_face` trains the AEVB protocol on 1765 and holds out 200.

$ vaelab train --plugin examples/frey_split_1600.py --preset aevb-frey --dataset frey_face_1600 --weight-decay 0.000625 --latent-dim 10 --epochs 62500 --out runs/frey-1600-nz10

(62500 epochs of 1600 frames are the figure's 10^8 examples; the weight decay is the preset's
1/N for N = 1600.) The frames keep vaelab's fixed random order, so the 365 held out here are
frey_face's 200 test frames plus the last 165 of its training frames: the split is not the one
Kingma's code drew (its shuffle was not seeded for the paper), only the same size;
`--dataset frey_face_1600b` holds out 365 others.
"""

import torch

import vaelab
from vaelab.data import load_split

N_TRAIN, N_VALID = 1600, 200  # valid: the last 200 training frames, when not --full-train


@vaelab.register_dataset("frey_face_1600")
class FreyFace1600(vaelab.data.DataSource):
    shape = (1, 28, 20)
    continuous = True
    description = "Frey Face, 1600 training frames and 365 held out (Kingma's 2014 split sizes)"
    rotate = 0  # frames moved from the front of vaelab's order to its end before splitting

    def load(self, split, data_dir, full_train):
        # vaelab's frame order: its training frames (train + valid), then its 200 test frames
        head = load_split("frey_face", "train", data_dir, full_train=True).images
        frames = torch.cat([head, load_split("frey_face", "test", data_dir).images]).roll(-self.rotate, 0)
        train_end = N_TRAIN if full_train else N_TRAIN - N_VALID
        rows = {"train": slice(train_end), "valid": slice(N_TRAIN - N_VALID, N_TRAIN), "test": slice(N_TRAIN, None)}
        return frames[rows[split]], None


@vaelab.register_dataset("frey_face_1600b")
class FreyFace1600b(FreyFace1600):
    """The same sizes, another 365 held out: the first 365 frames of vaelab's order, none of
    which frey_face_1600 holds out (a second draw, to see how much the choice of frames moves a
    test bound)."""

    description = "Frey Face, 1600 training frames and another 365 held out"
    rotate = 365

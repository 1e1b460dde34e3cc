"""Every registry of named parts, gathered for the configuration's choices.

Each registry lives beside its parts (NETWORKS in networks.py, LATENTS in latents.py, ...); a
setting's choices are the keys of its registry, so a part added there is accepted everywhere.
"""

from .baselines import BASELINES
from .latents import LATENTS
from .likelihoods import LIKELIHOODS
from .networks import ACTIVATIONS, INITS, NETWORKS
from .objectives import ESTIMATORS, OBJECTIVES
from .optim import OPTIMIZERS
from .schedules import LR_SCHEDULES

__all__ = ["ACTIVATIONS", "BASELINES", "ESTIMATORS", "INITS", "LATENTS", "LIKELIHOODS", "LR_SCHEDULES",
           "NETWORKS", "OBJECTIVES", "OPTIMIZERS"]

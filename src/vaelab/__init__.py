"""vaelab: variational auto-encoders (Kingma & Welling 2014) and what grew from them.

    import vaelab
    run = vaelab.train(vaelab.build_config("pytorch-examples"), "runs/pe")
    model = vaelab.load(run)

Your own parts, without editing vaelab (see examples/ and vaelab.parts):

    @vaelab.register_network("resnet")      class ResNet(vaelab.parts.NetworkFamily): ...
    @vaelab.register_latent("laplace")      class Laplace(vaelab.parts.PosteriorFamily): ...
    @vaelab.register_prior("mine")          class Mine(vaelab.parts.Prior): ...
    @vaelab.register_likelihood("poisson")  class Poisson(vaelab.parts.Likelihood): ...
    @vaelab.register_objective("mine")      def mine(model, x, ctx): ...
    @vaelab.register_dataset("faces")       class Faces(vaelab.data.DataSource): ...
    @vaelab.register_optimizer("mine")      def mine(params, train_settings, device): ...
    @vaelab.register_init("mine")           def mine(network): ...  (sets its weights in place)
    @vaelab.register_activation("swish")    class Swish(torch.nn.Module): ...
    @vaelab.register_lr_schedule("halve")   def halve(base_lr, epoch): return base_lr / 2**epoch
    @vaelab.register_baseline("loo")        class LOO(vaelab.parts.Baseline): ...  (score-function)

Names are looked up on first use (PEP 562), so `import vaelab` and `vaelab --help` do not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "train": "api",
    "load": "api",
    "evaluate": "api",
    "encode": "api",
    "reconstruct": "api",
    "sample": "api",
    "plot": "api",
    "report": "api",
    "reproduce": "api",
    "trust_plugins": "api",
    "build_config": "config",
    "Config": "config",
    "DataConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "PRESETS": "config",
    "VAE": "model",
    "VaelabError": "errors",
    "register_network": "registry",
    "register_latent": "registry",
    "register_prior": "registry",
    "register_likelihood": "registry",
    "register_objective": "registry",
    "register_estimator": "registry",
    "register_dataset": "registry",
    "register_optimizer": "registry",
    "register_init": "registry",
    "register_activation": "registry",
    "register_baseline": "registry",
    "register_lr_schedule": "registry",
    "register_kl": "parts",
    "Option": "registry",
}
_MODULES = (
    "api",
    "parts",
    "registry",
    "config",
    "data",
    "objectives",
    "evaluation",
    "checkpoint",
    "viz",
    "reproduce",
    "model",
    "runs",
    "plugins",
    "errors",
)

__all__ = [
    "PRESETS",
    "Option",
    "VAE",
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "VaelabError",
    "build_config",
    "encode",
    "evaluate",
    "load",
    "plot",
    "reconstruct",
    "register_activation",
    "register_baseline",
    "register_dataset",
    "register_estimator",
    "register_init",
    "register_kl",
    "register_latent",
    "register_likelihood",
    "register_lr_schedule",
    "register_network",
    "register_objective",
    "register_optimizer",
    "register_prior",
    "report",
    "reproduce",
    "sample",
    "train",
    "trust_plugins",
]

if TYPE_CHECKING:
    from .api import encode, evaluate, load, plot, reconstruct, report, reproduce, sample, train, trust_plugins
    from .config import PRESETS, Config, DataConfig, ModelConfig, TrainConfig, build_config
    from .errors import VaelabError
    from .model import VAE
    from .parts import register_kl
    from .registry import (
        Option,
        register_activation,
        register_baseline,
        register_dataset,
        register_estimator,
        register_init,
        register_latent,
        register_likelihood,
        register_lr_schedule,
        register_network,
        register_objective,
        register_optimizer,
        register_prior,
    )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'vaelab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])

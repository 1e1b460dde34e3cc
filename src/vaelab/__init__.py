"""vaelab: variational auto-encoders (Kingma & Welling 2014) and what grew from them."""

from .api import encode, evaluate, load, plot, reconstruct, sample, train
from .config import PRESETS, Config, DataConfig, ModelConfig, TrainConfig, build_config
from .errors import VaelabError
from .model import VAE

__all__ = ["train", "load", "evaluate", "encode", "reconstruct", "sample", "plot", "build_config",
           "Config", "DataConfig", "ModelConfig", "TrainConfig", "PRESETS", "VAE", "VaelabError"]

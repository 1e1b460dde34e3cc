"""The Python API: the same reach as the command line, each call one line into the module that
does the work (training, evaluation, viz, runs, reproduce).

    import vaelab
    run = vaelab.train(vaelab.build_config("pytorch-examples"), "runs/pe")
    model = vaelab.load("runs/pe")
    images = model.sample(64)
    print(vaelab.evaluate("runs/pe", split="test"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import Config
from .errors import VaelabError, require_count
from .evaluation import encode_run, evaluate_run, reconstruct_run
from .model import VAE
from .runs import check_resumable, load_run, save_evaluation
from .safefs import atomic_write, make_parent
from .training import train_run

if TYPE_CHECKING:
    from .viz.explore import Explorer

__all__ = [
    "train",
    "load",
    "load_run",
    "evaluate",
    "encode",
    "reconstruct",
    "sample",
    "plot",
    "report",
    "explorer",
    "reproduce",
    "save_evaluation",
    "save_npz",
    "check_resumable",
    "trust_plugins",
]


def train(
    config: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    tensorboard: bool = False,
    on_epoch: Sequence[Callable[[dict], None]] = (),
) -> Path:
    """Train a model described by `config` into the run directory `out` (see training.train_run)."""
    if not isinstance(config, Config):
        raise VaelabError(
            f"vaelab.train needs a Config as its first argument (vaelab.build_config(...)), got "
            f"{type(config).__name__} {config!r:.60}"
        )
    return train_run(
        config,
        out,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        log=log,
        tensorboard=tensorboard,
        on_epoch=on_epoch,
    )


def load(run: str | Path, device: str = "auto") -> VAE:
    """The trained model of a run directory, in eval mode."""
    return load_run(run, device)[1]


def evaluate(run: str | Path, split: str = "test", **kw: Any) -> dict:
    """neg_elbo, rec, kl, active units and, with iw_samples=K, the importance-sampled nll of a
    run on a split (see evaluation.evaluate_run)."""
    return evaluate_run(run, split, **kw)


def encode(run: str | Path, split: str = "test", **kw: Any) -> dict:
    """The posterior parameters of every point of a split, with labels (evaluation.encode_run)."""
    return encode_run(run, split, **kw)


def reconstruct(run: str | Path, split: str = "test", n: int = 32, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a split and their reconstructions (evaluation.reconstruct_run)."""
    return reconstruct_run(run, split, n, **kw)


def sample(
    run: str | Path, n: int = 64, *, seed: int = 0, device: str = "auto", label: int | Sequence[int] | None = None
) -> torch.Tensor:
    """n images E[x|z], z ~ p(z), on the CPU. For a conditional model, `label` is its class, or a
    list of classes: n images of each, class after class (E[x|z,y]); without it, the n images
    cycle through the classes."""
    require_count(n, "n")
    model = load(run, device)
    y = None
    if label is not None:
        labels = [label] if isinstance(label, int) else list(label)
        if not model.conditional:
            raise VaelabError("label: this run's model is not conditional (train one with --model cvae)")
        bad = [k for k in labels if not (isinstance(k, int) and 0 <= k < (model.n_classes or 0))]
        if not labels or bad:
            raise VaelabError(f"label: classes of this model are 0..{(model.n_classes or 0) - 1}, got {label!r}")
        y = torch.tensor(labels, device=model.device).repeat_interleave(n)
        n = y.shape[0]
    elif model.conditional:  # no class asked for: the images cycle through the classes
        y = torch.arange(n, device=model.device) % (model.n_classes or 1)
    return model.sample(n, generator=torch.Generator(device=model.device).manual_seed(seed), y=y).cpu()


def plot(run: str | Path, **kw: Any) -> list[Path]:
    """The pictures of a run as PNGs in its directory (viz.pictures.plot_run)."""
    from .viz.pictures import plot_run

    return plot_run(run, **kw)


def report(run: str | Path, **kw: Any) -> Path:
    """RUN/report.html (viz.report.report_run)."""
    from .viz.report import report_run

    return report_run(run, **kw)


def explorer(run: str | Path, **kw: Any) -> Explorer:
    """The model side of `vaelab explore` (viz.explore.explorer_for_run)."""
    from .viz.explore import explorer_for_run

    return explorer_for_run(run, **kw)


def reproduce(name: str, out: str | Path, **kw: Any) -> dict | Path:
    """Run a published protocol or figure to its end (vaelab.reproduce)."""
    from .reproduce import run_named

    return run_named(name, out, **kw)


def trust_plugins(run: str | Path) -> list[str]:
    """Allow the plugin files a run's config.json names to be imported when the run is loaded
    (what `--trust-plugins` does; vaelab.plugins): do it only for runs whose code you trust."""
    from .runs import trust_plugins as allow

    return allow(run)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Arrays to a .npz file, atomically."""
    path = Path(path)
    make_parent(path)
    with_suffix = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    atomic_write(with_suffix, write)
    return with_suffix

"""The Python API: the same reach as the command line.

    import vaelab
    run = vaelab.train(vaelab.build_config("pytorch-examples"), "runs/pe")
    model = vaelab.load("runs/pe")
    images = model.sample(64)
    print(vaelab.evaluate("runs/pe", split="test"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from . import distributed
from .config import Config
from .dataprep import load_inputs
from .errors import VaelabError
from .evaluation import active_units, encode_all, evaluate_elbo, evaluate_nll
from .model import VAE
from . import runs
from .training import Trainer, TrainingInterrupted, resolve_device


def train(config: Config, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, log=None, tensorboard: bool = False, on_epoch=()) -> Path:
    """Train a model described by `config` into the run directory `out`; returns `out`.

    With resume=True the saved config, weights, optimizer and RNG state continue the run
    exactly; `config.train.epochs` may extend it. With overwrite=True an existing run in `out`
    is replaced, but only once the new run has written its first checkpoint (vaelab.runs). With
    tensorboard=True each epoch's metrics also go to out/tensorboard (needs the `tensorboard`
    extra). Each of `on_epoch` is called with the epoch's metrics record."""
    from .tblog import TensorBoardLogger, require_tensorboard
    if tensorboard:
        require_tensorboard()  # before anything is written
    config = config.validate()
    ctx = distributed.init(config.train.device)
    with runs.training_dir(out, resume=resume, overwrite=overwrite, main=ctx.main,
                           log=log or _stderr) as slot:
        if slot.resume:
            saved = ckpt.load_config(slot.path)
            check_resumable(saved, config, slot.path)
            config.model.input_shape = list(saved.model.input_shape)  # the data must still have it
        trainer = Trainer(config, slot.path, resume=slot.resume, progress=progress, log=log)
        trainer.on_save.append(slot.saved)
        slot.on_move.append(trainer.moved_to)
        board = TensorBoardLogger(slot.path / "tensorboard", start_epoch=trainer.epoch) if tensorboard else None
        if board is not None:
            trainer.on_epoch.append(board)
        trainer.on_epoch.extend(on_epoch)
        try:
            trainer.fit()
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once, without saving
            if slot.checkpointed:
                raise TrainingInterrupted(f"interrupted; {out} keeps its last checkpoint (epoch {trainer.saved_epoch}); "
                                          f"continue with `vaelab train --resume {out}`") from None
            raise TrainingInterrupted("interrupted before the first checkpoint was written, so nothing was kept; "
                                      "run the same command again to start over") from None
        finally:
            if board is not None:
                board.close()
    return Path(out)


def _stderr(msg: str) -> None:
    import sys
    print(msg, file=sys.stderr)


# Settings a resumed run may change: none of them changes the mathematics of the run.
RESUMABLE = {"train.epochs", "train.device", "train.compile", "train.cuda_graphs", "data.data_dir"}


def check_resumable(saved: Config, new: Config, run_dir: Path) -> None:
    """A resumed run keeps its settings; only the number of epochs, the device, compilation
    and where the data lives may change."""
    old_flat, new_flat = _flatten(saved.to_dict()), _flatten(new.to_dict())
    changed = sorted(k for k in old_flat if k not in RESUMABLE and k != "model.input_shape"
                     and old_flat[k] != new_flat.get(k))
    if changed:
        raise VaelabError(f"cannot resume {run_dir} with different settings ({', '.join(changed)}); "
                          "only epochs, device, compile, cuda_graphs and data_dir may change")


def _flatten(d: dict) -> dict:
    return {f"{s}.{k}": v for s, part in d.items() for k, v in part.items()}


def load(run: str | Path, device: str = "auto") -> VAE:
    """The trained model of a run directory, in eval mode."""
    return ckpt.load_model(run, resolve_device(device))[1]


def load_run(run: str | Path, device: str = "auto", data_dir: str | None = None) -> tuple[Config, VAE]:
    cfg, model = ckpt.load_model(run, resolve_device(device))
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    return cfg, model


def evaluate(run: str | Path, split: str = "test", *, samples: int = 1, iw_samples: int | None = None,
             max_memory: int = 2 * 2**30, device: str = "auto", data_dir: str | None = None, seed: int = 0,
             progress: bool = False, relaxed: bool = False) -> dict:
    """`neg_elbo`, `rec`, `kl` (nats per example) of a trained run on a data split, the number of
    active units, and with `iw_samples` = K the importance-sampled `nll` (-mean L_K). With
    relaxed=True the ELBO terms are those of the latent as trained (a categorical latent's
    Gumbel-Softmax relaxation at the last training temperature) instead of the discrete model."""
    ctx = distributed.init(device)  # under torchrun, each rank evaluates its share of the points
    cfg, model = load_run(run, device, data_dir)
    if iw_samples is not None and iw_samples < 1:
        raise VaelabError(f"--iw-samples must be at least 1, got {iw_samples}")
    x = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape).images
    x = x[ctx.local_slice(x.shape[0])]
    result = {"split": split, "dataset": cfg.data.dataset, **model.checkpoint_info,
              **evaluate_elbo(model, x, cfg.train.eval_batch_size, samples=samples, kl=cfg.train.kl, seed=seed,
                               relaxed=relaxed, max_memory=max_memory)}
    mu = model.latent.mean(encode_all(model, x, cfg.train.eval_batch_size))
    result["active_units"] = active_units(mu)
    if iw_samples is not None:
        result.update(evaluate_nll(model, x, iw_samples, max_memory=max_memory, seed=seed,
                                   progress=progress and ctx.main))
    return result


def encode(run: str | Path, split: str = "test", *, device: str = "auto", data_dir: str | None = None) -> dict:
    """Posterior parameters of every point of a split, with 'labels', as arrays: 'mu' and 'logvar'
    for a Gaussian latent, 'probs' and 'log_probs' (N, K per point) for a categorical one."""
    cfg, model = load_run(run, device, data_dir)
    inputs = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape)
    params = encode_all(model, inputs.images, cfg.train.eval_batch_size)
    out = {name: value.numpy() for name, value in model.latent.named_params(params).items()}
    if inputs.labels is not None:
        out["labels"] = inputs.labels.numpy()
    return out


def reconstruct(run: str | Path, split: str = "test", n: int = 32, *, device: str = "auto",
                data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a split and their reconstructions, both (n, C, H, W) on the CPU."""
    cfg, model = load_run(run, device, data_dir)
    x = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape).images[:n]
    return x, model.reconstruct(x.to(model.device)).cpu()


def sample(run: str | Path, n: int = 64, *, seed: int = 0, device: str = "auto") -> torch.Tensor:
    model = load(run, device)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    return model.sample(n, generator=gen).cpu()


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    ckpt.make_parent(path)
    with_suffix = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    ckpt.atomic_write(with_suffix, write)
    return with_suffix


def _pictures(what) -> tuple[str, ...]:
    from .viz import PICTURES
    if what is None:
        return PICTURES
    names = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
    unknown = [w for w in names if w not in PICTURES]
    if unknown or not names:
        raise VaelabError(f"unknown picture {', '.join(map(repr, unknown)) or '(none given)'}; "
                          f"choose from {','.join(PICTURES)}")
    return tuple(p for p in PICTURES if p in names)


def plot(run: str | Path, *, what=None, device: str = "auto", data_dir: str | None = None, n: int = 64,
         seed: int = 0) -> list[Path]:
    """The pictures of a run as PNGs in its directory; `what` is a subset of curves, samples,
    reconstructions, manifold, latents (a list or comma-separated; default all). Returns the
    paths written. See vaelab.viz.pictures for what each shows."""
    from . import viz
    what = _pictures(what)
    run = Path(run)
    cfg, model = load_run(run, device, data_dir)
    view = viz.latent_view(model)
    paths = []
    if "curves" in what:
        history = ckpt.read_metrics(run)
        if history:
            paths.append(viz.save_curves(history, run / "curves.png", title=f"{run.name}  ({cfg.data.dataset})"))
    if "samples" in what:
        paths.append(viz.save_samples(model, run / "samples.png", n, seed))
    plane = view.kind == "gaussian" and view.dim == 2
    inputs = params = None
    if "reconstructions" in what or "latents" in what or ("manifold" in what and not plane):
        inputs = load_inputs(cfg.data, "test", expect_shape=cfg.model.input_shape)
    if "reconstructions" in what:
        paths.append(viz.save_reconstructions(model, inputs.images[:32], run / "reconstructions.png"))
    if "latents" in what or ("manifold" in what and not plane):
        params = encode_all(model, inputs.images, cfg.train.eval_batch_size)
    if "manifold" in what:
        if plane:
            paths.append(viz.save_manifold_2d(model, run / "manifold.png"))
        elif view.kind == "categorical":
            from .viz.latent import class_probs
            base = class_probs(model, params[:1], view).argmax(-1)[0]
            paths.append(viz.save_categorical_traversal(model, view, base, run / "manifold.png"))
        else:
            paths.append(viz.save_traversals(model, model.latent.mean(params), run / "manifold.png"))
    if "latents" in what:
        if view.kind == "categorical":
            paths.append(viz.save_class_usage(model, params, view, run / "latents.png"))
        else:
            paths.append(viz.save_latent_scatter(model.latent.mean(params), inputs.labels, run / "latents.png",
                                                 dataset=cfg.data.dataset))
    return paths


def save_evaluation(run: str | Path, result: dict, **settings) -> Path:
    """Keep an `evaluate` result in the run as evaluation_<split>.json (atomic), with the
    settings that produced it, for `vaelab report`."""
    import json
    path = Path(run) / f"evaluation_{result['split']}.json"
    ckpt.atomic_write_text(path, json.dumps({**result, **settings}, indent=2) + "\n")
    return path


def report(run: str | Path, *, device: str = "auto", data_dir: str | None = None) -> Path:
    """RUN/report.html: one self-contained page with the pictures (drawn first when missing or
    older than the weights), the saved evaluations, the metrics of every epoch and the config."""
    import json
    from .viz import PICTURES
    from .viz.report import write_report
    run = Path(run)
    cfg = ckpt.load_config(run)
    history = ckpt.read_metrics(run)
    weights = run / ckpt.WEIGHTS
    newest = max((p.stat().st_mtime for p in (weights, run / ckpt.METRICS) if p.is_file()), default=0.0)
    stale = [p for p in PICTURES if not (run / f"{p}.png").is_file() or (run / f"{p}.png").stat().st_mtime < newest]
    if stale == ["curves"] and not history:
        stale = []
    if stale:
        plot(run, what=stale, device=device, data_dir=data_dir)
    evaluations, stale = {}, []
    now = ckpt.weights_info(run).get("step")
    for path in sorted(run.glob("evaluation_*.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged side file does not stop the report
        if not isinstance(saved, dict):
            continue
        if saved.get("step") != now:   # measured on other weights: never shown as these weights' figures
            stale.append(f"{path.name} (measured at epoch {saved.get('epoch', '?')}; the weights are now those of "
                         f"epoch {ckpt.weights_info(run).get('epoch', '?')})")
            continue
        evaluations[path.stem.removeprefix("evaluation_")] = saved
    kind = cfg.model.latent if cfg.model.latent != "gaussian" else \
        ("gaussian2" if cfg.model.latent_dim == 2 else "gaussian")
    pictures = [(p, run / f"{p}.png") for p in PICTURES if (run / f"{p}.png").is_file()]
    return write_report(run / "report.html", title=run.resolve().name, config=cfg.to_dict(), history=history,
                        evaluations=evaluations, pictures=pictures, kind=kind, version=_package_version(),
                        stale=stale)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("vaelab")
    except PackageNotFoundError:
        return ""


def explorer(run: str | Path, *, device: str = "auto", data_dir: str | None = None):
    """The model side of `vaelab explore` (vaelab.viz.explore.Explorer), with the test posterior
    means when the data is at hand (to start from and to draw), else without."""
    from .viz.explore import Explorer
    cfg, model = load_run(run, device, data_dir)
    params = labels = None
    try:
        inputs = load_inputs(cfg.data, "test", expect_shape=cfg.model.input_shape)
        params, labels = encode_all(model, inputs.images, cfg.train.eval_batch_size), inputs.labels
    except VaelabError:
        pass
    return Explorer(model, params, labels)

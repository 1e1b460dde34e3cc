"""The run directory: everything about one run, written atomically, loaded without pickle.

    RUN/config.json          the full Config
    RUN/model.safetensors    the weights (what `vaelab.load` reads)
    RUN/resume.safetensors   weights, optimizer state, RNG state, position in the data, metric
                             history: one self-contained file, so a resume never mixes two saves
    RUN/metrics.jsonl        one JSON object per epoch

Every file is written to a temporary name in the same folder and moved into place with
os.replace, so a crash or Ctrl-C never leaves a half-written file under a final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config
from .errors import VaelabError
from .model import VAE

CONFIG, WEIGHTS, RESUME, METRICS = "config.json", "model.safetensors", "resume.safetensors", "metrics.jsonl"
FORMAT = "vaelab-run-1"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then move tmp_path to path; remove tmp_path on any failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def save_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_text(run_dir / CONFIG, json.dumps({"format": FORMAT, **cfg.to_dict()}, indent=2) + "\n")


def load_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; train one with `vaelab train --out {run_dir}`")
    if not path.is_file():
        raise VaelabError(f"{run_dir} is not a vaelab run (no {CONFIG}); give the folder `vaelab train --out` wrote")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaelabError(f"{path} is damaged ({e}); restore it or retrain the run") from None
    if not isinstance(d, dict) or d.pop("format", None) != FORMAT:
        raise VaelabError(f"{path} is not a {FORMAT} config; was it written by vaelab?")
    return Config.from_dict(d, source=str(path)).validate()


def _read_safetensors(path: Path):
    from safetensors import safe_open
    if not path.is_file():
        raise VaelabError(f"{path} is missing; the run has no saved weights yet (train it, or resume it)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(f"{path} is damaged or not a safetensors file ({e}); "
                          "retrain, or resume from a good copy") from None
    return tensors, json.loads(meta.get("vaelab", "{}"))


def _check_state_dict(model: VAE, tensors: dict, path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        detail = f"missing {missing[:3]}" if missing else f"shape differs for {wrong[:3]}" if wrong else \
            f"unexpected {sorted(set(got) - set(expected))[:3]}"
        raise VaelabError(f"{path} holds weights of a different model than {CONFIG} describes ({detail}); "
                          "was the file copied from another run?")


def save_weights(run_dir: Path, model: VAE, info: dict) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(run_dir / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"vaelab": json.dumps(info)}))


def weights_info(run_dir: str | Path) -> dict:
    """The metadata saved with the weights ({"epoch", "step"}), read without loading them."""
    from safetensors import safe_open
    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise VaelabError(f"{path} is missing; the run has no saved weights yet (train it, or resume it)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        info = json.loads(meta.get("vaelab", "{}"))
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(f"{path} is damaged or not a safetensors file ({e}); retrain, or resume from a good copy") from None
    if not isinstance(info, dict):
        raise VaelabError(f"{path} has metadata vaelab did not write; retrain, or resume from a good copy")
    return info


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Config, VAE]:
    """The run's config and its trained model (eval mode) on `device`."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    model = VAE(cfg.model)
    tensors, info = _read_safetensors(run_dir / WEIGHTS)
    _check_state_dict(model, tensors, run_dir / WEIGHTS)
    model.load_state_dict(tensors)
    # the schedules (the temperature) as in the last step taken, which the metrics also record
    model.set_step(max(int(info.get("step", 0)) - 1, 0))
    return cfg, model.to(device).eval()


# -- resume state: optimizer state flattened into tensors + JSON, no pickle ---------------------

def save_resume(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer, state: dict,
                tensors: dict[str, torch.Tensor]) -> None:
    """`state` is JSON-able (epoch, step, history...), `tensors` are extra tensors (rng, perm)."""
    out = {f"model/{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_sd = optimizer.state_dict()
    opt_scalars = {}
    for idx, st in opt_sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                out[f"optim/{idx}/{key}"] = value.detach().contiguous().cpu()
            else:
                opt_scalars[f"{idx}/{key}"] = value
    out.update({k: v.contiguous().cpu() for k, v in tensors.items()})
    meta = {"state": state, "param_groups": opt_sd["param_groups"], "optim_scalars": opt_scalars}
    atomic_write(run_dir / RESUME, lambda tmp: save_file(out, tmp, metadata={"vaelab": json.dumps(meta)}))


def load_resume(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer):
    """Restore model and optimizer in place; return (state, extra tensors)."""
    path = Path(run_dir) / RESUME
    tensors, meta = _read_safetensors(path)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    _check_state_dict(model, weights, path)
    model.load_state_dict(weights)
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, idx, key = k.split("/", 2)
            opt_state.setdefault(int(idx), {})[key] = v
    for k, v in meta["optim_scalars"].items():
        idx, key = k.split("/", 1)
        opt_state.setdefault(int(idx), {})[key] = v
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as e:
        raise VaelabError(f"{path}: optimizer state does not fit this run's optimizer ({e})") from None
    extra = {k: v for k, v in tensors.items() if not k.startswith(("model/", "optim/"))}
    return meta["state"], extra


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in history))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise VaelabError(f"{path} is damaged ({e})") from None

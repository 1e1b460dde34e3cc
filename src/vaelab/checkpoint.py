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
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config
from .errors import VaelabError
from .model import VAE
from .resources import check_model
from .safefs import atomic_write_all, no_link, parse_json, read_text

CONFIG, WEIGHTS, RESUME, METRICS = "config.json", "model.safetensors", "resume.safetensors", "metrics.jsonl"
FORMAT = "vaelab-run-1"


def _save_tensors(tensors: dict, path: str, metadata: dict) -> None:
    """safetensors' save_file, with its I/O failures (a full disk) raised as the OSError they are."""
    import re

    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), path) from None


def save_config(run_dir: Path, cfg: Config) -> None:
    atomic_write_all([_config_write(run_dir, cfg)])


def _config_write(run_dir: Path, cfg: Config):
    text = json.dumps({"format": FORMAT, **cfg.to_dict()}, indent=2) + "\n"
    return run_dir / CONFIG, lambda tmp: Path(tmp).write_text(text)


def load_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; train one with `vaelab train --out {run_dir}`")
    if not path.is_file():
        raise VaelabError(f"{run_dir} is not a vaelab run (no {CONFIG}); give the folder `vaelab train --out` wrote")
    d = parse_json(read_text(path, in_run=True), path, "restore it or retrain the run")
    if not isinstance(d, dict) or d.pop("format", None) != FORMAT:
        raise VaelabError(f"{path} is not a {FORMAT} config; was it written by vaelab?")
    from . import plugins

    plugins.require_trusted(plugins.recorded_plugins(d), path)  # a run's plugin files are code: only with leave
    if isinstance(d.get("data"), dict):  # a run saved before splits were versioned: the first way
        d["data"].setdefault("split_version", 1)
    return Config.from_dict(d, source=str(path)).validate()


def _read_safetensors(path: Path):
    from safetensors import safe_open

    _require_weights_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(
            f"{path} is damaged or not a safetensors file ({e}); retrain, or resume from a good copy"
        ) from None
    return tensors, _vaelab_metadata(meta, path)


def _require_weights_file(path: Path) -> None:
    """A weights file of the run itself: a regular file, not a link to somewhere else."""
    no_link(path, "file")
    if not path.is_file():
        raise VaelabError(f"{path} is missing; the run has no saved weights yet (train it, or resume it)")


def _check_finite(tensors: dict, path: Path) -> None:
    """Training never saves a NaN or an infinity (it stops first), so one in a weights file is damage."""
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise VaelabError(
            f"{path} holds NaN or infinite values (in {bad}); the file is damaged: restore it from a copy, "
            "or retrain the run"
        )


def _vaelab_metadata(meta: dict, path: Path) -> dict:
    """The JSON object vaelab stores in a safetensors header; anything else is damage."""
    try:
        info = json.loads(meta.get("vaelab", "{}"))
    except (json.JSONDecodeError, TypeError):
        info = None
    if not isinstance(info, dict):
        raise VaelabError(f"{path} carries metadata that vaelab did not write; retrain, or resume from a good copy")
    return info


def _check_state_dict(model: VAE, tensors: dict, path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"shape differs for {wrong[:3]}"
            if wrong
            else f"unexpected {sorted(set(got) - set(expected))[:3]}"
        )
        raise VaelabError(
            f"{path} holds weights of a different model than {CONFIG} describes ({detail}); "
            "was the file copied from another run?"
        )


def _weights_write(run_dir: Path, model: VAE, info: dict):
    tensors, aliases = unshare({k: v.detach() for k, v in model.state_dict().items()})
    meta = {"vaelab": json.dumps({**info, "aliases": aliases} if aliases else info)}
    return run_dir / WEIGHTS, lambda tmp: _save_tensors(tensors, tmp, meta)


def unshare(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors safetensors can write, on the CPU: a tensor that another name already holds (tied
    weights, a mask two layers share) is written once and recorded as an alias {name: the name
    written}; a different view of memory already written is written as its own copy. Loading
    (`_expand_aliases`) gives every name its values again; the module ties them as it was built."""
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[tuple] = set()
    for name, t in tensors.items():
        if t.numel() == 0:
            out[name] = t.cpu().clone()
            continue
        ptr = t.untyped_storage().data_ptr()
        ident = (t.device, ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if ident in seen:
            aliases[name] = seen[ident]
            continue
        shared = (t.device, ptr) in storages
        storages.add((t.device, ptr))
        seen[ident] = name
        out[name] = t.cpu().clone() if shared else t.contiguous().cpu()
    return out, aliases


def _expand_aliases(tensors: dict, info: dict, path: Path) -> dict:
    """The names `unshare` wrote once, given their values again."""
    aliases = info.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(a, str) and isinstance(b, str) and b in tensors for a, b in aliases.items()
    ):
        raise VaelabError(f"{path} is damaged (its shared-tensor table names tensors it does not hold); retrain")
    return {**tensors, **{a: tensors[b] for a, b in aliases.items()}}


def weights_info(run_dir: str | Path) -> dict:
    """The metadata saved with the weights ({"epoch", "step"}), read without loading them."""
    from safetensors import safe_open

    path = Path(run_dir) / WEIGHTS
    _require_weights_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(
            f"{path} is damaged or not a safetensors file ({e}); retrain, or resume from a good copy"
        ) from None
    return _vaelab_metadata(meta, path)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Config, VAE]:
    """The run's config and its trained model (eval mode) on `device`."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    check_model(cfg.model, device)
    model = VAE(cfg.model)
    tensors, info = _read_safetensors(run_dir / WEIGHTS)
    tensors = _expand_aliases(tensors, info, run_dir / WEIGHTS)
    _check_state_dict(model, tensors, run_dir / WEIGHTS)
    _check_finite(tensors, run_dir / WEIGHTS)
    model.load_state_dict(tensors)
    step = info.get("step", 0)
    step = step if isinstance(step, int) and step >= 0 else 0
    # the schedules (the temperature) as in the last step taken, which the metrics also record
    model.set_step(max(step - 1, 0))
    model.checkpoint_info = {"epoch": info.get("epoch"), "step": step}  # which weights these are
    return cfg, model.to(device).eval()


# -- resume state: optimizer state flattened into tensors + JSON, no pickle ---------------------


def save_checkpoint(
    run_dir: Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    state: dict,
    tensors: dict[str, torch.Tensor],
    history: list[dict],
    cfg: Config | None = None,
) -> None:
    """The resume state, the weights, the metrics and (given `cfg`) the config, written as one
    (atomic_write_all): a resumed run's config.json says its new number of epochs only once a
    checkpoint of it exists."""
    atomic_write_all(
        [
            _resume_write(run_dir, model, optimizer, state, tensors),
            _weights_write(run_dir, model, {"epoch": state["epoch"], "step": state["step"]}),
            _metrics_write(run_dir, history),
            *([_config_write(run_dir, cfg)] if cfg is not None else []),
        ]
    )


def _resume_write(
    run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer, state: dict, tensors: dict[str, torch.Tensor]
):
    """`state` is JSON-able (epoch, step, history...), `tensors` are extra tensors (rng, perm)."""
    out = {f"model/{k}": v.detach() for k, v in model.state_dict().items()}
    opt_sd = optimizer.state_dict()
    opt_scalars = {}
    for idx, st in opt_sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                out[f"optim/{idx}/{key}"] = value.detach().contiguous().cpu()
            else:
                opt_scalars[f"{idx}/{key}"] = value
    out.update({k: v.contiguous().cpu() for k, v in tensors.items()})
    out, aliases = unshare(out)
    meta = {"state": state, "param_groups": opt_sd["param_groups"], "optim_scalars": opt_scalars}
    if aliases:
        meta["aliases"] = aliases
    return run_dir / RESUME, lambda tmp: _save_tensors(out, tmp, {"vaelab": json.dumps(meta)})


def load_resume(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer):
    """Restore model and optimizer in place; return (state, extra tensors). Everything read is
    checked first (keys, types, every optimizer tensor's shape against its parameter's), so a
    damaged file is refused, never trained on."""
    path = Path(run_dir) / RESUME
    tensors, meta = _read_safetensors(path)
    tensors = _expand_aliases(tensors, meta, path)
    damaged = lambda what: VaelabError(f"{path} is damaged ({what}); resume from a good copy or retrain")
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    _check_state_dict(model, weights, path)
    _check_finite(tensors, path)
    state = meta.get("state")
    ints = ("epoch", "step", "pos")
    if not isinstance(state, dict) or any(not isinstance(state.get(k), int) or state[k] < 0 for k in ints):
        raise damaged(f"its position in training ({', '.join(ints)}) is missing or not counts")
    sums, history = state.get("sums"), state.get("history")
    if not (
        isinstance(sums, dict)
        and isinstance(sums.get("terms"), dict)
        and isinstance(sums.get("n"), int)
        and isinstance(sums.get("seconds"), (int, float))
    ):
        raise damaged("the running sums of the epoch are missing")
    if not isinstance(history, list) or any(not isinstance(r, dict) or "epoch" not in r for r in history):
        raise damaged("the metric history is missing or not records")
    if "rng/cpu" not in tensors or tensors["rng/cpu"].dtype != torch.uint8:
        raise damaged("the random number generator's state is missing")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, idx, key = k.split("/", 2)
            if not idx.isdigit() or int(idx) >= len(params):
                raise damaged(f"optimizer state {k} belongs to no parameter")
            opt_state.setdefault(int(idx), {})[key] = v
    scalars = meta.get("optim_scalars", {})
    if not isinstance(scalars, dict):
        raise damaged("the optimizer's scalars are not a table")
    for k, v in scalars.items():
        idx, _, key = k.partition("/")
        if not idx.isdigit() or int(idx) >= len(params) or not isinstance(v, (int, float)):
            raise damaged(f"optimizer scalar {k} is not a number of a parameter")
        opt_state.setdefault(int(idx), {})[key] = v
    fresh = _empty_optimizer_state(optimizer)
    for idx, st in opt_state.items():
        want = fresh.get(idx, {})
        if set(st) != set(want):
            raise damaged(f"the optimizer state of parameter {idx} has {sorted(st)}, expected {sorted(want)}")
        for key, value in st.items():
            ref = want[key]
            if torch.is_tensor(ref) and (
                not torch.is_tensor(value) or value.shape != ref.shape or value.dtype != ref.dtype
            ):
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise damaged(f"optimizer state {idx}/{key} has shape {shape}, its parameter needs {tuple(ref.shape)}")
    model.load_state_dict(weights)
    # the parameter groups (learning rate, betas, ...) come from this run's settings, not the file
    optimizer.load_state_dict({"state": opt_state, "param_groups": optimizer.state_dict()["param_groups"]})
    extra = {k: v for k, v in tensors.items() if not k.startswith(("model/", "optim/"))}
    return state, extra


def _empty_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    """What the optimizer's state of each parameter looks like after one step: names, shapes and
    dtypes to check a saved state against (taken on zero-gradient copies, so nothing changes)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if all(optimizer.state.get(p) for p in params):
        return {i: dict(optimizer.state[p]) for i, p in enumerate(params)}
    clones = [torch.zeros_like(p, requires_grad=True) for p in params]
    for c in clones:
        c.grad = torch.zeros_like(c)
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": clones[i : i + len(g["params"])]}
        for i, g in zip(_offsets(optimizer.param_groups), optimizer.param_groups)
    ]
    probe = type(optimizer)(groups)  # type: ignore[call-arg]  # Adam, Adagrad: defaults come from the groups
    probe.step()
    return {i: dict(probe.state[c]) for i, c in enumerate(clones)}


def _offsets(groups) -> list[int]:
    out, n = [], 0
    for g in groups:
        out.append(n)
        n += len(g["params"])
    return out


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_all([_metrics_write(run_dir, history)])


def _metrics_write(run_dir: Path, history: list[dict]):
    text = "".join(json.dumps(r) + "\n" for r in history)
    return run_dir / METRICS, lambda tmp: Path(tmp).write_text(text)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file() and not path.is_symlink():
        return []
    records = []
    fix = "resume the run to rewrite it"
    for n, line in enumerate(read_text(path, in_run=True).splitlines(), 1):
        if not line.strip():
            continue
        record = parse_json(line, path, fix, at=f" at line {n}")
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise VaelabError(f"{path} is damaged at line {n} (not a metrics record); {fix}")
        wrong = next((k for k, v in record.items() if v is not None and not isinstance(v, (int, float))), None)
        if wrong is not None:
            raise VaelabError(f"{path} is damaged at line {n} ({wrong} is {record[wrong]!r}, not a number); {fix}")
        records.append(record)
    return records

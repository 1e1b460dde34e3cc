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

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config
from .errors import VaelabError
from .model import VAE
from .resources import check_model

CONFIG, WEIGHTS, RESUME, METRICS = "config.json", "model.safetensors", "resume.safetensors", "metrics.jsonl"
FORMAT = "vaelab-run-1"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then move tmp_path to path; remove tmp_path on any failure. A file
    system that refuses (a read-only folder, a full disk, a path through a file) is a VaelabError
    naming the path; whatever was at `path` before is left as it was."""
    atomic_write_all([(Path(path), write)])


def atomic_write_all(writes: list[tuple[Path, Callable[[str], None]]]) -> None:
    """Write several files as one: each goes to a temporary name in its folder first, and only
    once all are written are they moved into place (renames need no space), so a failure half-way,
    a full disk say, leaves the previous set whole and consistent."""
    done: list[tuple[str, Path]] = []
    path = None
    try:
        for path, write in writes:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            done.append((tmp, path))
            write(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file a normal file's mode
        for tmp, target in done:
            os.replace(tmp, target)
    except OSError as e:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        if e.errno is None:
            raise  # not the file system's answer (an OSError a library raised for something else)
        raise _write_error(path or Path("."), e) from None
    except BaseException:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise


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


def make_parent(path: str | Path) -> Path:
    """Create the folder a file will be written to; a VaelabError where the file system refuses."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error(path, e) from None
    return path


def _write_error(path: Path, e: OSError) -> VaelabError:
    why = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.ENOENT: "its folder does not exist",
        errno.EISDIR: "it is a folder",
    }.get(e.errno or 0, e.strerror or str(e))
    fix = "free some space and run it again" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "choose another path"
    return VaelabError(f"cannot write {path}: {why}; {fix} (anything already there is unchanged)")


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
    if isinstance(d.get("data"), dict):  # a run saved before splits were versioned: the first way
        d["data"].setdefault("split_version", 1)
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
        raise VaelabError(
            f"{path} is damaged or not a safetensors file ({e}); retrain, or resume from a good copy"
        ) from None
    return tensors, _vaelab_metadata(meta, path)


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
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return run_dir / WEIGHTS, lambda tmp: _save_tensors(tensors, tmp, {"vaelab": json.dumps(info)})


def weights_info(run_dir: str | Path) -> dict:
    """The metadata saved with the weights ({"epoch", "step"}), read without loading them."""
    from safetensors import safe_open

    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise VaelabError(f"{path} is missing; the run has no saved weights yet (train it, or resume it)")
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
    _check_state_dict(model, tensors, run_dir / WEIGHTS)
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
) -> None:
    """The resume state, the weights and the metrics, written as one (atomic_write_all)."""
    atomic_write_all(
        [
            _resume_write(run_dir, model, optimizer, state, tensors),
            _weights_write(run_dir, model, {"epoch": state["epoch"], "step": state["step"]}),
            _metrics_write(run_dir, history),
        ]
    )


def _resume_write(
    run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer, state: dict, tensors: dict[str, torch.Tensor]
):
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
    return run_dir / RESUME, lambda tmp: _save_tensors(out, tmp, {"vaelab": json.dumps(meta)})


def load_resume(run_dir: Path, model: VAE, optimizer: torch.optim.Optimizer):
    """Restore model and optimizer in place; return (state, extra tensors). Everything read is
    checked first (keys, types, every optimizer tensor's shape against its parameter's), so a
    damaged file is refused, never trained on."""
    path = Path(run_dir) / RESUME
    tensors, meta = _read_safetensors(path)
    damaged = lambda what: VaelabError(f"{path} is damaged ({what}); resume from a good copy or retrain")
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    _check_state_dict(model, weights, path)
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
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise VaelabError(f"{path} is damaged at line {n} ({e}); resume the run to rewrite it") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise VaelabError(f"{path} is damaged at line {n} (not a metrics record); resume the run to rewrite it")
        records.append(record)
    return records

"""Run a protocol to its end, evaluate it the way the paper did, and write its row.

    DIR/reproduction.json     the row: the paper's number, ours (each seed, mean, sd), how far it got
                              (refreshed every RECORD_EVERY seconds while a seed trains, and on Ctrl-C)
    DIR/seed-<s>/             an ordinary vaelab run directory per seed (plot, report, evaluate it)

Re-running the same command continues where it stopped: each seed's run resumes exactly (as
`vaelab train --resume`), finished seeds are not trained again, and evaluations are kept in
DIR/seed-<s>/reproduction_eval.json with the training step they were measured at, so they are
only recomputed when the weights change.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint as ckpt
from ..errors import VaelabError
from ..runs import exclusive
from ..safefs import atomic_write_text
from .protocol import FIGURES, Metric, Protocol, get_protocol

REPRODUCTION = "reproduction.json"
EVAL_CACHE = "reproduction_eval.json"
FORMAT = "vaelab-reproduction-1"
PROGRESS_EVERY = 60.0  # seconds between "time left" lines
RECORD_EVERY = 300.0  # seconds between refreshes of reproduction.json while a seed trains


def seed_dir(out: Path, seed: int) -> Path:
    return Path(out) / f"seed-{seed}"


def command_line(name: str, out: str | Path, seeds: tuple[int, ...] | None, epochs: int | None) -> str:
    """The command that runs (and resumes) this reproduction."""
    parts = ["vaelab", "reproduce", name, "--out", str(out)]
    if seeds is not None:
        parts += ["--seeds", ",".join(map(str, seeds))]
    if epochs is not None:
        parts += ["--epochs", str(epochs)]
    return " ".join(parts)


def read_record(out: str | Path) -> dict | None:
    """DIR/reproduction.json, or None when there is none; a damaged one is an error."""
    path = Path(out) / REPRODUCTION
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VaelabError(
            f"{path} is damaged ({e}); delete it and run the same command again "
            "(the runs beside it are kept and resumed)"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("protocol"), str):
        raise VaelabError(f"{path} is not a vaelab reproduction record")
    return record


def _claim(out: Path, protocol: Protocol) -> None:
    """DIR must be new, empty, or this protocol's own directory."""
    if out.exists() and not out.is_dir():
        raise VaelabError(f"--out {out} is a file; give a directory for the reproduction")
    record = read_record(out) if out.is_dir() else None
    if record is not None and record["protocol"] != protocol.name:
        raise VaelabError(
            f"{out} holds the reproduction of {record['protocol']!r}, not {protocol.name!r}; give another --out"
        )
    strays = (
        [p.name for p in out.iterdir() if p.name != ".lock" and not (p.is_dir() and p.name.startswith("seed-"))]
        if record is None and out.is_dir()
        else []
    )
    if strays:
        raise VaelabError(
            f"{out} already holds other files ({', '.join(sorted(strays)[:3])}) and no {REPRODUCTION}; "
            "give a new or empty --out"
        )


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {cpu} ({os.cpu_count()} cores), {threads} thread{'s' * (threads != 1)}, torch {torch.__version__}"


def _machines(record: dict | None) -> list[str]:
    """The machines a record says its row ran on (older records name one, in `machine`)."""
    if record is None:
        return []
    return list(record.get("machines") or [record["machine"]])


def _version() -> tuple[str, str | None]:
    """The package version and, when it runs from a git checkout, the commit."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("vaelab")
    except PackageNotFoundError:
        v = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        sha = commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return v, sha


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{seconds / 86400:.1f} days"


def stopped_early(run: Path) -> bool:
    """Whether a seed's run ended by early stopping (the protocol's end, when the paper stops so)."""
    try:
        history = ckpt.read_metrics(run) if (run / ckpt.RESUME).is_file() else []
    except VaelabError:
        return False
    return bool(history and history[-1].get("stopped_early"))


def epochs_done(run: Path) -> int:
    """Completed epochs of a seed's run (its checkpointed metric records)."""
    try:
        return len(ckpt.read_metrics(run)) if (run / ckpt.RESUME).is_file() else 0
    except VaelabError:
        return 0


def _seconds_per_epoch(history: list[dict]) -> float | None:
    recent = [r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in history[-20:]]
    return statistics.median(recent) if recent else None


# -- evaluation as the paper did it ----------------------------------------------------------


def _weights_step(run: Path) -> int:
    return int(ckpt.weights_info(run).get("step", -1))


def evaluate_seed(
    protocol: Protocol,
    run: Path,
    *,
    data_dir: str | None,
    device: str,
    log: Callable[[str], None],
    on_compute: Callable[[], None] = lambda: None,
) -> dict[str, dict]:
    """Every metric of the protocol on this seed's final weights: {metric key: {value, stderr,
    seconds}}; cached in RUN/reproduction_eval.json for the weights' training step. `on_compute`
    is called before anything is computed (not when every metric is cached)."""
    from ..evaluation import evaluate_run as evaluate

    path = run / EVAL_CACHE
    step = _weights_step(run)
    cache: dict[str, Any] = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    if not isinstance(cache, dict) or cache.get("step") != step:
        cache = {"step": step, "metrics": {}}
    results: dict[str, dict] = cache["metrics"]
    todo: dict[tuple[str, bool], list[Metric]] = {}
    for m in protocol.metrics:
        if m.key not in results:
            todo.setdefault((m.split, m.name == "neg_elbo_relaxed"), []).append(m)
    for (split, relaxed), metrics in todo.items():
        k = max((m.k for m in metrics if m.k), default=None)
        log(
            f"reproduce {protocol.name}: evaluating {run.name} on {split}"
            + (f" (importance sampling, k = {k})" if k else "")
            + (" (relaxed)" if relaxed else "")
        )
        on_compute()
        start = time.perf_counter()
        result = evaluate(
            run, split, iw_samples=k, device=device, data_dir=data_dir, relaxed=relaxed, progress=sys.stderr.isatty()
        )
        seconds = time.perf_counter() - start
        for m in metrics:
            name = "nll" if m.name == "nll" else "neg_elbo"
            results[m.key] = {
                "value": result[name],
                "stderr": result[f"{name}_stderr"],
                "seconds": seconds,
                "active_units": result.get("active_units"),
                "n": result["n"],
            }
        atomic_write_text(path, json.dumps(cache, indent=2) + "\n")
    return results


# -- the row -----------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "value": statistics.fmean(values) if values else None,
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def build_record(
    protocol: Protocol,
    out: Path,
    seeds: tuple[int, ...],
    command: str,
    evaluations: dict[int, dict[str, dict]],
    machines: list[str],
) -> dict[str, Any]:
    """The row of reproduction.json from what is on disk now; `machines`, each machine that has
    trained or evaluated it, in order (a row begun on a GPU may be finished on a CPU)."""
    per_seed = []
    wall = 0.0
    for seed in seeds:
        run = seed_dir(out, seed)
        history = ckpt.read_metrics(run) if (run / ckpt.RESUME).is_file() else []
        wall += sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in history)
        ev = evaluations.get(seed, {})
        wall += sum({m["seconds"] for m in ev.values()})  # one evaluation may give several metrics
        per_seed.append(
            {
                "seed": seed,
                "epochs_run": len(history),
                "run": run.name,
                "stopped_early": bool(history and history[-1].get("stopped_early")),
                **{key: m["value"] for key, m in ev.items()},
            }
        )
    evaluated = [seed for seed in seeds if protocol.metric.key in evaluations.get(seed, {})]
    main = _summary([evaluations[s][protocol.metric.key]["value"] for s in evaluated])
    also = {}
    for m in protocol.also:
        vals = [evaluations[s][m.key]["value"] for s in seeds if m.key in evaluations.get(s, {})]
        also[m.key] = {"metric": m.to_dict(), "paper_value": protocol.paper_also.get(m.key), **_summary(vals)}
    epochs_run = min(p["epochs_run"] for p in per_seed)
    version, commit = _version()
    extra = {}
    if protocol.figure is not None:  # the curve the figure draws, small enough to commit
        extra["curve"] = run_curve(protocol, out, seeds[0])
    return {
        "format": FORMAT,
        "protocol": protocol.name,
        "paper": protocol.citation.to_dict(),
        "paper_value": protocol.paper_value,
        "metric": protocol.metric.to_dict(),
        "binarization": protocol.binarization(),
        "value": main["value"],
        "sd": main["sd"],
        "values": main["values"],
        "seeds": list(evaluated),
        "also": also,
        "complete": all(p["epochs_run"] >= protocol.epochs or p["stopped_early"] for p in per_seed)
        and len(evaluated) == len(seeds),
        "epochs_run": epochs_run,
        "epochs_total": protocol.epochs,
        "per_seed": per_seed,
        "wall_seconds": round(wall, 1),
        "machine": " + ".join(machines),
        "machines": machines,
        "vaelab_version": version,
        "vaelab_commit": commit,
        "command": command,
        "notes": protocol.notes,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def train_size(data) -> int:
    """Training examples per epoch of a built-in data set."""
    from ..data import DATASETS

    n_train, n_valid, _ = DATASETS[data.dataset].split_sizes
    return n_train + (n_valid if data.full_train else 0)


def write_record(out: Path, record: dict) -> Path:
    path = out / REPRODUCTION
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


# -- the run -----------------------------------------------------------------------------------


class _TimeLeft:
    """An on_epoch hook that prints where the protocol is and the time left, once a minute."""

    def __init__(self, protocol: Protocol, seed_index: int, n_seeds: int, target: int, log, per_epoch: float | None):
        self.protocol, self.seed_index, self.n_seeds, self.target, self.log = protocol, seed_index, n_seeds, target, log
        self.per_epoch = per_epoch
        self.last = time.monotonic()
        self.last_print = 0.0
        self.window: list[float] = []

    def left(self, epoch: int) -> float | None:
        if self.per_epoch is None:
            return None
        seeds_after = self.n_seeds - self.seed_index - 1
        return ((self.target - epoch) + seeds_after * self.target) * self.per_epoch

    def __call__(self, record: dict) -> None:
        now = time.monotonic()
        self.window = (self.window + [now - self.last])[-20:]
        self.last = now
        self.per_epoch = statistics.median(self.window)
        epoch = record["epoch"]
        if now - self.last_print >= PROGRESS_EVERY or epoch == self.target:
            self.last_print = now
            self.log(progress_line(self.protocol, self.seed_index, self.n_seeds, epoch, self.target, self.left(epoch)))


class _RecordRefresh:
    """An on_save hook that rewrites reproduction.json from the checkpoint just saved, every
    RECORD_EVERY seconds and when the run is stopped (Ctrl-C): a row killed or interrupted midway
    says how far it got (epochs, curve, wall time) instead of what it was when it started."""

    def __init__(self, write: Callable[[], object]):
        self.write, self.last = write, time.monotonic()

    def __call__(self, trainer) -> None:
        now = time.monotonic()
        if trainer.stop_requested or now - self.last >= RECORD_EVERY:
            self.write()
            self.last = now


def progress_line(
    protocol: Protocol, seed_index: int, n_seeds: int, epoch: int, target: int, left: float | None
) -> str:
    pct = 100.0 * epoch / target if target else 100.0
    eta = f"; about {format_duration(left)} of training left" if left is not None and epoch < target * n_seeds else ""
    return (
        f"reproduce {protocol.name}: seed {seed_index + 1} of {n_seeds}, epoch {epoch} of {target} ({pct:.1f} %){eta}"
    )


def reproduce(
    name: str,
    out: str | Path,
    *,
    seeds: tuple[int, ...] | None = None,
    epochs: int | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    cuda_graphs: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run protocol `name` into `out` to its end (or `epochs`, marked incomplete), evaluate each
    seed as the paper did, and write out/reproduction.json; returns the record. Re-running
    continues where it stopped."""
    from ..distributed import resolve_device
    from ..training import check_cuda_graphs
    from ..training import train_run as train

    log = log or (lambda msg: print(msg, file=sys.stderr))
    protocol = get_protocol(name)
    out = Path(out)
    if epochs is not None and epochs < 1:
        raise VaelabError(f"--epochs must be at least 1, got {epochs}")
    seeds = tuple(seeds) if seeds else protocol.seeds
    if len(set(seeds)) != len(seeds):
        raise VaelabError(f"--seeds lists a seed twice: {','.join(map(str, seeds))}")
    command = command_line(name, out, seeds if seeds != protocol.seeds else None, epochs)
    target = epochs or protocol.epochs
    configs = {
        seed: protocol.config(seed, epochs=target, data_dir=data_dir, device=device, cuda_graphs=cuda_graphs)
        for seed in seeds
    }
    check_cuda_graphs(cuda_graphs, resolve_device(device))  # before the folder is made
    _claim(out, protocol)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaelabError(f"cannot create {out} ({e.strerror}); choose a folder you can write to") from None
    with exclusive(out, f"vaelab reproduce {name}"):
        for seed in seeds:  # before any work: a run made with other settings must not become this row
            _check_own_run(seed_dir(out, seed), configs[seed], protocol)
        evaluations: dict[int, dict[str, dict]] = {}
        earlier = read_record(out)
        machines = _machines(earlier)
        here = _machine()

        def working_here() -> None:
            if here not in machines:
                machines.append(here)

        def save_record() -> dict:
            record = build_record(protocol, out, seeds, command, evaluations, machines)
            write_record(out, record)
            return record

        if earlier is None:  # from the first moment the folder says whose it is (and where it runs)
            working_here()
            save_record()
        cost = protocol.cpu_seconds_per_epoch
        for i, seed in enumerate(seeds):
            run = seed_dir(out, seed)
            done = epochs_done(run)
            history = ckpt.read_metrics(run) if done else []
            cost = _seconds_per_epoch(history) or cost
            hook = _TimeLeft(protocol, i, len(seeds), target, log, cost)
            log(
                progress_line(protocol, i, len(seeds), done, target, hook.left(done))
                + (" (continuing)" if 0 < done < target else "")
            )
            if done < target and not stopped_early(run):
                working_here()
                resume = (run / ckpt.RESUME).is_file()
                train(
                    configs[seed],
                    run,
                    resume=resume,
                    progress=progress,
                    log=log,
                    on_epoch=[hook],
                    on_save=[_RecordRefresh(save_record)],
                    continue_with=command,
                )
            evaluations[seed] = evaluate_seed(
                protocol, run, data_dir=data_dir, device=device, log=log, on_compute=working_here
            )
            record = save_record()
    log(summary_line(record))
    return record


def other_settings(run: Path, cfg) -> list[str]:
    """The settings in which a seed's run differs from `cfg`, the protocol's config for that seed
    (a run made before the protocol changed, or of another protocol, or on data since split
    differently); [] when it has no config yet."""
    from ..dataprep import split_changed
    from ..runs import changed_settings

    if not (run / ckpt.CONFIG).is_file():
        return []
    saved = ckpt.load_config(run)
    return changed_settings(saved, cfg) + (["data.split_version"] if split_changed(saved.data) else [])


def _check_own_run(run: Path, cfg, protocol: Protocol) -> None:
    """Refuse to continue, or to evaluate and record, a run made with other settings: its number
    would be reported as this protocol's."""
    changed = other_settings(run, cfg)
    if changed:
        raise VaelabError(
            f"{run} was made with other settings than protocol {protocol.name!r} has ({', '.join(changed)}); "
            f"give another --out, or delete {run} to run it again"
        )


def summary_line(record: dict) -> str:
    metric = record["metric"]["description"]
    if record["value"] is None:
        return f"reproduce {record['protocol']}: no seed evaluated yet"
    ours = f"{record['value']:.2f}" + (f" ± {record['sd']:.2f}" if record["sd"] is not None else "")
    paper = f", paper {record['paper_value']:.2f}" if record["paper_value"] is not None else ""
    state = (
        "complete" if record["complete"] else f"INCOMPLETE: {record['epochs_run']} of {record['epochs_total']} epochs"
    )
    return f"reproduce {record['protocol']}: {metric} {ours} over {len(record['values'])} seed(s){paper} ({state})"


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


# -- curves kept in a record -----------------------------------------------------------------

CURVE_POINTS = 80


def run_curve(protocol: Protocol, out: Path, seed: int) -> dict[str, list]:
    """The curve of one seed's run in `out` as it stands (empty before its first epoch)."""
    from ..dataprep import eval_split_for

    cfg = protocol.config(seed)
    run = seed_dir(out, seed)
    history = ckpt.read_metrics(run) if (run / ckpt.RESUME).is_file() else []
    return curve(history, train_size(cfg.data), eval_split_for(cfg.data, cfg.train.watch))


def curve(history: list[dict], train_size: int, eval_split: str) -> dict[str, list]:
    """The per-epoch bounds at about CURVE_POINTS log-spaced epochs: what a figure against
    'training samples evaluated' needs, small enough for reproduction.json."""
    if not history:
        return {}
    n = len(history)
    idx = np.unique(np.round(np.geomspace(1, n, min(CURVE_POINTS, n))).astype(int)) - 1
    rows = [history[i] for i in idx]
    return {
        "epoch": [r["epoch"] for r in rows],
        "examples": [r["epoch"] * train_size for r in rows],
        "train_neg_elbo": [round(r["train_neg_elbo"], 4) for r in rows],
        f"{eval_split}_neg_elbo": [round(r[f"{eval_split}_neg_elbo"], 4) for r in rows],
    }


# -- figures ------------------------------------------------------------------------------------


def run_figure(name: str, out: str | Path, *, draw_only: bool = False, **kw) -> Path:
    """Run (or continue) every member of figure `name` into out/<member>, then draw it:

        vaelab reproduce aevb-figure2 --out DIR     runs every member into DIR/<member>, then draws
                                                    DIR/aevb-figure2.png

    Members live side by side in DIR, so two figures drawn from one DIR share the runs they have
    in common (Figure 4's Frey Face run is Figure 2's N_z = 2 panel). A member can also be run on
    its own (`vaelab reproduce MEMBER --out DIR/MEMBER`), two at a time in parallel say; the
    figure then finds it complete and only draws. `draw_only` (`--draw`) runs nothing and draws
    the members as far as they have got, each unfinished panel marked incomplete."""
    figure = FIGURES[name]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaelabError(f"--out {out} is a file; give a directory for the figure's runs")
    dirs = {m: out / m for m in figure.members}
    for member in figure.members:
        get_protocol(member)
    log = kw.get("log")
    if draw_only:
        _check_drawable(name, dirs)
    else:
        for i, member in enumerate(figure.members):
            if log:
                log(f"reproduce {name}: member {i + 1} of {len(figure.members)}: {member}")
            reproduce(member, dirs[member], **kw)
    path = figure.draw(dirs, out / f"{name}.png")
    if log:
        log(f"reproduce {name}: drawn in {path}")
    return path


def _check_drawable(name: str, dirs: dict[str, Path]) -> None:
    """Before a figure is drawn from runs as they stand: every member folder there is the member's
    own (made with its protocol's settings), and at least one has begun."""
    for member, d in dirs.items():
        if d.is_dir():
            protocol = get_protocol(member)
            _claim(d, protocol)
            for seed in protocol.seeds:
                _check_own_run(seed_dir(d, seed), protocol.config(seed), protocol)
    if not any(seed_dir(d, get_protocol(m).seeds[0]).joinpath(ckpt.WEIGHTS).is_file() for m, d in dirs.items()):
        where = next(iter(dirs.values())).parent
        raise VaelabError(
            f"no member of {name} has begun under {where}; run `vaelab reproduce {name} --out {where}` first"
        )


def run_named(name: str, out: str | Path, *, draw_only: bool = False, **kw):
    """Run a protocol, or every member of a figure and then the figure."""
    if name in FIGURES:
        return run_figure(name, out, draw_only=draw_only, **kw)
    if draw_only:
        raise VaelabError(f"--draw draws a figure ({', '.join(FIGURES)}); {name} is a protocol, not a figure")
    return reproduce(name, out, **kw)

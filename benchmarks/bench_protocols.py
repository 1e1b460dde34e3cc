"""Seconds per epoch of each `vaelab reproduce` protocol on this machine, for --list's cost column.

Runs the protocol's real training step (its preset, seed 0) for a number of steps after a warm-up
and extrapolates to one epoch, then times the bound that every epoch ends with (on the test or
validation split, as the run computes it) and adds it: the s/epoch column is what one epoch of
`vaelab reproduce` costs, the figure `--list` declares.
With several --modes (eager, compile, cuda-graphs), they are timed alternately in one process, so
a busy machine slows all alike. On a GPU the clock reads after a synchronize.

    VAELAB_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocols.py
    ... bench_protocols.py iwae-vae-1layer --steps 600 --modes eager,compile
    ... bench_protocols.py aevb-fig2-mnist-nz20 --device cuda --modes eager,cuda-graphs --steps 2000
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vaelab.evaluation import evaluate_elbo
from vaelab.reproduce import all_protocols, get_protocol
from vaelab.training import Trainer

MODES = ("eager", "compile", "cuda-graphs")


def time_steps(
    name: str, steps: int, warmup: int, mode: str, device: str, data_dir: str | None
) -> tuple[float, int, float]:
    """(seconds per step, steps per epoch, seconds of the per-epoch evaluation) of the protocol's
    training loop."""
    with tempfile.TemporaryDirectory() as run:
        return _time_steps(name, Path(run), steps, warmup, mode, device, data_dir)


def _time_steps(name, run, steps, warmup, mode, device, data_dir) -> tuple[float, int, float]:
    p = get_protocol(name)
    cfg = p.config(p.seeds[0], data_dir=data_dir, device=device, cuda_graphs=mode == "cuda-graphs")
    cfg.train.compile = mode == "compile"
    trainer = Trainer(cfg, run, progress=False, log=lambda msg: None)
    marks: dict[str, float] = {}

    def hook(t):
        if t.step in (warmup, warmup + steps) and t.device.type == "cuda":
            torch.cuda.synchronize(t.device)
        if t.step == warmup:
            marks["start"] = time.perf_counter()
        if t.step == warmup + steps:
            marks["end"] = time.perf_counter()
            t.stop_requested = True

    trainer.on_step = hook
    try:
        trainer.fit()
    except Exception as e:
        if type(e).__name__ != "TrainingInterrupted":
            raise
    per_epoch = math.ceil(trainer.train_x.shape[0] / cfg.train.batch_size)
    evals = []
    for _ in range(3):  # the bound each epoch ends with, as Trainer._epoch_record computes it
        start = time.perf_counter()
        evaluate_elbo(trainer.model, trainer.eval_x, cfg.train.eval_batch_size, kl=cfg.train.kl)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        evals.append(time.perf_counter() - start)
    return (marks["end"] - marks["start"]) / steps, per_epoch, min(evals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="protocols (default: one of each preset)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--modes", default="eager", help=f"comma-separated, timed alternately: {', '.join(MODES)}")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    names = args.names or list({p.config(0).to_dict().__repr__(): p.name for p in all_protocols()}.values())
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        ap.error(f"--modes takes {', '.join(MODES)}")
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__}, {where}")
    for name in names:
        times: dict[str, list[float]] = {m: [] for m in modes}
        evals: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode in modes:  # alternate, so load on the machine hits all alike
                sec, per_epoch, ev = time_steps(name, args.steps, args.warmup, mode, args.device, args.data_dir)
                times[mode].append(sec)
                evals[mode].append(ev)
        for mode in modes:
            best, med, ev = min(times[mode]), statistics.median(times[mode]), statistics.median(evals[mode])
            print(
                f"{name:28s} {mode:11s}  {med * 1e3:7.3f} ms/step (best {best * 1e3:.3f})"
                f"  {per_epoch} steps/epoch  + {ev:.3f} s evaluation  {med * per_epoch + ev:8.2f} s/epoch"
            )


if __name__ == "__main__":
    main()

"""Seconds per epoch (train + test evaluation) and images per second for the `pytorch-examples`
preset, beside this machine's measured matmul rate and the fraction of it training reaches.

    VAELAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_train.py [--epochs 10]

Model FLOPs: forward = 2 x multiply-adds of the linear layers per image; training counts
forward + backward = 3 x forward (the usual estimate; elementwise work is not counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import machine, matmul_gflops, peak_rss_mb
from vaelab.config import build_config
from vaelab.training import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="pytorch-examples")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="train with --compile")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    args = p.parse_args()

    peak = matmul_gflops()
    train = {"epochs": args.epochs, "device": args.device, "compile": args.compile, "precision": args.precision}
    if args.batch_size:
        train["batch_size"] = args.batch_size
    cfg = build_config(args.preset, overrides={"train": train})
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out, progress=False, log=lambda m: print(m, file=sys.stderr))
        start = time.perf_counter()
        history = trainer.fit()
        wall = time.perf_counter() - start
    n_train = trainer.train_x.shape[0]
    train_s = [r["train_seconds"] for r in history]
    epoch_s = [r["train_seconds"] + r["eval_seconds"] for r in history]
    flops = 3 * trainer.model.flops_per_example() * n_train
    best = min(train_s)
    result = {
        "preset": args.preset,
        "batch_size": cfg.train.batch_size,
        "compile": args.compile,
        "precision": args.precision,
        "machine": machine(),
        "matmul_gflops": round(peak, 1),
        "epochs": args.epochs,
        "train_images": n_train,
        "seconds_per_epoch_median": round(sorted(epoch_s)[len(epoch_s) // 2], 3),
        "seconds_per_epoch_best": round(min(epoch_s), 3),
        "train_seconds_best": round(best, 3),
        "images_per_second": round(n_train / best),
        "model_gflops": round(flops / best / 1e9, 1),
        "fraction_of_matmul_peak": round(flops / best / 1e9 / peak, 3),
        "flop_floor_seconds": round(flops / (peak * 1e9), 3),
        "wall_seconds": round(wall, 1),
        "compiled": getattr(trainer.step_fn, "works", None),
        "final": {k: round(v, 2) for k, v in history[-1].items() if k.endswith(("neg_elbo", "rec", "kl"))},
        "peak_rss_mb": round(peak_rss_mb()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

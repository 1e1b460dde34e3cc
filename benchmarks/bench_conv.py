"""Seconds per epoch of the `cnn-mnist` preset (one epoch of training on the 50000 MNIST training
images + the evaluation of the 10000 validation images), best of --repeats fresh runs.

    VAELAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_conv.py [--repeats 3] [--threads N]

Each repeat builds a new model and trains one epoch in this process; data loading is not timed.
The minimum is the figure to quote: on a shared machine other work only ever adds time. The
load average at the start is printed so a busy machine shows. Model FLOPs as bench_train.py:
forward = 2 x multiply-adds of the linear and convolution layers, training = 3 x forward.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import machine, matmul_gflops, peak_rss_mb
from vaelab.config import build_config
from vaelab.training import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cnn-mnist")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    load = os.getloadavg()[0]
    peak = matmul_gflops()
    cfg = build_config(args.preset, overrides={"train": {"epochs": 1, "device": args.device}})
    epochs = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            trainer = Trainer(
                cfg, out, progress=False, log=lambda m, i=i: print(f"[{i + 1}/{args.repeats}] {m}", file=sys.stderr)
            )
            r = trainer.fit()[-1]
        epochs.append(
            {
                "train_seconds": round(r["train_seconds"], 2),
                "eval_seconds": round(r["eval_seconds"], 2),
                "epoch_seconds": round(r["train_seconds"] + r["eval_seconds"], 2),
                "valid_neg_elbo": round(r["valid_neg_elbo"], 2),
            }
        )
    n_train = trainer.train_x.shape[0]
    best = min(epochs, key=lambda e: e["epoch_seconds"])
    flops = 3 * trainer.model.flops_per_example() * n_train
    print(
        json.dumps(
            {
                "preset": args.preset,
                "machine": machine(),
                "load_average_at_start": round(load, 2),
                "matmul_gflops": round(peak, 1),
                "train_images": n_train,
                "eval_images": trainer.eval_x.shape[0],
                "parameters": trainer.model.n_parameters(),
                "forward_mflops_per_image": round(trainer.model.flops_per_example() / 1e6, 2),
                "seconds_per_epoch_min": best["epoch_seconds"],
                "train_seconds_min": min(e["train_seconds"] for e in epochs),
                "images_per_second": round(n_train / min(e["train_seconds"] for e in epochs)),
                "model_gflops": round(flops / min(e["train_seconds"] for e in epochs) / 1e9, 1),
                "repeats": epochs,
                "peak_rss_mb": round(peak_rss_mb()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""How close one training step can get to the machine's matmul rate: the step's own matrix
multiplies and optimizer update, each timed alone with its operands warm in cache, against the
real step.

    VAELAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_ceiling.py [--batch-size 128]

The matrix multiplies are read off one real training step (torch.profiler with shapes: the
forward's addmm and the backward's mm) and replayed one by one; the optimizer is the run's own
fused Adam stepping on real gradients. Their sum is a lower bound on the step's time that no
amount of Python or dispatch tuning can beat, so model FLOPs over it is the highest fraction of
the sgemm rate this preset can reach at this batch size on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import machine, matmul_gflops
from vaelab.config import build_config
from vaelab.training import Trainer


def best_seconds(fn, repeats: int = 200, rounds: int = 7) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def step_matmuls(trainer: Trainer) -> list[tuple[str, list[list[int]]]]:
    """(op, input shapes) of every matrix multiply in one training step."""
    steps = {"n": 0}

    def stop_after_two(t):
        steps["n"] += 1
        t.stop_requested = steps["n"] >= 2

    trainer.on_step = stop_after_two
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer._train_epoch()
    trainer.on_step, trainer.stop_requested = None, False
    ops = [(e.name, e.input_shapes) for e in prof.events() if e.name in ("aten::mm", "aten::addmm")]
    return ops[len(ops) // 2 :]  # the second step's


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="pytorch-examples")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=2, help="real epochs timed for the comparison")
    args = p.parse_args()

    peak = matmul_gflops()
    train = {"epochs": args.epochs, "device": "cpu"}
    if args.batch_size:
        train["batch_size"] = args.batch_size
    cfg = build_config(args.preset, overrides={"train": train})
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out, progress=False, log=lambda m: None)
        matmuls = step_matmuls(trainer)
        trainer.pos = 0
        history = trainer.fit()

    gemm_s, gemm_flops = 0.0, 0
    for name, shapes in matmuls:
        if name == "aten::addmm":
            bias, a, b = (torch.randn(s) for s in shapes[:3])
            gemm_s += best_seconds(lambda bias=bias, a=a, b=b: torch.addmm(bias, a, b))
        else:
            a, b = (torch.randn(s) for s in shapes[:2])
            gemm_s += best_seconds(lambda a=a, b=b: torch.mm(a, b))
        gemm_flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
    opt_s = best_seconds(trainer.optimizer.step)  # real gradients of the last step, warm

    bs, n = cfg.train.batch_size, trainer.train_x.shape[0]
    model_flops = 3 * trainer.model.flops_per_example() * bs
    steps = -(-n // bs)
    real_s = min(r["train_seconds"] for r in history) / steps
    print(
        json.dumps(
            {
                "preset": args.preset,
                "batch_size": bs,
                "machine": machine(),
                "matmul_gflops": round(peak, 1),
                "matmuls_per_step": len(matmuls),
                "matmul_gflop_per_step": round(gemm_flops / 1e9, 3),
                "model_gflop_per_step": round(model_flops / 1e9, 3),
                "matmuls_alone_ms": round(gemm_s * 1e3, 3),
                "matmuls_alone_fraction_of_peak": round(gemm_flops / gemm_s / 1e9 / peak, 3),
                "optimizer_alone_ms": round(opt_s * 1e3, 3),
                "floor_ms_per_step": round((gemm_s + opt_s) * 1e3, 3),
                "ceiling_fraction_of_peak": round(model_flops / (gemm_s + opt_s) / 1e9 / peak, 3),
                "real_ms_per_step_best_epoch": round(real_s * 1e3, 3),
                "real_fraction_of_peak": round(model_flops / real_s / 1e9 / peak, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

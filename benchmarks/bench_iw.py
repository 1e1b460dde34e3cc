"""Importance samples per second of `vaelab evaluate --iw-samples` for the `pytorch-examples`
model (784-400-20), with peak memory.

    VAELAB_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_iw.py [--k 1000] [--points 1000]

The model is freshly initialised: speed does not depend on the weights. The FLOP floor counts
the decoder's linear layers (2 x multiply-adds) per sample plus the encoder once per point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import machine, matmul_gflops, peak_rss_mb
from vaelab.config import build_config
from vaelab.dataprep import load_inputs
from vaelab.evaluation import iw_log_px
from vaelab.model import VAE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--max-memory", type=int, default=2 * 2**30)
    args = p.parse_args()

    peak = matmul_gflops()
    cfg = build_config("pytorch-examples")
    x = load_inputs(cfg.data, "test").images[: args.points]
    torch.manual_seed(0)
    model = VAE(cfg.model).eval()
    iw_log_px(model, x[:20], args.k, max_memory=args.max_memory)  # warm-up
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    log_px = iw_log_px(model, x, args.k, max_memory=args.max_memory)
    seconds = time.perf_counter() - start
    decoder_flops = sum(
        2 * m.in_features * m.out_features for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)
    )
    rate = x.shape[0] * args.k / seconds
    print(
        json.dumps(
            {
                "machine": machine(),
                "matmul_gflops": round(peak, 1),
                "k": args.k,
                "points": x.shape[0],
                "seconds": round(seconds, 2),
                "samples_per_second": round(rate),
                "flop_floor_samples_per_second": round(peak * 1e9 / decoder_flops),
                "mnist_test_k5000_minutes_at_this_rate": round(10000 * 5000 / rate / 60, 2),
                "peak_rss_mb": round(peak_rss_mb()),
                "rss_before_mb": round(rss_before),
                "finite": bool(torch.isfinite(log_px).all()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

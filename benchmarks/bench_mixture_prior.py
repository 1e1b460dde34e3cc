"""The mixture priors' log-density (mog, vampprior): the direct form, a (N, K, D) tensor of
differences, against the two matrix products in float64 that vaelab uses, timed alternately in one
process so a busy machine slows both alike. K = 500 components in D = 40 (the VampPrior paper's).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mixture_prior.py
    ... bench_mixture_prior.py --points 20000 --repeats 5

"points" is what one importance-sampling chunk evaluates (the k = 5000 nll evaluates 5 x 10^7);
"training" is one step's forward and backward at batch 100.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vaelab.models.mixture_priors import _gaussian_mixture_log_prob, _gaussian_mixture_log_prob_direct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--components", type=int, default=500)
    ap.add_argument("--dim", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    k, d = args.components, args.dim
    mu = (torch.randn(k, d, generator=g) * 2).requires_grad_(True)
    logvar = (torch.rand(k, d, generator=g) * 4 - 5).requires_grad_(True)
    z = torch.randn(args.points, d, generator=g) * 2
    zb = torch.randn(100, d, generator=g) * 2
    forms = {
        "direct (float32)": _gaussian_mixture_log_prob_direct,
        "matrix products (float64)": _gaussian_mixture_log_prob,
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, f in forms.items():  # alternating
            with torch.no_grad():
                t = time.perf_counter()
                f(z, mu, logvar)
                times.setdefault((name, "points"), []).append(time.perf_counter() - t)
            t = time.perf_counter()
            f(zb, mu, logvar).sum().backward()
            times.setdefault((name, "training"), []).append(time.perf_counter() - t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), K = {k}, D = {d}")
    for (name, what), ts in times.items():
        if what == "points":
            med = statistics.median(ts)
            print(
                f"{name:28s} {args.points} points: {med:.3f} s (median of {len(ts)}), {args.points / med:,.0f} points/s"
            )
        else:
            print(f"{name:28s} training step (batch 100, forward + backward): {statistics.median(ts) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()

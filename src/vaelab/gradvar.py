"""How noisy is each gradient estimator of the ELBO? Draw it many times on one fixed batch.

For a categorical latent the ELBO's gradient with respect to the encoder can be estimated
three ways (see latents.CategoricalLatent and objectives.score_function_terms):

- reparam: the Gumbel-Softmax path-wise gradient of the relaxed objective at temperature tau;
  low variance, but biased for the discrete model;
- straight-through: the same gradient with a one-hot forward pass (--hard);
- score-function: REINFORCE, unbiased for the discrete model, with a baseline as control
  variate; typically far noisier.

`gradient_variance` draws each estimator `draws` times on the same batch (only the Gumbel noise
changes) and keeps the running mean and variance of every encoder parameter's gradient
(Welford's update, in float64), then summarises them: the mean over parameters of the
per-parameter variance, the norm of the mean gradient, and the noise-to-signal ratio
sqrt(sum of variances) / |mean gradient| of one draw.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .baselines import MovingAverageBaseline
from .errors import VaelabError
from .evaluation import seeded
from .model import VAE
from .objectives import elbo_terms, score_function_terms

ESTIMATORS = ("reparam", "straight-through", "score-function")
BASELINE_CHOICES = ("auto", "none", "moving-average")
WARMUP_DRAWS = 20  # draws that fit the moving-average baseline of a run trained without one


def parse_estimators(text: str) -> list[str]:
    """`--estimators`: a comma-separated list of ESTIMATORS' names, or "all"."""
    if text.strip() == "all":
        return list(ESTIMATORS)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in ESTIMATORS]
    if not names or unknown:
        raise VaelabError(f"--estimators takes all or a comma-separated list of {', '.join(ESTIMATORS)}; got {text!r}")
    return names


def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]).double()


def _fitted_moving_average(model: VAE, x: torch.Tensor, kl: str, beta: float) -> MovingAverageBaseline:
    """A moving-average baseline at its fixed point for this batch: the mean learning signal
    over WARMUP_DRAWS draws, frozen (eval mode)."""
    signals = []
    with torch.no_grad():
        for _ in range(WARMUP_DRAWS):
            _, terms, _ = score_function_terms(model, x, 1, kl, beta)
            signal = -(terms["rec"] + beta * terms["kl"]) if kl == "mc" else -terms["rec"]
            signals.append(signal.mean())
    baseline: MovingAverageBaseline = MovingAverageBaseline(model.input_shape).to(x.device)
    baseline.average.fill_(torch.stack(signals).mean().item())
    baseline.updates.fill_(1)
    return baseline.eval()


def gradient_variance(
    model: VAE,
    x: torch.Tensor,
    estimators=ESTIMATORS,
    draws: int = 200,
    *,
    kl: str = "analytic",
    beta: float = 1.0,
    baseline: str = "auto",
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Mean and variance over `draws` draws of each estimator's gradient of the batch-mean
    negative ELBO with respect to the encoder's parameters, on the fixed batch x.

    baseline (score-function): "auto" uses the model's own baseline if it was trained with one
    (frozen), else a moving average fitted to this batch; "moving-average" always the latter;
    "none" plain REINFORCE. Returns {"estimators": {name: summary}, ...}; the model's mode,
    temperature and straight-through flag are restored afterwards."""
    if draws < 2:
        raise VaelabError(f"--draws must be at least 2 to estimate a variance, got {draws}")
    if baseline not in BASELINE_CHOICES:
        raise VaelabError(f"unknown --baseline {baseline!r}; choose {', '.join(BASELINE_CHOICES)}")
    latent = model.latent
    categorical = latent.relaxed  # a relaxed discrete family: straight-through and score function apply
    if not categorical and any(e != "reparam" for e in estimators):
        raise VaelabError(
            "straight-through and score-function need a run with a discrete latent trained "
            "through a relaxation (--latent categorical); use --estimators reparam"
        )
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in enc_params)
    was_training, was_hard = model.training, latent.hard if categorical else False
    model_baseline = model.baseline
    results: dict[str, dict] = {}
    baseline_used = None
    try:
        model.train()
        with seeded(seed, model.device):
            for name in estimators:
                sf_baseline = None
                if name == "score-function":
                    if baseline == "auto" and model_baseline is not None:
                        sf_baseline = model_baseline.eval()  # frozen: no running-average updates
                        baseline_used = f"the run's {type(model_baseline).__name__}"
                    elif baseline != "none":
                        sf_baseline = _fitted_moving_average(model, x, kl, beta)
                        baseline_used = f"moving average fitted on this batch ({sf_baseline.average.item():.2f})"
                    else:
                        baseline_used = "none"
                if categorical:
                    latent.hard = name == "straight-through"
                mean = torch.zeros(n_params, dtype=torch.float64, device=x.device)
                m2 = torch.zeros_like(mean)
                neg_elbo = 0.0
                bar = tqdm(range(draws), desc=name, disable=not progress, leave=False, file=sys.stderr)
                start = time.perf_counter()
                for i in bar:
                    model.zero_grad(set_to_none=True)
                    if name == "score-function":
                        surrogate, terms, _ = score_function_terms(model, x, 1, kl, beta, sf_baseline)
                        loss = surrogate.mean()
                    else:
                        terms = elbo_terms(model, x, 1, kl)
                        loss = (terms["rec"] + beta * terms["kl"]).mean()
                    loss.backward()
                    g = _flat_grad(enc_params)
                    delta = g - mean  # Welford's running mean and M2
                    mean += delta / (i + 1)
                    m2 += delta * (g - mean)
                    neg_elbo += terms["neg_elbo"].detach().mean().item()
                seconds = time.perf_counter() - start
                var = m2 / (draws - 1)
                norm = mean.norm().item()
                results[name] = {
                    "var_mean": var.mean().item(),  # mean over parameters of Var[g_i]
                    "var_total": var.sum().item(),  # E |g - E g|^2
                    "mean_grad_norm": norm,
                    "noise_to_signal": math.sqrt(var.sum().item()) / norm if norm > 0 else math.inf,
                    "neg_elbo": neg_elbo / draws,
                    "ms_per_draw": 1000 * seconds / draws,
                }
    finally:
        model.zero_grad(set_to_none=True)
        if categorical:
            latent.hard = was_hard
        model.train(was_training)
    out = {
        "draws": draws,
        "points": x.shape[0],
        "kl": kl,
        "encoder_parameters": n_params,
        "tau": latent.schedule_state().get("tau"),
        "estimators": results,
    }
    if baseline_used is not None:
        out["baseline"] = baseline_used
    return out


def run_gradvar(
    run: str | Path,
    estimators=ESTIMATORS,
    draws: int = 200,
    batch_size: int = 100,
    *,
    split: str = "train",
    baseline: str = "auto",
    tau: float | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | None = None,
    progress: bool = False,
) -> dict:
    """`gradient_variance` on the first `batch_size` points of a split of a trained run, at the
    temperature the run ended with (or `tau`), with the run's KL and beta."""
    from .dataprep import load_inputs
    from .runs import load_run

    if batch_size < 1:
        raise VaelabError(f"--batch-size must be at least 1, got {batch_size}")
    if tau is not None and not tau > 0:
        raise VaelabError(f"--tau must be positive, got {tau}")
    cfg, model = load_run(run, device, data_dir)
    if model.conditional:
        raise VaelabError("gradvar does not yet draw the gradients of a conditional model (--model cvae)")
    x = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape).images[:batch_size].to(model.device)
    if tau is not None:
        if not model.latent.relaxed:
            raise VaelabError(
                "--tau applies to runs whose latent is trained through a relaxation (--latent categorical)"
            )
        model.latent.tau = tau
    result = gradient_variance(
        model,
        x,
        estimators,
        draws,
        kl=cfg.train.kl,
        beta=cfg.train.beta,
        baseline=baseline,
        seed=seed,
        progress=progress,
    )
    return {"run": str(run), "split": split, **result}


def format_table(result: dict) -> str:
    tau = f", tau {result['tau']:.3g}" if result.get("tau") is not None else ""
    lines = [
        f"{result.get('run', 'model')}: gradient of the negative ELBO w.r.t. the encoder's "
        f"{result['encoder_parameters']:,} parameters",
        f"{result['draws']} draws on a fixed batch of {result['points']} {result.get('split', '')} points "
        f"(kl {result['kl']}{tau})".replace("  ", " "),
    ]
    if "baseline" in result:
        lines.append(f"score-function baseline: {result['baseline']}")
    header = (
        f"{'estimator':<18} {'mean var/param':>14} {'|mean grad|':>12} {'sqrt(tr var)/|mean|':>20} "
        f"{'neg_elbo':>9} {'ms/draw':>8}"
    )
    lines += ["", header, "-" * len(header)]
    for name, r in result["estimators"].items():
        lines.append(
            f"{name:<18} {r['var_mean']:>14.3e} {r['mean_grad_norm']:>12.3e} {r['noise_to_signal']:>20.2f} "
            f"{r['neg_elbo']:>9.2f} {r['ms_per_draw']:>8.1f}"
        )
    lines += [
        "",
        "reparam and straight-through estimate the gradient of the relaxed objective (biased for the "
        "discrete model); score-function is unbiased.",
    ]
    return "\n".join(lines)

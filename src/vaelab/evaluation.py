"""Evaluation: the ELBO on a data split and posterior inference, batched, without autograd.

Every evaluation runs under its own seed inside `torch.random.fork_rng`, so the figures are
reproducible and evaluating never disturbs the random stream of a training run.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .dataprep import load_inputs
from .errors import VaelabError, require_count
from .model import VAE, given, n_pixels
from .objectives import elbo_terms
from .runs import load_run


@contextmanager
def seeded(seed: int, device: torch.device):
    """A fixed random stream for an evaluation (each rank of a distributed run its own)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + 7919 * distributed.context().rank)
        yield


def _moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and unbiased variance over dim 0, over the points of every rank (values of a
    distributed evaluation are the rank's shard of the points)."""
    values = values.double()
    sums = torch.cat([values.sum(0).reshape(-1), (values**2).sum(0).reshape(-1), values.new_tensor([values.shape[0]])])
    sums = distributed.context().all_reduce_sum(sums.to(values.device)).cpu()
    d = (sums.numel() - 1) // 2
    s1, s2, n = sums[:d], sums[d : 2 * d], int(sums[-1].item())
    mean = s1 / n
    var = ((s2 - n * mean**2) / max(n - 1, 1)).clamp_min(0)
    return mean.reshape(values.shape[1:]), var.reshape(values.shape[1:]), n


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    mean, var, n = _moments(values)
    return mean.item(), math.sqrt(var.item() / n)


@torch.inference_mode()
def evaluate_elbo(
    model: VAE,
    x: torch.Tensor,
    batch_size: int = 1000,
    samples: int = 1,
    kl: str = "analytic",
    seed: int = 0,
    relaxed: bool = False,
    max_memory: int = 2 * 2**30,
    y: torch.Tensor | None = None,
) -> dict:
    """Mean per-example `neg_elbo`, `rec`, `kl` in nats (and `neg_elbo_stderr`) over x (given the
    labels y, for a conditional model: then neg_elbo bounds -log p(x|y)).

    Points go through in batches of `batch_size`, fewer when their `samples` samples would
    not fit in `max_memory` (then the samples go through in chunks too), so any number of
    samples fits. relaxed=True evaluates the latent family as in training (for a categorical
    latent: the Gumbel-Softmax relaxation at the model's temperature, the bound its training
    prints) rather than the discrete model."""
    was_training = model.training
    model.eval()
    if relaxed and isinstance(model.latent, torch.nn.Module):
        model.latent.train()
    device = model.device
    points, per_pass = chunk_shape(model, samples, max_memory)
    points = min(points, batch_size)
    out: dict[str, list[torch.Tensor]] = {"neg_elbo": [], "rec": [], "kl": []}
    with seeded(seed, device):
        for i in range(0, x.shape[0], points):
            xb = x[i : i + points].to(device)
            yb = y[i : i + points].to(device) if y is not None else None
            params = model.encode(xb, *given(yb))
            if per_pass >= samples:
                terms = elbo_terms(model, xb, samples, kl, params=params, y=yb)
            else:  # the samples of even one point do not fit in one pass: average over chunks
                terms = dict.fromkeys(out, 0.0)
                for j in range(0, samples, per_pass):
                    n = min(per_pass, samples - j)
                    part = elbo_terms(model, xb, n, kl, params=params, y=yb)
                    terms = {k: terms[k] + part[k] * (n / samples) for k in out}
            for k in out:
                out[k].append(terms[k])
    model.train(was_training)
    per_example = {k: torch.cat(v) for k, v in out.items()}
    result = {k: _mean_and_stderr(v)[0] for k, v in per_example.items()}
    result["neg_elbo_stderr"] = _mean_and_stderr(per_example["neg_elbo"])[1]
    result["n"] = _moments(per_example["neg_elbo"])[2]
    return result


@torch.inference_mode()
def posterior_means(model: VAE, params: torch.Tensor) -> torch.Tensor:
    """E_q[z] for encoder outputs `params` (a layered family runs its own networks for it)."""
    return model.latent.mean(params.to(model.device)).cpu()


@torch.inference_mode()
def encode_all(model: VAE, x: torch.Tensor, batch_size: int = 1000, y: torch.Tensor | None = None) -> torch.Tensor:
    """Posterior parameters for every row of x (given its label in y, for a conditional model),
    batched: (N, n_params), on the CPU."""
    model.eval()
    return torch.cat(
        [
            model.encode(
                x[i : i + batch_size].to(model.device),
                y[i : i + batch_size].to(model.device) if y is not None else None,
            ).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    )


# -- the marginal likelihood -------------------------------------------------------------------


def bytes_per_sample(model: VAE) -> int:
    """Memory for one (point, sample) pair in the decoder pass: hidden activations (the outputs of
    its linear and convolution layers, and of the activations after them), the likelihood
    parameters, a few pixel-sized temporaries and z, in float32."""
    pixels = n_pixels(model)
    hidden = sum(math.prod(out[1:]) for _, _, out in model.layer_shapes("decoder"))
    return 4 * (2 * hidden + (model.likelihood.n_params + 3) * pixels + 4 * model.latent.dim)  # z, log-densities


# On a CPU, passes much larger than the caches are slower, not faster: every fresh multi-GB
# temporary costs page faults (87k samples/s at 2 GB chunks against 282k at 64 MB for the
# pytorch-examples model on 2 cores). GPUs use the whole budget.
CPU_CHUNK_BYTES = 64 * 2**20


def chunk_shape(model: VAE, k: int, max_memory: int) -> tuple[int, int]:
    """(points, samples) per decoder pass so that one pass stays within max_memory bytes."""
    if bytes_per_sample(model) > max_memory:
        raise VaelabError(
            f"--max-memory {max_memory} bytes is too small for one decoder pass of this model "
            f"(it needs {bytes_per_sample(model)} bytes per sample); raise it"
        )
    budget = min(max_memory, CPU_CHUNK_BYTES) if model.device.type == "cpu" else max_memory
    pairs = budget // bytes_per_sample(model)
    samples = min(k, pairs)
    return max(1, pairs // samples), samples


@torch.inference_mode()
def iw_log_px(
    model: VAE,
    x: torch.Tensor,
    k: int = 5000,
    *,
    max_memory: int = 2 * 2**30,
    seed: int = 0,
    progress: bool = False,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """The k-sample importance-weighted bound L_k(x) for every point (Burda et al. 2016, eq. 8):

        L_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x),   z_i ~ q(z|x),

    a lower bound on log p(x) that rises to it as k grows; the papers' test "NLL" is -mean L_k
    at k = 5000. Exactly k samples per point, the encoder runs once per point, the decoder over
    (points x samples) chunks sized to `max_memory`; the sum over sample chunks is accumulated
    in log space (logaddexp), so k may be any size. For a conditional model, with the labels y,
    it is the bound on log p(x|y). Returns float64 (N,) on the CPU."""
    if k < 1:
        raise VaelabError(f"--iw-samples must be at least 1, got {k}")
    model.eval()
    device = model.device
    points, samples = chunk_shape(model, k, max_memory)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    bar = tqdm(
        total=x.shape[0] * k,
        disable=None if progress else True,
        unit="sample",
        unit_scale=True,
        desc=f"log p(x), k={k}",
        file=sys.stderr,
        leave=False,
    )
    with seeded(seed, device):
        for i in range(0, x.shape[0], points):
            xb = x[i : i + points].to(device)
            yb = y[i : i + points].to(device) if y is not None else None
            params = model.encode(xb, *given(yb))
            acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=device)
            for j in range(0, k, samples):
                s = min(samples, k - j)
                log_w = model.log_weights(xb, s, params=params, proposal=True, y=yb).log_w  # (s, B)
                acc = torch.logaddexp(acc, torch.logsumexp(log_w.double(), 0))
                bar.update(s * xb.shape[0])
            out[i : i + xb.shape[0]] = (acc - math.log(k)).cpu()
    bar.close()
    return out


# An evaluation measured to need longer than this is refused before it starts: it would not end.
MAX_EVALUATION_SECONDS = 30 * 24 * 3600
MEASURE_ABOVE = 10**8  # (point, sample) pairs: smaller evaluations end within minutes; not measured


@torch.inference_mode()
def check_work(
    model: VAE, x: torch.Tensor, samples: int, max_memory: int = 2 * 2**30, y: torch.Tensor | None = None
) -> float | None:
    """Refuse, before the work, an evaluation of `samples` decoder samples per point of x that
    cannot finish: above MEASURE_ABOVE (point, sample) pairs one decoder pass of the size the
    evaluation uses is timed here, and an estimate over MAX_EVALUATION_SECONDS is a VaelabError
    that says it. Returns the estimate in seconds (None when not measured)."""
    import time

    pairs = x.shape[0] * samples
    if pairs <= MEASURE_ABOVE:
        return None
    points, per_pass = chunk_shape(model, samples, max_memory)
    xb = x[: max(1, min(points, x.shape[0]))].to(model.device)
    yb = y[: xb.shape[0]].to(model.device) if y is not None else None
    with seeded(0, model.device):
        model.log_weights(xb, per_pass, proposal=True, y=yb)  # warm-up: first-call costs are not the rate
        start = time.perf_counter()
        model.log_weights(xb, per_pass, proposal=True, y=yb).log_w.sum().item()
        seconds = time.perf_counter() - start
    estimate = seconds / (xb.shape[0] * per_pass) * pairs
    if estimate > MAX_EVALUATION_SECONDS:
        raise VaelabError(
            f"{samples:,} samples of z for each of {x.shape[0]:,} points would take about {_duration(estimate)} "
            f"here (measured: {xb.shape[0] * per_pass / seconds:,.0f} samples/s); ask for fewer "
            "(--iw-samples 5000 is the papers' nll, --samples 1 their ELBO)"
        )
    return estimate


def _duration(seconds: float) -> str:
    years = seconds / (365.25 * 24 * 3600)
    if years >= 1:
        return f"{years:.3g} years"
    return f"{seconds / 86400:.3g} days"


def counts_active_units(model: VAE) -> bool:
    """Active units mean something for continuous stochastic latents only: not for one-hot codes,
    deterministic codes or a condition (which is never part of z)."""
    return model.latent.kind in ("stochastic", "flow") and not model.latent.discrete


def active_units(mu: torch.Tensor, threshold: float = 1e-2) -> int:
    """Latent dimensions u with Cov_x(E_q[z_u]) > threshold (Burda et al. 2016, section 5.2)."""
    return int((_moments(mu)[1] > threshold).sum())


def evaluate_nll(
    model: VAE,
    x: torch.Tensor,
    k: int = 5000,
    *,
    max_memory: int = 2 * 2**30,
    seed: int = 0,
    progress: bool = False,
    y: torch.Tensor | None = None,
) -> dict:
    """`nll` = -mean L_k (nats per example) with its standard error over points."""
    log_px = iw_log_px(model, x, k, max_memory=max_memory, seed=seed, progress=progress, y=y)
    nll, stderr = _mean_and_stderr(-log_px)
    return {"nll": nll, "nll_stderr": stderr, "iw_samples": k}


# -- runs --------------------------------------------------------------------------------------


def evaluate_run(
    run: str | Path,
    split: str = "test",
    *,
    samples: int = 1,
    iw_samples: int | None = None,
    max_memory: int = 2 * 2**30,
    device: str = "auto",
    data_dir: str | None = None,
    seed: int = 0,
    progress: bool = False,
    relaxed: bool = False,
) -> dict:
    """`neg_elbo`, `rec`, `kl` (nats per example) of a trained run on a data split, the number of
    active units, and with `iw_samples` = K the importance-sampled `nll` (-mean L_K). With
    relaxed=True the ELBO terms are those of the latent as trained (a categorical latent's
    Gumbel-Softmax relaxation at the last training temperature) instead of the discrete model."""
    require_count(samples, "samples")
    if iw_samples is not None:
        require_count(iw_samples, "iw_samples")
    ctx = distributed.init(device)  # under torchrun, each rank evaluates its share of the points
    cfg, model = load_run(run, device, data_dir)
    if iw_samples is not None and model.latent.kind == "deterministic":
        raise VaelabError(
            f"--iw-samples: --latent {cfg.model.latent} is deterministic (one code per x), so importance "
            "sampling would only repeat its bound; its bound is neg_elbo (evaluate without --iw-samples)"
        )
    inputs = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape)
    share = ctx.local_slice(inputs.images.shape[0])
    x, y = inputs.images[share], condition(model, inputs.labels, share)
    check_work(model, x, samples + (iw_samples or 0), max_memory, y=y)
    result = {
        "split": split,
        "dataset": cfg.data.dataset,
        "bounds": bound_name(model),
        **model.checkpoint_info,
        **evaluate_elbo(
            model,
            x,
            cfg.train.eval_batch_size,
            samples=samples,
            kl=cfg.train.kl,
            seed=seed,
            relaxed=relaxed,
            max_memory=max_memory,
            y=y,
        ),
    }
    params = encode_all(model, x, cfg.train.eval_batch_size, y)
    stats = model.latent.statistics(params)  # e.g. a codebook's usage and perplexity
    if stats:
        result["latent_statistics"] = stats
    if counts_active_units(model):
        mu = posterior_means(model, params)
        result["active_units"] = active_units(mu)
        layers = model.latent.layers(mu)
        if len(layers) > 1:  # a layered latent: active units per stochastic layer too
            result.update({f"active_units_{name}": active_units(z) for name, z in layers.items()})
    if iw_samples is not None:
        result.update(
            evaluate_nll(model, x, iw_samples, max_memory=max_memory, seed=seed, progress=progress and ctx.main, y=y)
        )
    return result


def bound_name(model: VAE) -> str:
    """What a model's neg_elbo and nll are bounds on: -log p(x), or -log p(x|y) for a model that
    conditions on the labels."""
    return "-log p(x|y)" if model.conditional else "-log p(x)"


def condition(model: VAE, labels: torch.Tensor | None, share=slice(None)) -> torch.Tensor | None:
    """The labels a conditional model is evaluated with (None for any other model)."""
    if not model.conditional:
        return None
    if labels is None:
        raise VaelabError("this run's model is conditional, and the data set has no labels to condition on")
    return labels[share].long()


def encode_run(run: str | Path, split: str = "test", *, device: str = "auto", data_dir: str | None = None) -> dict:
    """Posterior parameters of every point of a split, with 'labels', as arrays: 'mu' and 'logvar'
    for a Gaussian latent, 'probs' and 'log_probs' (N, K per point) for a categorical one."""
    cfg, model = load_run(run, device, data_dir)
    inputs = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape)
    params = encode_all(model, inputs.images, cfg.train.eval_batch_size, condition(model, inputs.labels))
    out = {name: value.numpy() for name, value in model.latent.named_params(params).items()}
    if inputs.labels is not None:
        out["labels"] = inputs.labels.numpy()
    return out


def reconstruct_run(
    run: str | Path, split: str = "test", n: int = 32, *, device: str = "auto", data_dir: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a split and their reconstructions, both (n, C, H, W) on the CPU (a
    conditional model reconstructs each given its label)."""
    require_count(n, "n")
    cfg, model = load_run(run, device, data_dir)
    inputs = load_inputs(cfg.data, split, expect_shape=cfg.model.input_shape)
    x, y = inputs.images[:n], condition(model, inputs.labels, slice(0, n))
    return x, model.reconstruct(x.to(model.device), y.to(model.device) if y is not None else None).cpu()

"""Beyond the seeds, proven on models whose answers are known: two stochastic layers on a
linear-Gaussian model with a closed-form log p(x), mixture priors against numerical integration,
the VampPrior against its definition, KL warm-up and free bits; and a one-epoch run of each new
preset, evaluated, plotted and reported."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import distributions as D

import vaelab
from test_cli import vaelab as vaelab_cli
from vaelab.config import ModelConfig, TrainConfig, build_config
from vaelab.evaluation import iw_log_px
from vaelab.klcontrol import kl_penalty, kl_weight
from vaelab.likelihoods import GaussianLikelihood
from vaelab.model import VAE
from vaelab.objectives import elbo_terms
from vaelab.registry import LIKELIHOODS, register_likelihood

if "identity-gaussian" not in LIKELIHOODS:

    @register_likelihood("identity-gaussian")
    class IdentityGaussian(GaussianLikelihood):
        """Gaussian pixels with a linear mean: with linear networks the model is linear-Gaussian."""

        def split(self, params):
            mean, logvar = params.chunk(2, dim=-1)
            return mean, logvar


def linear_two_layer(seed=0):
    """x = B z1 + b + e0, z1 = A z2 + a + e1, z2 ~ N(0, I): the two-layer model with linear networks
    and constant variances (the log-variance rows of the linear layers set to a bias alone)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        latent="gaussian-2layer",
        prior="gaussian-2layer",
        hidden=[],
        likelihood="identity-gaussian",
        latent_dim=3,
        options={"z2_dim": 2, "layer_hidden": []},
        input_shape=[1, 2, 2],
    )
    model = VAE(cfg)
    with torch.no_grad():
        dec = model.decoder.net[-1]  # z1 -> [mean (4), logvar (4)]
        dec.weight[4:].zero_()
        dec.bias[4:].fill_(math.log(0.3))
        down = model.prior.down[-1]  # z2 -> [mu1 (3), logvar1 (3)]
        down.weight[3:].zero_()
        down.bias[3:].fill_(math.log(0.5))
        # a broad proposal (an untrained one, but wide enough for importance sampling to converge)
        for layer, d in ((model.encoder.net[-1], 3), (model.latent.up[-1], 2)):
            layer.weight[:d].mul_(0.3)
            layer.weight[d:].zero_()
            layer.bias[d:].fill_(math.log(1.5))
    return model.eval()


def exact_log_px(model, x):
    dec, down = model.decoder.net[-1], model.prior.down[-1]
    B, b, s0 = dec.weight[:4], dec.bias[:4], dec.bias[4:].exp()
    A, a, s1 = down.weight[:3], down.bias[:3], down.bias[3:].exp()
    cov1 = A @ A.T + torch.diag(s1)
    cov = B @ cov1 @ B.T + torch.diag(s0)
    return D.MultivariateNormal(B @ a + b, cov.double()).log_prob(x.flatten(1).double())


def test_two_layers_on_a_linear_gaussian_model_converge_to_the_exact_log_px():
    model = linear_two_layer()
    x = torch.randn(32, 1, 2, 2)
    exact = exact_log_px(model, x)
    with torch.no_grad():
        draws = torch.stack([-elbo_terms(model, x, 1, "mc")["neg_elbo"] for _ in range(2000)]).double()
    elbo, elbo_err = draws.mean(), draws.mean(1).std() / math.sqrt(draws.shape[0])
    repeats = {1: 2000, 10: 200, 100: 20, 5000: 2}  # copies of the points, for Monte-Carlo error
    lk, err = {}, {}
    for k, r in repeats.items():
        est = iw_log_px(model, x.repeat(r, 1, 1, 1), k, seed=k).view(r, -1)
        lk[k], err[k] = est.mean(), est.mean(1).std() / math.sqrt(r)
    # E[L_1] is the ELBO; E[L_k] rises with k towards log p(x), which it never exceeds
    assert abs(elbo - lk[1]) < 4 * math.hypot(elbo_err, err[1])
    assert lk[1] + 4 * err[1] < lk[10] and lk[10] + 4 * err[10] < lk[100] < lk[5000]
    assert lk[5000] < exact.mean() + 0.01
    assert exact.mean() - lk[5000] < 0.03  # the bound has closed in on log p(x)
    assert exact.mean() - elbo > 0.5  # the untrained proposal is not the posterior


def test_mixture_prior_kl_matches_numerical_integration():
    torch.manual_seed(3)
    cfg = ModelConfig(latent="gaussian", prior="mog", latent_dim=1, options={"components": 3})
    model = VAE(cfg)
    with torch.no_grad():
        model.prior.means.copy_(torch.tensor([[-2.0], [0.5], [3.0]]))
        model.prior.logvars.copy_(torch.tensor([[0.0], [-1.0], [0.7]]))
    params = torch.tensor([[0.8, math.log(0.4)]])  # q(z|x) = N(0.8, 0.4)
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)[:, None]
    q = model.latent.distribution(params.double())
    log_q = q.log_prob(z[:, None, :])[:, 0]
    log_p = model.prior.log_prob(z.float()).double()
    numeric = torch.trapezoid(log_q.exp() * (log_q - log_p), z[:, 0])
    with torch.no_grad():
        lw = model.log_weights(torch.zeros(1, 1, 28, 28), 400_000, params=params)
    mc = lw.ratio.double().mean()
    stderr = lw.ratio.double().std() / math.sqrt(lw.ratio.numel())
    assert abs(mc - numeric) < 4 * stderr + 1e-4, (mc, numeric)
    # its log-density is the mixture's, against torch.distributions
    torch.testing.assert_close(
        model.prior.log_prob(z[:50].float()), model.prior.distribution().log_prob(z[:50].float())
    )
    assert not model.has_analytic_kl


@pytest.mark.parametrize("spread, logvar_low", [(1.0, -3.0), (5.0, -8.0)])
def test_mixture_log_density_through_matrix_products_matches_its_definition(spread, logvar_low):
    """The fast form (two matrix products) against the definition term by term in float64, for
    K = 500 components in D = 40, points near the components and far from them; narrow components
    far from the origin are where the expanded square cancels."""
    from vaelab.models.mixture_priors import _gaussian_mixture_log_prob, _gaussian_mixture_log_prob_direct

    g = torch.Generator().manual_seed(5)
    mu = torch.randn(500, 40, generator=g) * spread + 3
    logvar = torch.rand(500, 40, generator=g) * (2 - logvar_low) + logvar_low
    near = mu[torch.randint(500, (300,), generator=g)] + torch.randn(300, 40, generator=g) * 0.1
    z = torch.cat([near, torch.randn(300, 40, generator=g) * 2 * spread]).view(2, 300, 40)
    exact = _gaussian_mixture_log_prob_direct(z.double(), mu.double(), logvar.double())
    fast = _gaussian_mixture_log_prob(z, mu, logvar)
    assert fast.dtype == torch.float32 and fast.shape == (2, 300)
    err = (fast.double() - exact).abs() / exact.abs().clamp(min=1)
    assert err.max() < 1e-6, err.max()  # float32 rounding of the result, nothing more
    # and the gradients reach mu and logvar as the definition's do
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    grads = torch.autograd.grad(_gaussian_mixture_log_prob(z[0, :5], mu, logvar).sum(), (mu, logvar))
    expected = torch.autograd.grad(_gaussian_mixture_log_prob_direct(z[0, :5], mu, logvar).sum(), (mu, logvar))
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_vampprior_is_the_mixture_of_the_posteriors_at_its_pseudo_inputs():
    torch.manual_seed(4)
    model = VAE(
        ModelConfig(prior="vampprior", latent_dim=3, hidden=[16], options={"components": 7}, input_shape=[1, 4, 4])
    )
    u = model.prior.pseudo_inputs()
    assert u.shape == (7, 1, 4, 4) and u.min() >= 0 and u.max() <= 1
    z = torch.randn(5, 3)
    components = model.latent.distribution(model.encode(u))  # batch of 7 Gaussians
    expected = torch.logsumexp(components.log_prob(z[:, None, :]), -1) - math.log(7)
    torch.testing.assert_close(model.prior.log_prob(z), expected)
    # it is learned: the gradient reaches the pseudo-inputs and the encoder through log p(z)
    model.prior.log_prob(z).sum().backward()
    assert model.prior.pseudo.grad.abs().sum() > 0 and model.encoder.net[0].weight.grad.abs().sum() > 0
    assert model.prior.sample(4).shape == (4, 3)


def test_kl_warmup_and_free_bits():
    t = TrainConfig(warmup_epochs=2, beta=1.0)
    assert kl_weight(t, 0, 100) == pytest.approx(1 / 200)
    assert kl_weight(t, 99, 100) == pytest.approx(0.5) and kl_weight(t, 199, 100) == 1.0 == kl_weight(t, 5000, 100)
    assert kl_weight(TrainConfig(), 0, 100) == 1.0  # off: the ELBO's weight
    kl = torch.tensor([[0.1, 2.0, 0.0], [0.3, 1.0, 0.0]])  # (B, G)
    assert kl_penalty(kl, 0.0).item() == pytest.approx(kl.sum(1).mean().item())
    assert kl_penalty(kl, 0.5).item() == pytest.approx(0.5 + 1.5 + 0.5)  # groups below lambda count lambda


def test_warmup_is_logged_per_epoch_and_resumes(tmp_path, data_dir):
    over = {
        "data": {"dataset": "frey_face", "data_dir": data_dir},
        "model": {"hidden": [16], "latent_dim": 2, "likelihood": "gaussian"},
        "train": {"epochs": 2, "batch_size": 400, "warmup_epochs": 4, "free_bits": 0.1, "device": "cpu"},
    }
    run = vaelab.train(build_config(overrides=over), tmp_path / "r", progress=False, log=lambda m: None)
    over["train"]["epochs"] = 4
    vaelab.train(build_config(overrides=over), run, resume=True, progress=False, log=lambda m: None)
    weights = [json.loads(x)["kl_weight"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert weights == pytest.approx([0.25, 0.5, 0.75, 1.0])  # 5 steps an epoch, 20 to warm up
    curves = vaelab.plot(run, what="curves", device="cpu")
    assert curves and curves[0].name == "curves.png"


@pytest.mark.parametrize(
    "preset, extra",
    [
        ("iwae-paper-2layer", []),
        ("vampprior-paper", ["--option", "components=50"]),
        ("vampprior-paper", ["--prior", "mog", "--option", "components=10"]),
    ],
)
def test_one_epoch_of_each_new_preset_is_evaluated_plotted_and_reported(preset, extra, tmp_path, data_dir):
    run = tmp_path / "run"
    proc = vaelab_cli(
        "train",
        "--preset",
        preset,
        *extra,
        "--epochs",
        "1",
        "--batch-size",
        "500",
        "--out",
        run,
        "--no-progress",
        data_dir=data_dir,
    )
    assert proc.returncode == 0, proc.stderr
    ev = vaelab_cli("evaluate", run, "--iw-samples", "100", "--json", data_dir=data_dir)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["nll"] < result["neg_elbo"]
    assert vaelab_cli("plot", run, data_dir=data_dir).returncode == 0
    assert (run / "manifold.png").is_file() and (run / "latents.png").is_file()
    assert vaelab_cli("report", run, data_dir=data_dir).returncode == 0
    if preset == "iwae-paper-2layer":
        assert {"active_units_z1", "active_units_z2"} <= set(result)
    vamp = preset == "vampprior-paper" and "--prior" not in extra  # the VampPrior shows its pseudo-inputs
    assert (run / "prior.png").is_file() == vamp
    assert ("pseudo-inputs" in (run / "report.html").read_text()) == vamp


def test_early_stopping_keeps_the_best_epoch_and_resumes(tmp_path, data_dir):
    """A learning rate far too high makes the watched bound get worse after the first epochs: the
    run stops `patience` epochs after its best one and keeps that epoch's weights."""
    over = {
        "data": {"dataset": "frey_face", "data_dir": data_dir},
        "model": {"hidden": [16], "latent_dim": 2, "likelihood": "gaussian"},
        "train": {"epochs": 60, "batch_size": 400, "lr": 0.3, "early_stopping": 3, "device": "cpu"},
    }
    run = vaelab.train(build_config(overrides=over), tmp_path / "r", progress=False, log=lambda m: None)
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = history[-1]
    assert last["stopped_early"] and len(history) < 60
    best = min(history, key=lambda r: r["test_neg_elbo"] if "test_neg_elbo" in r else r["valid_neg_elbo"])
    assert last["best_epoch"] == best["epoch"] == len(history) - 3
    ev = vaelab.evaluate(run, "valid", device="cpu", data_dir=data_dir)
    assert ev["neg_elbo"] == pytest.approx(best["valid_neg_elbo"], rel=1e-6)  # the best epoch's weights
    vaelab.train(build_config(overrides=over), run, resume=True, progress=False, log=lambda m: None)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(history)  # stopped stays stopped

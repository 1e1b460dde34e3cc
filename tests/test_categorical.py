"""The categorical latent: Gumbel-Softmax sampling, straight-through, the categorical and
relaxed KLs, the score-function estimator against exact gradients, the temperature schedule
and its resume, importance sampling on an enumerable model, and real training on
binarized MNIST."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import distributions as D
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

import vaelab
import vaelab.api
from vaelab import VAE, ModelConfig, VaelabError
from vaelab import checkpoint as ckpt
from vaelab.baselines import MovingAverageBaseline, NVILBaseline
from vaelab.config import build_config
from vaelab.dataprep import load_inputs
from vaelab.evaluation import evaluate_elbo, iw_log_px
from vaelab.gradvar import gradient_variance, parse_estimators, run_gradvar
from vaelab.latents import CategoricalPosterior
from vaelab.model import VAE as _VAE
from vaelab.objectives import elbo_terms, score_function_terms
from vaelab.parts import analytic_kl
from vaelab.priors import UniformCategorical
from vaelab.schedules import gumbel_temperature
from vaelab.training import Trainer, TrainingInterrupted


def CategoricalLatent(n, k, *, tau0=1.0, tau_min=0.5, anneal_rate=0.0, anneal_every=1, hard=False):
    """The categorical family with the uniform prior at `.prior_`, built from a model config."""
    cfg = ModelConfig(
        latent="categorical",
        categorical_dims=[n, k],
        tau0=tau0,
        tau_min=tau_min,
        anneal_rate=anneal_rate,
        anneal_every=anneal_every,
        hard=hard,
    )
    latent = CategoricalPosterior(cfg)
    latent.prior_ = UniformCategorical(cfg, latent)
    return latent


def as_vars(z, latent):
    return z.unflatten(-1, (latent.n, latent.k))


# -- sampling -------------------------------------------------------------------------------


def test_relaxed_samples_lie_on_the_simplex_and_sharpen_as_tau_falls():
    torch.manual_seed(0)
    latent = CategoricalLatent(20, 10)
    params = torch.randn(50, 200)
    max_prob = []
    for tau in (2.0, 1.0, 0.5, 0.1, 0.05, 0.01, 1e-3):
        latent.tau = tau
        y = as_vars(latent.rsample(params, 20), latent)
        assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(()), atol=1e-6)
        max_prob.append(y.max(-1).values.mean().item())
    assert all(a < b for a, b in zip(max_prob, max_prob[1:])), max_prob
    # E[1 - max_k y_k] shrinks about linearly with tau: for K = 10 classes and N(0, 1) logits
    # 0.97 at tau = 0.05 (the gap between the two largest perturbed logits is often < 3 tau),
    # 0.995 at 0.01, 0.9993 at 0.001
    assert max_prob[0] < 0.4 and max_prob[4] > 0.96 and max_prob[5] > 0.99 and max_prob[6] > 0.999


def test_relaxed_argmax_is_a_categorical_sample_and_eval_mode_is_one_hot():
    torch.manual_seed(1)
    latent = CategoricalLatent(1, 4)
    logits = torch.tensor([[1.0, -0.5, 0.3, -1.2]])
    probs = torch.softmax(logits, -1)[0]
    n = 200_000
    latent.tau = 0.7
    y = latent.rsample(logits, n)[:, 0]
    freq = torch.bincount(y.argmax(-1), minlength=4).double() / n
    stderr = (probs.double() * (1 - probs.double()) / n).sqrt()
    assert ((freq - probs.double()).abs() < 4 * stderr).all(), (freq, probs)
    latent.eval()  # the discrete model
    z = latent.rsample(logits, n)[:, 0]
    assert set(z.unique().tolist()) == {0.0, 1.0} and (z.sum(-1) == 1).all()
    freq = z.double().mean(0)
    assert ((freq - probs.double()).abs() < 4 * stderr).all(), (freq, probs)


def test_straight_through_is_one_hot_forward_with_the_relaxed_gradient():
    latent = CategoricalLatent(5, 6, tau0=0.8)
    base = torch.randn(7, 30)
    w = torch.randn(5 * 6)
    grads, samples = [], []
    for hard in (False, True):
        latent.hard = hard
        params = base.clone().requires_grad_()
        torch.manual_seed(3)  # the same Gumbel noise
        z = latent.rsample(params, 2)
        (torch.sin(z * w)).sum().backward()  # a nonlinear downstream function
        samples.append(as_vars(z.detach(), latent))
        grads.append(params.grad)
    soft, hard = samples
    assert set(hard.unique().tolist()) == {0.0, 1.0} and (hard.sum(-1) == 1).all()  # exactly one-hot
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    # the gradient passes through the relaxed sample, evaluated at the one-hot forward value:
    # d/dlogits sin(z w) = cos(z w) w dy/dlogits with z the hard sample
    params = base.clone().requires_grad_()
    torch.manual_seed(3)
    latent.hard = False
    y = latent.rsample(params, 2)
    (y * (torch.cos(hard.flatten(-2) * w) * w)).sum().backward()
    torch.testing.assert_close(grads[1], params.grad)
    assert not torch.allclose(grads[0], grads[1])


# -- KL -------------------------------------------------------------------------------------


def test_categorical_kl_analytic_matches_torch_and_monte_carlo():
    torch.manual_seed(2)
    latent = CategoricalLatent(3, 5).eval()
    params = torch.randn(4, 15) * 2
    prior = latent.prior_
    analytic = analytic_kl(latent, prior)(params).sum(-1)  # per dimension, summed
    torch.testing.assert_close(analytic, D.kl_divergence(latent.distribution(params), prior.distribution()))
    # MC over discrete samples: mean of log q(z) - log p(z); its log p(z) is -N log K
    z, log_ratio = latent.rsample_with_log_ratio(params, 200_000, prior)
    torch.testing.assert_close(log_ratio, latent.log_prob(z, params) - prior.log_prob(z))
    torch.testing.assert_close(prior.log_prob(z[:5]), prior.distribution().log_prob(as_vars(z[:5], latent)))
    torch.testing.assert_close(
        latent.log_prob(z[:3], params), latent.distribution(params).log_prob(as_vars(z[:3], latent))
    )
    stderr = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert ((log_ratio.mean(0) - analytic).abs() < 4 * stderr + 1e-4).all(), (log_ratio.mean(0), analytic)


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_relaxed_kl_integrand_is_the_concrete_log_density_ratio(tau):
    torch.manual_seed(4)
    latent = CategoricalLatent(3, 4, tau0=tau, tau_min=tau)
    params = torch.randn(6, 12)
    y, log_ratio = latent.rsample_with_log_ratio(params, 5, latent.prior_)
    y = as_vars(y, latent).double()
    log_pi = torch.log_softmax(params.double().unflatten(-1, (3, 4)), -1)
    t = torch.tensor(tau, dtype=torch.float64)
    # torch's own Concrete (RelaxedOneHotCategorical) and ExpConcrete densities
    q, p = D.RelaxedOneHotCategorical(t, logits=log_pi), D.RelaxedOneHotCategorical(t, logits=torch.zeros_like(log_pi))
    expected = (q.log_prob(y) - p.log_prob(y)).sum(-1)
    torch.testing.assert_close(log_ratio.double(), expected, rtol=1e-4, atol=1e-3)
    eq, ep = ExpRelaxedCategorical(t, logits=log_pi), ExpRelaxedCategorical(t, logits=torch.zeros_like(log_pi))
    torch.testing.assert_close(
        log_ratio.double(), (eq.log_prob(y.log()) - ep.log_prob(y.log())).sum(-1), rtol=1e-4, atol=1e-3
    )


def tiny_categorical_vae(seed=0, n=2, k=3, hidden=8, scale=3.0):
    torch.manual_seed(seed)
    model = VAE(
        ModelConfig(
            latent="categorical", categorical_dims=[n, k], hidden=[hidden], activation="tanh", input_shape=[1, 2, 2]
        )
    )
    with torch.no_grad():  # sharper posteriors and likelihoods
        for p in model.parameters():
            p.mul_(scale)
    return model


@pytest.mark.parametrize("tau", [1e-2, 1e-3])
def test_no_nan_at_tiny_temperature(tau):
    model = tiny_categorical_vae(scale=20.0)  # saturated logits as well
    x = torch.bernoulli(torch.full((64, 1, 2, 2), 0.5))
    model.latent.tau = tau
    for kl, hard in itertools.product(("analytic", "mc"), (False, True)):
        model.latent.hard = hard
        model.zero_grad()
        terms = elbo_terms(model, x, 3, kl)
        terms["neg_elbo"].mean().backward()
        assert torch.isfinite(terms["neg_elbo"]).all(), (kl, hard)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()), (kl, hard)


# -- gradient estimators against exact gradients ---------------------------------------------

C = torch.tensor([1.0, -2.0, 3.0, 0.5])
LOGITS = torch.tensor([1.0, -0.5, 0.3, -1.2])


class Toy:
    """q(z) = Cat(softmax(logits)) over 4 classes, and "log p(x|z)" = C.z: a model small enough
    for exact gradients, with the interface the objectives use."""

    baseline = None
    log_weights = _VAE.log_weights  # the one log-weight computation, on this toy's parts
    analytic_kl = _VAE.analytic_kl
    kl_groups = _VAE.kl_groups

    def __init__(self, m: int, tau: float = 1.0):
        self.latent = CategoricalLatent(1, 4, tau0=tau, tau_min=tau)
        self.prior = self.latent.prior_
        self.params = LOGITS.repeat(m, 1).requires_grad_()  # one row per draw: per-draw gradients

    def encode(self, x):
        return self.params

    def decode(self, z):
        return z

    def log_px_given_z(self, x, z):
        return (z * C).sum(-1)


def per_draw_gradients(loss_fn, m, tau=1.0, seed=0):
    torch.manual_seed(seed)
    toy = Toy(m, tau)
    loss_fn(toy).sum().backward()
    return toy.params.grad.double()  # (m, 4)


def exact_gradient(kl: bool):
    """d/dlogits of -(E_q[C.z] - KL(q || uniform)) by autograd of the enumerated objective."""
    logits = LOGITS.double().requires_grad_()
    p = torch.softmax(logits, -1)
    objective = (p * C.double()).sum() - ((p * (p.log() + math.log(4))).sum() if kl else 0.0)
    (-objective).backward()
    return logits.grad


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_score_function_estimator_is_unbiased_and_noisier(kl):
    m = 100_000
    exact = exact_gradient(kl=True)
    # plain REINFORCE, and with a baseline at E_q[f] (a constant, as a moving average settles
    # to), which must not add bias
    p = torch.softmax(LOGITS, -1)
    expected_signal = (p * C).sum() - ((p * (p.log() + math.log(4))).sum() if kl == "mc" else 0.0)
    sf = per_draw_gradients(lambda toy: score_function_terms(toy, None, 1, kl)[0], m)
    baseline = MovingAverageBaseline((1,))
    baseline.average.fill_(expected_signal.item())
    baseline.updates.fill_(1)
    sf_b = per_draw_gradients(
        lambda toy: score_function_terms(toy, None, 1, kl, baseline=baseline.eval())[0], m, seed=1
    )
    for g in (sf, sf_b):
        stderr = g.std(0) / math.sqrt(m)
        assert ((g.mean(0) - exact).abs() < 4 * stderr).all(), (g.mean(0), exact, stderr)
    # the baseline shrinks the variance
    assert sf_b.var(0).sum() < 0.85 * sf.var(0).sum(), (sf_b.var(0), sf.var(0))
    reparam = per_draw_gradients(lambda toy: elbo_terms(toy, None, 1, "analytic")["neg_elbo"], m, seed=2)
    assert sf.var(0).sum() > 3 * reparam.var(0).sum()


def test_nvil_baseline_keeps_a_running_scale_of_the_centred_signal_floored_at_one():
    x = torch.zeros(4, 1)
    nvil = NVILBaseline((1,))  # h(x) starts at zero: b(x) is the running average
    first = torch.tensor([[0.0, 2.0, 4.0, 6.0]])  # centred by its own mean 3: -3 -1 1 3, variance 5
    b, scale, loss = nvil(x, first)
    assert torch.equal(b, torch.full((4,), 3.0)) and scale.item() == pytest.approx(math.sqrt(5))
    assert loss.item() == pytest.approx(5.0)  # the learned baseline's regression loss
    second = torch.tensor([[3.0, 3.5, 2.5, 3.0]])  # centred by the average, 3: variance 0.125
    b, scale, _ = nvil(x, second)
    v = 0.99 * 5.0 + 0.01 * 0.125
    assert nvil.variance.item() == pytest.approx(v) and scale.item() == pytest.approx(math.sqrt(v))
    small = NVILBaseline((1,))
    _, scale, _ = small(x, second)  # a spread under 1 is not blown up
    assert small.variance.item() == pytest.approx(0.125) and scale.item() == 1.0
    nvil.eval()(x, first)  # evaluation mode leaves the running statistics alone
    assert nvil.variance.item() == pytest.approx(v) and nvil.updates.item() == 2


@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_nvil_divides_the_encoder_gradient_by_its_scale_and_keeps_its_direction(kl):
    # At a frozen scale 3, NVIL's gradient is exactly a third of the same draws' gradient with
    # the moving average at the same centre, with either KL: the same direction in
    # expectation, a ninth of the variance.
    m = 20_000
    p = torch.softmax(LOGITS, -1)
    expected_signal = ((p * C).sum() - ((p * (p.log() + math.log(4))).sum() if kl == "mc" else 0.0)).item()
    moving = MovingAverageBaseline((1,))
    moving.average.fill_(expected_signal)
    moving.updates.fill_(1)
    nvil = NVILBaseline((1,))
    nvil.average.average.fill_(expected_signal)
    nvil.average.updates.fill_(1)
    nvil.variance.fill_(9.0)
    nvil.updates.fill_(1)
    x = torch.zeros(m, 1)
    g_moving = per_draw_gradients(lambda toy: score_function_terms(toy, x, 1, kl, baseline=moving.eval())[0], m)
    g_nvil = per_draw_gradients(lambda toy: score_function_terms(toy, x, 1, kl, baseline=nvil.eval())[0], m)
    assert torch.allclose(g_nvil, g_moving / 3, atol=1e-6)
    exact = exact_gradient(kl=True)
    stderr = g_nvil.std(0) / math.sqrt(m)
    assert ((g_nvil.mean(0) - exact / 3).abs() < 4 * stderr).all(), (g_nvil.mean(0), exact / 3, stderr)


def test_reparameterized_gradient_is_that_of_the_relaxed_objective_not_the_discrete_one():
    m, tau = 100_000, 1.0
    reparam = per_draw_gradients(lambda toy: -toy.log_px_given_z(None, toy.latent.rsample(toy.params, 1))[0], m, tau)
    # Independent reference: the likelihood-ratio gradient of the relaxed objective E_y[C.y],
    # y ~ Concrete(tau, logits), from torch's ExpConcrete density, averaged over 1M draws
    torch.manual_seed(5)
    n = 1_000_000
    t = torch.tensor(tau, dtype=torch.float64)
    x = ExpRelaxedCategorical(t, logits=LOGITS.double()).sample((n,))  # x = log y
    f = (x.exp() * C.double()).sum(-1)
    logits = LOGITS.double().repeat(n, 1).requires_grad_()
    ExpRelaxedCategorical(t, logits=logits).log_prob(x).sum().backward()  # per-draw score
    lr = -(f - f.mean()).unsqueeze(-1) * logits.grad  # per-draw, with a constant baseline
    relaxed_exact, relaxed_err = lr.mean(0), lr.std(0) / math.sqrt(lr.shape[0])
    err = (reparam.var(0) / m + relaxed_err**2).sqrt()
    assert ((reparam.mean(0) - relaxed_exact).abs() < 4 * err).all(), (reparam.mean(0), relaxed_exact, err)
    # ... and at tau = 1 the relaxation's gradient is clearly not the discrete model's
    discrete = exact_gradient(kl=False)
    assert ((reparam.mean(0) - discrete).abs() / err).max() > 10


# -- evaluation of the discrete model ----------------------------------------------------------


def all_images():
    return torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32).reshape(16, 1, 2, 2)


def enumerate_model(model):
    """Exact log p(x) and ELBO of all 16 binary 2x2 images, summing over the K^N latents."""
    n, k = model.latent.n, model.latent.k
    codes = torch.tensor(list(itertools.product(range(k), repeat=n)))
    z = torch.nn.functional.one_hot(codes, k).float().flatten(1)  # (K^N, N*K)
    xs = all_images()
    with torch.no_grad():
        log_px_z = model.log_px_given_z(xs, model.decode(z.unsqueeze(1))).double()  # (K^N, 16)
        log_q = model.latent.log_prob(z.unsqueeze(1), model.encode(xs)).double()  # (K^N, 16)
    log_prior = -n * math.log(k)
    log_px = torch.logsumexp(log_px_z + log_prior, 0)
    elbo = (log_q.exp() * (log_px_z + log_prior - log_q)).sum(0)
    return xs, log_px, elbo


def test_importance_sampling_with_the_categorical_proposal_converges_to_exact_log_px():
    model = tiny_categorical_vae().eval()
    xs, exact, exact_elbo = enumerate_model(model)
    assert torch.logsumexp(exact, 0).exp().item() == pytest.approx(1.0, abs=1e-6)
    assert (exact - exact_elbo).mean() > 0.05  # the untrained q is not the posterior
    ks = (1, 10, 100, 5000)
    repeats = {1: 1000, 10: 50, 100: 20, 5000: 5}  # copies of the 16 images, for Monte-Carlo error
    est = {k: iw_log_px(model, xs.repeat(repeats[k], 1, 1, 1), k, seed=1).view(repeats[k], 16) for k in ks}
    gaps = {k: (exact - v.mean(0)).mean().item() for k, v in est.items()}
    stderr_1 = (est[1] - exact).mean(1).std().item() / math.sqrt(repeats[1])
    assert gaps[1] == pytest.approx((exact - exact_elbo).mean().item(), abs=4 * stderr_1)  # E[L_1] = ELBO
    assert all(gaps[a] > gaps[b] for a, b in zip(ks, ks[1:])), gaps
    assert abs(gaps[5000]) < 0.005, gaps
    # evaluate_elbo uses one-hot samples in eval mode: the discrete model's ELBO
    ev = evaluate_elbo(model, xs.repeat(500, 1, 1, 1), samples=20, kl="analytic")
    assert ev["neg_elbo"] == pytest.approx(-exact_elbo.mean().item(), abs=0.02)
    ev_mc = evaluate_elbo(model, xs.repeat(500, 1, 1, 1), samples=20, kl="mc")
    assert ev_mc["neg_elbo"] == pytest.approx(-exact_elbo.mean().item(), abs=0.05)


# -- the temperature schedule --------------------------------------------------------------


def test_temperature_schedule():
    tau = lambda step: gumbel_temperature(step, 1.0, 0.5, 3e-5, 1000)  # the paper's schedule
    assert tau(0) == 1.0 and tau(999) == 1.0
    assert tau(1000) == pytest.approx(math.exp(-0.03)) and tau(1999) == tau(1000)
    assert tau(10_000) == pytest.approx(math.exp(-0.3))
    assert tau(23_000) == pytest.approx(math.exp(-0.69)) and tau(24_000) == 0.5 and tau(10**7) == 0.5
    assert gumbel_temperature(5000, 2.0, 0.1, 0.0, 1) == 2.0
    latent = CategoricalLatent(2, 3, tau0=1.0, tau_min=0.5, anneal_rate=3e-5, anneal_every=1000)
    latent.set_step(12_345)
    assert latent.tau == tau(12_345) and latent.schedule_state() == {"tau": tau(12_345)}


def test_config_validation(tmp_path, data_dir):
    with pytest.raises(VaelabError, match="categorical-dims"):
        build_config(overrides={"model": {"latent": "categorical", "categorical_dims": "20"}})
    with pytest.raises(VaelabError, match="needs a latent trained through a relaxation"):
        VAE(build_config(overrides={"model": {"hard": True}}).model)  # the family says it has no relaxation
    with pytest.raises(VaelabError, match="score-function"):
        build_config(overrides={"train": {"estimator": "score-function", "objective": "iwae"}})
    with pytest.raises(VaelabError, match="add --estimator score-function"):
        build_config(overrides={"model": {"latent": "categorical", "baseline": "learned"}})
    with pytest.raises(VaelabError, match="tau"):
        build_config(overrides={"model": {"latent": "categorical", "tau_min": 0}})
    gaussian_sf = build_config(
        overrides={
            "data": {"dataset": "frey_face", "data_dir": data_dir},
            "train": {"estimator": "score-function", "device": "cpu"},
        }
    )
    with pytest.raises(VaelabError, match="is for discrete latents"):
        vaelab.train(gaussian_sf, tmp_path / "sf", progress=False)
    cfg = build_config("gumbel-softmax-paper")
    assert cfg.model.categorical_dims == [20, 10] and cfg.model.hidden == [512, 256]
    assert cfg.model.activation == "relu" and cfg.data.dataset == "binarized_mnist"
    assert (cfg.model.tau0, cfg.model.tau_min, cfg.model.anneal_rate, cfg.model.anneal_every) == (1.0, 0.5, 3e-5, 1000)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.optimizer) == (1e-3, 100, "adam")
    cfg.model.input_shape = [1, 28, 28]
    model = VAE(cfg.model)  # 784-512-256-200 and 200-256-512-784
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [512, 256, 200, 256, 512, 784]


# -- real training --------------------------------------------------------------------------


def small_config(data_dir, epochs=2, model=None, train=None):
    return build_config(
        overrides={
            "data": {"dataset": "binarized_mnist", "binarize": "none", "data_dir": data_dir},
            "model": {
                "latent": "categorical",
                "categorical_dims": [20, 10],
                "hidden": [64],
                "anneal_every": 20,
                "anneal_rate": 2e-3,
                **(model or {}),
            },
            "train": {"epochs": epochs, "batch_size": 500, "lr": 3e-3, "device": "cpu", **(train or {})},
        }
    )


def subset_trainer(cfg, run, n_train, n_eval, **kw):
    """A Trainer on the first n_train training and n_eval validation images (fast tests)."""
    trainer = Trainer(cfg, run, progress=False, **kw)
    trainer.train_x, trainer.eval_x = trainer.train_x[:n_train], trainer.eval_x[:n_eval]
    return trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("cat") / "run"
    run.mkdir()
    subset_trainer(small_config(data_dir, train={"batch_size": 200}), run, 10_000, 2000).fit()
    return run


def test_categorical_vae_learns_on_binarized_mnist(trained, data_dir):
    history = ckpt.read_metrics(trained)
    valid = [r["valid_neg_elbo"] for r in history]
    # an untrained model sits near 543 nats; 100 steps of this small model reach about 200
    assert valid[0] > valid[1] and valid[1] < 230, valid
    for r in history:  # the temperature of each epoch's last step
        assert r["tau"] == pytest.approx(gumbel_temperature(r["step"] - 1, 1.0, 0.5, 2e-3, 20))
        assert r["valid_neg_elbo"] == pytest.approx(r["valid_rec"] + r["valid_kl"], rel=1e-6)
        assert 0 < r["valid_kl"] < 20 * math.log(10)
    assert history[-1]["tau"] < history[0]["tau"] < 1.0
    # the loaded model knows where its schedule ended; its evaluation (discrete samples,
    # seeded) reproduces the logged figure
    cfg, model = vaelab.api.load_run(trained, "cpu", data_dir)
    assert model.latent.tau == history[-1]["tau"]
    x = load_inputs(cfg.data, "valid").images[:2000]
    assert evaluate_elbo(model, x)["neg_elbo"] == pytest.approx(valid[-1], rel=1e-6)
    enc = vaelab.encode(trained, "valid", device="cpu", data_dir=data_dir)
    assert enc["probs"].shape == (10000, 20, 10) and enc["log_probs"].shape == (10000, 20, 10)
    np.testing.assert_allclose(enc["probs"].sum(-1), 1.0, atol=1e-5)
    assert vaelab.sample(trained, 4, device="cpu").shape == (4, 1, 28, 28)


def test_gradvar_shows_the_score_function_variance(trained, data_dir):
    result = run_gradvar(trained, draws=20, batch_size=50, split="valid", device="cpu", data_dir=data_dir)
    r = result["estimators"]
    assert set(r) == {"reparam", "straight-through", "score-function"}
    assert r["score-function"]["var_mean"] > 10 * r["reparam"]["var_mean"]
    assert r["score-function"]["noise_to_signal"] > r["reparam"]["noise_to_signal"]
    assert all(math.isfinite(v["mean_grad_norm"]) and v["mean_grad_norm"] > 0 for v in r.values())
    assert json.loads(json.dumps(result))["points"] == 50
    model = vaelab.load(trained, device="cpu")
    with pytest.raises(VaelabError, match="at least 2"):
        gradient_variance(model, torch.zeros(2, 1, 28, 28), draws=1)


def test_resume_is_exact_with_the_temperature_schedule_and_a_learned_baseline(tmp_path, data_dir):
    cfg = lambda: small_config(
        data_dir,
        epochs=2,
        model={"anneal_every": 4, "anneal_rate": 0.01, "baseline": "learned"},
        train={"batch_size": 100, "estimator": "score-function"},
    )
    straight = tmp_path / "straight"
    straight.mkdir()
    subset_trainer(cfg(), straight, 2000, 500).fit()

    mid = tmp_path / "mid"
    mid.mkdir()
    trainer = subset_trainer(cfg(), mid, 2000, 500)

    def interrupt(t):
        if t.step == 27:  # mid-epoch, between two temperature updates
            t.stop_requested = True

    trainer.on_step = interrupt
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    resumed = subset_trainer(cfg(), mid, 2000, 500, resume=True)
    assert resumed.step == 27
    resumed.fit()

    a, b = load_file(str(straight / ckpt.WEIGHTS)), load_file(str(mid / ckpt.WEIGHTS))
    assert set(a) == set(b)
    # the baseline's running average and its network are part of the checkpoint
    assert "baseline.average.average" in a and "baseline.net.1.weight" in a
    assert a["baseline.average.updates"].item() == 40 and a["baseline.net.3.weight"].abs().sum() > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ha, hb = ckpt.read_metrics(straight), ckpt.read_metrics(mid)
    assert (
        [r["tau"] for r in ha] == [r["tau"] for r in hb] == [gumbel_temperature(s, 1.0, 0.5, 0.01, 4) for s in (19, 39)]
    )
    assert [r["valid_neg_elbo"] for r in ha] == [r["valid_neg_elbo"] for r in hb]
    assert ha[-1]["valid_neg_elbo"] < ha[0]["valid_neg_elbo"]  # REINFORCE learns too, if slowly


def test_gradvar_command_line(trained, data_dir):
    import os
    import subprocess
    import sys

    env = {**os.environ, "VAELAB_DATA_DIR": data_dir}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaelab",
            "gradvar",
            str(trained),
            "--json",
            "--draws",
            "5",
            "--batch-size",
            "20",
            "--split",
            "valid",
            "--estimators",
            "reparam,score-function",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["estimators"]) == {"reparam", "score-function"} and result["points"] == 20
    with pytest.raises(VaelabError, match="comma-separated list"):
        parse_estimators("reparam,rebar")

"""The math: KL, likelihoods and the ELBO against independent computations."""

import math

import pytest
import torch
from torch import distributions as D

from vaelab import VAE, ModelConfig
from vaelab.latents import GaussianPosterior
from vaelab.likelihoods import BernoulliLikelihood, GaussianLikelihood
from vaelab.objectives import elbo_terms
from vaelab.parts import analytic_kl
from vaelab.priors import StandardNormal


def gaussian(dim):
    latent = GaussianPosterior(ModelConfig(latent_dim=dim))
    return latent, StandardNormal(ModelConfig(latent_dim=dim), latent)


def test_analytic_kl_matches_monte_carlo_and_torch():
    torch.manual_seed(0)
    latent, prior = gaussian(5)
    params = torch.randn(4, 10) * torch.tensor([1.0] * 5 + [0.5] * 5)
    analytic = analytic_kl(latent, prior)(params).sum(-1)  # per dimension, summed
    # torch.distributions' own closed form
    reference = D.kl_divergence(latent.distribution(params), prior.distribution())
    torch.testing.assert_close(analytic, reference, rtol=1e-5, atol=1e-5)
    # Monte-Carlo: E_q[log q - log p] with 400k samples; stderr is about 0.005 here
    z, log_ratio = latent.rsample_with_log_ratio(params, 400_000, prior)
    torch.testing.assert_close(log_ratio, latent.log_prob(z, params) - prior.log_prob(z))
    mc = log_ratio.mean(0)
    assert torch.allclose(mc, analytic, atol=0.03), (mc, analytic)
    assert (analytic > 0).all()


def test_log_densities_match_torch_distributions():
    torch.manual_seed(1)
    latent, prior = gaussian(3)
    params = torch.randn(6, 6)
    z = latent.rsample(params, 2)
    torch.testing.assert_close(latent.log_prob(z, params), latent.distribution(params).log_prob(z))
    torch.testing.assert_close(prior.log_prob(z), prior.distribution().log_prob(z))

    x = torch.bernoulli(torch.full((6, 8), 0.3))
    logits = torch.randn(2, 6, 8) * 5
    bern = BernoulliLikelihood()
    torch.testing.assert_close(bern.log_prob(x, logits), bern.distribution(logits).log_prob(x))

    gauss = GaussianLikelihood()
    y = torch.rand(6, 8)
    params = torch.randn(2, 6, 16)
    torch.testing.assert_close(gauss.log_prob(y, params), gauss.distribution(params).log_prob(y))


def test_bernoulli_logits_stay_finite_where_sigmoid_would_not():
    bern = BernoulliLikelihood()
    logits = torch.tensor([[200.0, -200.0]])
    x = torch.tensor([[1.0, 0.0]])
    assert bern.log_prob(x, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert bern.log_prob(1 - x, logits).item() == pytest.approx(-400.0)


def tiny_vae(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(latent_dim=1, hidden=[8], activation="tanh", input_shape=[1, 2, 2])
    return VAE(cfg)


def exact_log_px(model, x, grid=40_001, lim=12.0):
    """log p(x) = log ∫ p(x|z) N(z; 0, 1) dz by quadrature over a fine 1-D grid."""
    z = torch.linspace(-lim, lim, grid, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        logits = model.decode(z.float()).double()  # (G, P)
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits.unsqueeze(1).expand(-1, x.shape[0], -1), x.flatten(1).double().expand(grid, -1, -1), reduction="none"
        ).sum(-1)  # (G, B)
    log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    dz = z[1, 0] - z[0, 0]
    return torch.logsumexp(log_px_z + log_prior, 0) + torch.log(dz)


def test_elbo_is_below_exact_log_px_on_an_enumerable_model():
    model = tiny_vae()
    # all 16 binary 2x2 images
    xs = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32).reshape(16, 1, 2, 2)
    log_px = exact_log_px(model, xs)
    # the quadrature is a proper distribution over the 16 images
    assert torch.logsumexp(log_px, 0).exp().item() == pytest.approx(1.0, abs=1e-6)
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = -elbo_terms(model, xs, samples=20_000)["neg_elbo"].double()
    gap = log_px - elbo
    # ELBO <= log p(x) for every x (Monte-Carlo error of the ELBO here is < 0.01 nats)
    assert (gap > -0.01).all(), gap
    # and the gap is the KL from q to the true posterior: positive for an untrained encoder
    assert gap.mean() > 0.01

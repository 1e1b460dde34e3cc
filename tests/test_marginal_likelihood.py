"""The importance-sampled log p(x) on a model where it is exact, the IWAE objective, the
IWAE learning-rate schedule."""

import math

import pytest
import torch
from torch import nn

from vaelab import VAE, ModelConfig, VaelabError
from vaelab.evaluation import active_units, chunk_shape, evaluate_nll, iw_log_px
from vaelab.likelihoods import GaussianLikelihood
from vaelab.objectives import elbo_terms, iwae_terms
from vaelab.schedules import iwae_stage, learning_rate

D_X, D_Z, SIGMA2 = 6, 2, 0.5


class IdentityMeanGaussian(GaussianLikelihood):
    """p(x|z) = N(decoder mean, exp(logvar)) without the sigmoid: the linear-Gaussian model."""

    def split(self, params):
        mean, logvar = params.chunk(2, dim=-1)
        return mean, logvar


def ppca(posterior_scale: float = 1.0, seed: int = 0):
    """Probabilistic PCA as a VAE: z ~ N(0, I), x|z ~ N(Wz + b, s2 I), so that
    p(x) = N(b, W W^T + s2 I) exactly. The encoder is the exact posterior with its mean and
    standard deviation distorted by `posterior_scale` (1 = exact)."""
    g = torch.Generator().manual_seed(seed)
    W, b = torch.randn(D_X, D_Z, generator=g), torch.randn(D_X, generator=g)
    model = VAE(ModelConfig(latent_dim=D_Z, hidden=[4], input_shape=[1, 1, D_X], likelihood="gaussian"))
    model.likelihood = IdentityMeanGaussian()
    decoder = nn.Linear(D_Z, 2 * D_X)
    with torch.no_grad():
        decoder.weight.zero_()
        decoder.weight[:D_X] = W
        decoder.bias[:D_X] = b
        decoder.bias[D_X:] = math.log(SIGMA2)
    # exact posterior: Sigma = (I + W^T W / s2)^-1, mu = Sigma W^T (x - b) / s2
    cov = torch.linalg.inv(torch.eye(D_Z) + W.T @ W / SIGMA2)
    encoder = nn.Linear(D_X, 2 * D_Z)
    with torch.no_grad():
        A = cov @ W.T / SIGMA2
        encoder.weight.zero_()
        encoder.weight[:D_Z] = A * posterior_scale
        encoder.bias[:D_Z] = -(A @ b) * posterior_scale
        encoder.bias[D_Z:] = torch.log(torch.diagonal(cov)) + 2 * math.log(posterior_scale)
    model.encoder = nn.Sequential(nn.Flatten(), encoder)
    model.decoder = decoder
    marginal = torch.distributions.MultivariateNormal(b, W @ W.T + SIGMA2 * torch.eye(D_X))
    return model.eval(), marginal


def data(marginal, n=400, seed=1):
    torch.manual_seed(seed)
    return marginal.sample((n,)).reshape(n, 1, 1, D_X)


@pytest.mark.parametrize("scale", [0.9, 0.7])
def test_importance_sampling_converges_to_the_exact_log_px(scale):
    model, marginal = ppca(posterior_scale=scale)
    x = data(marginal)
    exact = marginal.log_prob(x.flatten(1)).double()
    with torch.no_grad():
        elbo = -elbo_terms(model, x, samples=2000)["neg_elbo"].double()
    ks = (1, 10, 100, 1000, 5000)
    gaps = {k: (exact - iw_log_px(model, x, k, seed=3)).mean().item() for k in ks}
    # E[L_1] is the ELBO, and ELBO <= L_1 <= L_10 <= ... <= L_5000 <= log p(x) (Burda et al., Thm 1);
    # averaged over 400 points the Monte-Carlo error is far below the steps asserted here
    assert gaps[1] == pytest.approx((exact - elbo).mean().item(), abs=0.02)
    assert gaps[1] > 0.1
    assert all(gaps[a] > gaps[b] for a, b in zip(ks, ks[1:]))
    assert gaps[5000] > -0.005
    if scale == 0.9:  # a close proposal: the k = 5000 estimate is exact to 0.01 nats
        assert abs(gaps[5000]) < 0.01
        assert gaps[1000] < 0.01


def test_exact_posterior_makes_the_bound_tight():
    model, marginal = ppca(posterior_scale=1.0)
    x = data(marginal, n=50)
    exact = marginal.log_prob(x.flatten(1)).double()
    est = iw_log_px(model, x, 2000, seed=0)
    assert (est - exact).abs().max().item() < 0.02


def test_exactly_k_samples_in_chunks_of_any_size():
    model, marginal = ppca(posterior_scale=0.7)
    x = data(marginal, n=7)
    small = 8 * 1024  # forces chunks of a few samples and one point at a time
    points, samples = chunk_shape(model, 1000, small)
    assert points == 1 and samples < 1000
    a = evaluate_nll(model, x, 1000, seed=5)
    b = evaluate_nll(model, x, 1000, seed=5, max_memory=small)
    assert a["iw_samples"] == b["iw_samples"] == 1000
    assert a["nll"] == pytest.approx(b["nll"], abs=0.05)  # same estimator, different chunking
    assert iw_log_px(model, x, 300, seed=2).equal(iw_log_px(model, x, 300, seed=2))  # seeded


def test_bad_arguments_are_user_errors():
    model, marginal = ppca()
    x = data(marginal, n=3)
    with pytest.raises(VaelabError, match="at least 1"):
        iw_log_px(model, x, 0)
    with pytest.raises(VaelabError, match="too small"):
        iw_log_px(model, x, 10, max_memory=16)


def test_iwae_bound_terms():
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=3, hidden=[16], input_shape=[1, 4, 4]))
    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.4))
    torch.manual_seed(1)
    one = iwae_terms(model, x, 1)
    torch.manual_seed(1)
    mc = elbo_terms(model, x, 1, kl="mc")
    # k = 1: the IWAE bound is the single-sample ELBO
    torch.testing.assert_close(one["neg_iwae"], mc["neg_elbo"])
    # k = 50: log-mean-exp >= mean of logs, point by point (Jensen)
    many = iwae_terms(model, x, 50)
    assert (many["neg_iwae"] <= many["neg_elbo"] + 1e-5).all()
    # gradients flow through the normalised weights (never detached)
    many["neg_iwae"].mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_iwae_learning_rate_schedule():
    assert [iwae_stage(e)[0] for e in (0, 1, 3, 4, 12, 13, 3279, 5000)] == [0, 1, 1, 2, 2, 3, 7, 7]
    assert sum(3**i for i in range(8)) == 3280
    assert iwae_stage(3279) == (7, 2186, 2187)
    assert learning_rate(1e-3, "iwae", 0) == 1e-3
    assert learning_rate(1e-3, "iwae", 3279) == pytest.approx(1e-4)
    assert learning_rate(1e-3, "constant", 3279) == 1e-3


def test_active_units():
    mu = torch.cat([torch.randn(1000, 2), 0.01 * torch.randn(1000, 3)], 1)
    assert active_units(mu) == 2

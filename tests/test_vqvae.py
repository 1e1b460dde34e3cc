"""VQ-VAE (vaelab.models.vqvae): the straight-through gradient reaches the encoder through
VAE.decode, the bound is the one a deterministic posterior admits (rec + M log K), the codebook
learns by its loss term or by moving averages, and evaluation reports its usage."""

from __future__ import annotations

import math

import pytest
import torch

import vaelab
from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.model import VAE
from vaelab.objectives import StepContext, elbo_terms


def _model(**options):
    cfg = ModelConfig(
        latent="vq",
        hidden=[16],
        latent_dim=8,
        input_shape=[1, 4, 4],
        options={"codebook_size": 5, "code_dim": 4, **options},
    )
    torch.manual_seed(0)
    return VAE(cfg)


def test_the_straight_through_gradient_reaches_the_encoder_as_the_decoders_input_gets_it():
    model = _model()
    x = torch.rand(6, 1, 4, 4).round()
    seen = {}
    hook = model.decoder.register_forward_pre_hook(lambda m, args: seen.update(h=args[0]) or args[0].retain_grad())
    z_e = model.encode(x).detach().requires_grad_(True)
    params = model.latent.code(z_e)
    loss = -model.log_px_given_z(x, model.decode(params[None]))[0].sum()
    loss.backward()
    hook.remove()
    z_q = model.latent.quantize(z_e.detach())[0]
    torch.testing.assert_close(seen["h"].detach(), z_q)  # the decoder sees the codebook entries
    assert z_e.grad.abs().sum() > 0  # and the encoder gets a gradient...
    torch.testing.assert_close(z_e.grad, seen["h"].grad)  # ...exactly the one at the decoder's input


def test_the_bound_is_rec_plus_m_log_k_and_no_importance_sampled_nll():
    model = _model()
    x = torch.rand(6, 1, 4, 4).round()
    terms = elbo_terms(model, x, 1, "mc")
    m, k = 2, 5  # latent_dim 8 in code vectors of 4, a codebook of 5
    torch.testing.assert_close(terms["kl"], torch.full((6,), m * math.log(k)))
    torch.testing.assert_close(terms["neg_elbo"], terms["rec"] + m * math.log(k))
    assert model.latent.kind == "deterministic"
    assert vaelab.build_config(overrides={"model": {"latent": "vq", "latent_dim": 32}}).train.kl == "mc"


def test_a_latent_dim_that_does_not_split_into_codes_is_one_line():
    with pytest.raises(VaelabError, match="make --latent-dim a multiple of code_dim"):
        _model(code_dim=3)


def test_the_codebook_learns_by_moving_averages_of_its_assigned_vectors():
    """One update with decay d: N_j <- d N_j + (1 - d) n_j, S_j <- d S_j + (1 - d) sum of the vectors
    assigned to entry j, e_j = S_j / N_j (Laplace-smoothed), as the paper's appendix A.1."""
    d = 0.5
    model = _model(ema=True, ema_decay=d)
    q = model.latent
    assert not q.codebook.requires_grad
    z_e = torch.randn(64, 8)
    k = q.indices(z_e).reshape(-1)
    vectors = z_e.reshape(-1, 4)
    count0, sum0 = q.ema_count.clone(), q.ema_sum.clone()
    q.train()
    out = q.to_decoder(z_e)
    n = torch.stack([(k == j).sum() for j in range(5)]).float()
    s = torch.stack([vectors[k == j].sum(0) for j in range(5)])
    count, total = d * count0 + (1 - d) * n, d * sum0 + (1 - d) * s
    smoothed = (count + 1e-5) / (count.sum() + 5e-5) * count.sum()
    torch.testing.assert_close(q.codebook.detach(), total / smoothed[:, None])
    assert out.shape == z_e.shape
    before = q.codebook.clone()
    q.eval()
    q.to_decoder(torch.randn(64, 8))
    assert torch.equal(q.codebook, before)  # evaluation never moves it


def test_a_vqvae_run_reports_its_codebook(tmp_path, data_dir):
    cfg = vaelab.build_config(
        "vqvae-mnist",
        overrides={
            "data": {"data_dir": data_dir},
            "model": {"hidden": [64], "latent_dim": 16, "options": {"codebook_size": 16, "code_dim": 4}},
            "train": {"epochs": 1, "batch_size": 500, "device": "cpu"},
        },
    )
    assert cfg.train.options == {"commitment": 0.25}
    run = vaelab.train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    result = vaelab.evaluate(run, device="cpu", data_dir=data_dir)
    stats = result["latent_statistics"]  # the family's own numbers, beside the bounds
    assert 0 < stats["codebook_usage"] <= 1 and 1 <= stats["codebook_perplexity"] <= 16
    assert result["kl"] == pytest.approx(4 * math.log(16), rel=1e-6)
    assert "active_units" not in result and "nll" not in result
    with pytest.raises(VaelabError, match="deterministic"):
        vaelab.evaluate(run, iw_samples=5, device="cpu", data_dir=data_dir)
    assert isinstance(StepContext(cfg.train).options, dict)

"""The conditional VAE (vaelab.models.conditional) and the labels that travel with a batch: its
bounds are bounds on -log p(x|y), checked on a linear-Gaussian model where p(x|y) is exact."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import distributions as D

import vaelab
from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.evaluation import iw_log_px
from vaelab.model import VAE
from vaelab.parts import Likelihood
from vaelab.registry import load_builtins

load_builtins()  # vaelab's own parts first, so the test's likelihood comes after them in every list
SIGMA = 0.5


@vaelab.register_likelihood("test-linear-gaussian")
class LinearGaussian(Likelihood):
    """p(x|z,y) = N(decoder output, SIGMA^2 I): no squashing, so the model is linear-Gaussian."""

    def log_prob(self, x, params):
        return D.Normal(params, SIGMA).log_prob(x).sum(-1)

    def mean(self, params):
        return params

    def sample(self, params, generator=None):
        return params + SIGMA * torch.randn(params.shape, generator=generator, device=params.device)


def linear_cvae(exact_posterior: bool = True):
    """A cvae whose base networks are single linear layers (hidden = []), set by hand:
    x = W z + m_y + noise, z ~ N(0, I), so p(x|y) = N(m_y, W W^T + SIGMA^2 I); W has orthogonal
    columns, so the true posterior is N(A (x - m_y), S) with a diagonal S, which the encoder can
    represent exactly (its class embedding carries -A m_y)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        network="cvae",
        hidden=[],
        latent_dim=2,
        likelihood="test-linear-gaussian",
        input_shape=[1, 2, 2],
        n_classes=3,
        options={"base": "mlp"},
    )
    model = VAE(cfg)
    q, _ = torch.linalg.qr(
        torch.randn(
            4,
            2,
        )
    )
    W = q * torch.tensor(
        [1.5, 0.7],
    )  # orthogonal columns, norms 1.5 and 0.7
    means = torch.randn(
        3,
        4,
    )  # m_y for the 3 classes
    S = 1.0 / (1.0 + (W * W).sum(0) / SIGMA**2)  # the posterior's (diagonal) variances
    A = S[:, None] * W.T / SIGMA**2
    dec = model.decoder.base.net[0]
    enc = model.encoder.base.net[0]
    with torch.no_grad():
        dec.weight.copy_(torch.cat([W, means.T], 1))  # [z, one-hot y] -> W z + m_y
        dec.bias.zero_()
        enc.weight.zero_()
        enc.weight[:2].copy_(A if exact_posterior else 0.8 * A)
        enc.bias.zero_()
        enc.bias[2:].copy_(S.log())
        model.encoder.embed.weight.zero_()
        model.encoder.embed.weight[:, :2].copy_(-(means @ A.T))
    cov = W @ W.T + SIGMA**2 * torch.eye(
        4,
    )
    return model.eval(), means, cov


def exact_log_px_given_y(x, y, means, cov):
    return D.MultivariateNormal(means[y], cov).log_prob(x.flatten(1))


def test_with_the_exact_posterior_every_log_weight_is_log_p_x_given_y():
    model, means, cov = linear_cvae()
    y = torch.tensor([0, 1, 2, 1, 0])
    x = torch.randn(
        5,
        1,
        2,
        2,
    )
    exact = exact_log_px_given_y(x, y, means, cov)
    lw = model.log_weights(x, 7, y=y).log_w  # (7, 5): every sample gives the same log p(x|y)
    torch.testing.assert_close(lw, exact.expand(7, 5), rtol=0, atol=1e-4)  # float32
    other = model.log_weights(x, 1, y=(y + 1) % 3).log_w[0]  # another class: another, lower density
    assert not torch.allclose(other, exact)


def test_the_importance_sampled_bound_converges_to_the_exact_conditional_likelihood():
    model, means, cov = linear_cvae(exact_posterior=False)
    y = torch.arange(60) % 3
    x = torch.distributions.MultivariateNormal(means[y], cov).sample().reshape(60, 1, 2, 2)
    exact = exact_log_px_given_y(x, y, means, cov)
    gaps = {k: (exact - iw_log_px(model, x, k, y=y)).mean().item() for k in (1, 10, 100, 5000)}
    assert gaps[1] > gaps[10] > gaps[100] > gaps[5000] > -0.005  # a lower bound, tightening with k
    assert gaps[1] > 0.1 and gaps[5000] < 0.01  # measured: 0.285, 0.087, 0.005, 0.002 nats


def test_a_conditional_model_asks_for_its_labels():
    model, _, _ = linear_cvae()
    x = torch.randn(
        3,
        1,
        2,
        2,
    )
    with pytest.raises(VaelabError, match="this model is conditional"):
        model.log_weights(x, 1)
    with pytest.raises(VaelabError, match=r"labels y as whole numbers of shape \(3,\)"):
        model.log_weights(x, 1, y=torch.zeros(2, dtype=torch.long))
    assert model.sample(4, y=2).shape == (4, 1, 2, 2)  # one class for all


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory, data_dir):
    cfg = vaelab.build_config(
        "cvae-mnist",
        overrides={
            "data": {"data_dir": data_dir},
            "model": {"hidden": [64]},
            "train": {"epochs": 1, "batch_size": 500, "device": "cpu"},
        },
    )
    return vaelab.train(cfg, tmp_path_factory.mktemp("cvae") / "run", progress=False, log=lambda m: None)


def test_a_conditional_run_names_its_bounds_and_draws_by_class(cvae_run, data_dir, capsys, monkeypatch):
    from test_user_errors import assert_one_line, run_cli

    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    assert json.loads((cvae_run / "config.json").read_text())["model"]["n_classes"] == 10
    code, out, err = run_cli(capsys, ["evaluate", cvae_run, "--iw-samples", "20"])
    assert code == 0, err
    assert "bounds on -log p(x|y)" in out and "(-log p(x|y), importance sampled, k = 20)" in out
    assert "active units 2" in out  # over the 2 latent dimensions only, never the label
    saved = json.loads((cvae_run / "evaluation_test.json").read_text())
    assert saved["bounds"] == "-log p(x|y)" and saved["nll"] <= saved["neg_elbo"] + 1.0
    images = vaelab.sample(cvae_run, 5, label=[3, 7], device="cpu")
    assert images.shape == (10, 1, 28, 28)
    code, out, _ = run_cli(capsys, ["sample", cvae_run, "--label", "0,1,2", "-n", "4"])
    assert code == 0 and out.strip().endswith("samples.png")
    code, _, err = run_cli(capsys, ["sample", cvae_run, "--label", "10"])
    assert_one_line(code, err, "classes of this model are 0..9")
    code, out, err = run_cli(capsys, ["plot", cvae_run])
    assert code == 0, err
    code, out, err = run_cli(capsys, ["report", cvae_run])
    page = (cvae_run / "report.html").read_text()
    assert "the bounds below are on" in page and "-log p(x|y)" in page


def test_the_explorer_decodes_each_class(cvae_run):
    from vaelab.viz.explore import explorer_for_run

    ex = explorer_for_run(cvae_run, device="cpu")
    assert ex.info["n_labels"] == 10
    z = ex.parse({"z": ["0,0"]})
    assert ex.decode_png(z, ex.parse_label({"y": ["3"]})) != ex.decode_png(z, ex.parse_label({"y": ["8"]}))
    with pytest.raises(ValueError, match="y must be a class in 0..9"):
        ex.parse_label({"y": ["12"]})


def test_unlabelled_data_is_refused_for_a_conditional_model(tmp_path, data_dir):
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "frey_face", "data_dir": data_dir},
            "model": {"network": "cvae", "hidden": [16], "latent_dim": 2, "likelihood": "gaussian"},
            "train": {"epochs": 1, "device": "cpu"},
        }
    )
    with pytest.raises(VaelabError, match="conditional: it needs labelled data, and frey_face has no labels"):
        vaelab.train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert not (tmp_path / "run").exists()
    assert math.isfinite(SIGMA)

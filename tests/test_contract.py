"""The contract every part fits: checkpoints keep tied tensors tied, an objective's or a latent's
mistake is named on the first step, not after an epoch, and the KL is chosen per pair."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import vaelab
from vaelab.errors import VaelabError
from vaelab.parts import NetworkFamily
from vaelab.registry import load_builtins

load_builtins()  # vaelab's own parts first, so the test's parts come after them in every list


class _Masked(nn.Linear):
    """A linear layer whose weight is multiplied by a mask buffer it shares with another layer
    (as MADE's masks are shared by an IAF's steps)."""

    def __init__(self, n: int, mask: torch.Tensor):
        super().__init__(n, n)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


@vaelab.register_network("test-tied-mlp")
class TiedMLP(NetworkFamily):
    """An encoder whose two middle layers share one weight (nanoGPT's weight tying) and whose
    masked layers share one mask tensor."""

    @staticmethod
    def encoder(cfg, input_shape, n_out):
        n = 16
        mask = torch.tril(torch.ones(n, n))
        a, b = nn.Linear(n, n), nn.Linear(n, n)
        b.weight = a.weight  # tied
        m1, m2 = _Masked(n, mask), _Masked(n, mask)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, n), nn.Tanh(), a, nn.Tanh(), b, m1, nn.Tanh(), m2, nn.Linear(n, n_out)
        )

    @staticmethod
    def decoder(cfg, n_in, output_shape, n_params):
        return nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, n_params * 784))


def _config(data_dir, epochs, **model):
    return vaelab.build_config(
        overrides={
            "data": {"dataset": "mnist", "data_dir": data_dir},
            "model": {"network": "test-tied-mlp", "latent_dim": 2, **model},
            "train": {"epochs": epochs, "batch_size": 2000, "device": "cpu"},
        }
    )


def test_tied_and_shared_tensors_save_once_load_tied_and_resume_exactly(tmp_path, data_dir):
    quiet = dict(progress=False, log=lambda m: None)
    whole = vaelab.train(_config(data_dir, 2), tmp_path / "whole", **quiet)
    half = vaelab.train(_config(data_dir, 1), tmp_path / "half", **quiet)
    vaelab.train(_config(data_dir, 2), half, resume=True, **quiet)
    a, b = vaelab.load(whole, "cpu"), vaelab.load(half, "cpu")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name  # resume is bit-exact with tied tensors too
    enc = b.encoder
    assert enc[3].weight is enc[5].weight  # loaded back tied
    assert enc[6].mask.data_ptr() == enc[8].mask.data_ptr()
    with safe_open(str(half / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
        info = json.loads(f.metadata()["vaelab"])
    assert "encoder.5.weight" not in stored and info["aliases"]["encoder.5.weight"] == "encoder.3.weight"
    assert info["aliases"]["encoder.8.mask"] == "encoder.6.mask"
    assert len(stored) == len(a.state_dict()) - 2


def test_a_damaged_alias_table_is_named(tmp_path, data_dir):
    from test_user_errors import _rewrite_safetensors

    run = vaelab.train(_config(data_dir, 1), tmp_path / "run", progress=False, log=lambda m: None)

    def damage(tensors, meta):
        info = json.loads(meta["vaelab"])
        info["aliases"]["encoder.5.weight"] = "no.such.tensor"
        return tensors, {"vaelab": json.dumps(info)}

    _rewrite_safetensors(run / "model.safetensors", damage)
    with pytest.raises(VaelabError, match="shared-tensor table"):
        vaelab.load(run, "cpu")


# -- the KL: auto picks the closed form where the pair has one ----------------------------------


def test_kl_auto_is_the_closed_form_where_there_is_one_and_recorded():
    def kl(**model):
        return vaelab.build_config(overrides={"model": model}).train.kl

    assert kl() == "analytic"  # Gaussian posterior, standard normal prior
    assert kl(latent="categorical") == "analytic"
    assert kl(prior="vampprior") == "mc"  # a learned mixture: no closed form
    assert kl(latent="gaussian-2layer") == "mc"
    explicit = vaelab.build_config(overrides={"train": {"kl": "mc"}})
    assert explicit.train.kl == "mc"  # asked for, kept


# -- an objective's or a latent's mistake is named on the first step ----------------------------

FRAGILE = '''
import torch
import vaelab
from vaelab.latents import GaussianPosterior
from vaelab.objectives import elbo_terms


@vaelab.register_objective("no-neg-elbo")
def no_neg_elbo(model, x, ctx):
    t = elbo_terms(model, x)
    return t["rec"].mean() + t["kl"].mean(), {"rec": t["rec"], "kl": t["kl"]}


@vaelab.register_objective("batch-mean-terms")
def batch_mean_terms(model, x, ctx):
    t = elbo_terms(model, x)
    return t["neg_elbo"].mean(), {k: v.mean() for k, v in t.items()}


@vaelab.register_objective("detached")
def detached(model, x, ctx):
    t = elbo_terms(model, x)
    return t["neg_elbo"].mean().detach(), t


@vaelab.register_objective("crashes-at-step-3")
def crashes(model, x, ctx):
    if ctx.step == 2:
        raise RuntimeError("a bug in the plugin")
    t = elbo_terms(model, x)
    return t["neg_elbo"].mean(), t


@vaelab.register_latent("frozen-gaussian")
class Frozen(GaussianPosterior):
    """z that carries no gradient back to the encoder, and a constant log-ratio: as a codebook
    whose nearest code is taken without a straight-through gradient (log q - log p = log K)."""

    def rsample(self, params, n):
        return super().rsample(params, n).detach()

    def rsample_with_log_ratio(self, params, n, prior):
        z = self.rsample(params, n)
        return z, torch.zeros(z.shape[:-1])
'''


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "fragile_parts.py"
    path.write_text(FRAGILE)
    return path


@pytest.mark.parametrize(
    "train, model, fragment",
    [
        ({"objective": "no-neg-elbo"}, {}, "returned terms ['kl', 'rec']; they must include neg_elbo"),
        ({"objective": "batch-mean-terms"}, {}, "returned term 'neg_elbo' of shape (); terms are per example: (1000,)"),
        ({"objective": "detached"}, {}, "returned a loss with no gradient"),
        ({"kl": "mc"}, {"latent": "frozen-gaussian"}, "the encoder receives no gradient from --objective elbo"),
    ],
    ids=["no neg_elbo", "not per example", "detached", "no path to the encoder"],
)
def test_a_broken_contract_is_named_on_the_first_step(fragile, tmp_path, data_dir, train, model, fragment):
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "mnist", "data_dir": data_dir},
            "model": {"hidden": [16], "latent_dim": 2, **model},
            "train": {"epochs": 1, "batch_size": 1000, "device": "cpu", **train},
        },
        plugins=[str(fragile)],
    )
    steps = []
    with pytest.raises(VaelabError) as e:
        vaelab.train(cfg, tmp_path / "run", progress=False, log=lambda m: None, on_epoch=[steps.append])
    assert fragment in str(e.value), str(e.value)
    assert "fragile_parts.py" in str(e.value) or model  # a plugin's objective is named with its file
    assert not steps and not (tmp_path / "run").exists()  # on the first step: no epoch spent, nothing left


def test_a_crash_in_a_plugin_names_the_plugin_and_keeps_the_run(fragile, tmp_path, data_dir, capsys, monkeypatch):
    from test_user_errors import run_cli

    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    args = ["--plugin", fragile, "--dataset", "mnist", "--hidden", "16", "--latent-dim", "2", "--batch-size", "1000"]
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", *args, "--epochs", "1", "--out", run, "--no-progress"])
    assert code == 0, err
    before = (run / "model.safetensors").read_bytes()
    code, _, err = run_cli(
        capsys, ["train", "--resume", run, "--epochs", "2", "--no-progress"]
    )  # resumes with the same objective (elbo): fine
    assert code == 0, err
    run2 = tmp_path / "run2"
    code, _, err = run_cli(
        capsys, ["train", *args, "--objective", "crashes-at-step-3", "--epochs", "1", "--out", run2, "--no-progress"]
    )
    assert code == 1
    assert "RuntimeError: a bug in the plugin" in err  # the traceback is kept
    last = err.strip().splitlines()[-1]
    assert f"error in plugin {fragile}" in last and "not in vaelab" in last and "bug in vaelab" not in err
    assert (run / "model.safetensors").read_bytes() != before  # the resumed run trained on


# -- options a part declares for itself -------------------------------------------------------

OPTION_PLUGIN = """
import vaelab
from vaelab.objectives import elbo_terms


@vaelab.register_objective(
    "weighted-kl", options={"alpha": vaelab.Option(float, 1.0, "the KL's weight", ge=0, resumable=True)}
)
def weighted_kl(model, x, ctx):
    t = elbo_terms(model, x)
    return (t["rec"] + ctx.options["alpha"] * t["kl"]).mean(), t
"""


@pytest.fixture(scope="module")
def option_plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("options") / "option_parts.py"
    path.write_text(OPTION_PLUGIN)
    return path


@pytest.mark.parametrize(
    "model, options, fragment",
    [
        (
            {},
            {"typo_key": 5},
            "unknown option 'typo_key' (--option, or model.options); the parts of this run take: none",
        ),
        ({}, {"conditional": True}, "unknown option 'conditional'"),
        ({"prior": "vampprior"}, {"componets": 50}, "the parts of this run take: components (--prior vampprior)"),
        ({"prior": "vampprior"}, {"components": 0}, "option components of --prior vampprior must be at least 1"),
        ({"prior": "mog"}, {"components": "many"}, "must be a whole number, got 'many'"),
        ({"latent": "gaussian-2layer"}, {"layer_hidden": [100, 0]}, "layer_hidden of --latent gaussian-2layer"),
    ],
)
def test_options_are_checked_against_the_parts_that_declare_them(model, options, fragment):
    with pytest.raises(VaelabError) as e:
        vaelab.build_config(overrides={"model": {**model, "options": options}})
    assert fragment in str(e.value), str(e.value)


def test_options_defaults_are_recorded_and_objective_options_reach_the_objective(option_plugin, tmp_path, data_dir):
    assert vaelab.build_config(overrides={"model": {"prior": "vampprior"}}).model.options == {"components": 500}

    def train_kl(options):
        cfg = vaelab.build_config(
            overrides={
                "data": {"dataset": "mnist", "data_dir": data_dir},
                "model": {"hidden": [16], "latent_dim": 2, "options": options},  # where --option puts it
                "train": {"objective": "weighted-kl", "epochs": 1, "batch_size": 2000, "device": "cpu"},
            },
            plugins=[str(option_plugin)],
        )
        assert cfg.model.options == {} and set(cfg.train.options) == {"alpha"}  # moved to its owner
        run = vaelab.train(cfg, tmp_path / str(options), progress=False, log=lambda m: None)
        saved = json.loads((run / "config.json").read_text())["train"]["options"]
        return saved, json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["train_kl"]

    (free, kl_free), (default, kl_default) = train_kl({"alpha": 0}), train_kl({})
    assert free == {"alpha": 0.0} and default == {"alpha": 1.0}  # typed, and the default recorded
    assert kl_free > 1.5 * kl_default  # alpha = 0 leaves the KL unpenalised: the objective read it


def test_a_resume_may_change_only_what_the_part_says_is_safe(option_plugin, tmp_path, data_dir, capsys, monkeypatch):
    from test_user_errors import assert_one_line, run_cli

    monkeypatch.setenv("VAELAB_DATA_DIR", data_dir)
    common = ["--hidden", "16", "--latent-dim", "2", "--batch-size", "2000", "--no-progress"]
    run = tmp_path / "run"
    args = ["--plugin", option_plugin, "--objective", "weighted-kl", "--option", "alpha=0.5", *common]
    code, _, err = run_cli(capsys, ["train", *args, "--epochs", "1", "--out", run])
    assert code == 0, err
    code, _, err = run_cli(
        capsys, ["train", "--resume", run, "--epochs", "2", "--option", "alpha=0.8", "--no-progress"]
    )
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["train"]["options"] == {"alpha": 0.8}
    vamp = tmp_path / "vamp"
    code, _, err = run_cli(
        capsys, ["train", "--prior", "vampprior", "--option", "components=3", *common, "--epochs", "1", "--out", vamp]
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, ["train", "--resume", vamp, "--epochs", "2", "--option", "components=4"])
    assert_one_line(code, err, "cannot resume")
    assert "model.options.components" in err


def test_plugins_and_help_list_a_plugins_parts_and_options(option_plugin, capsys, monkeypatch):
    from test_user_errors import run_cli

    monkeypatch.setenv("COLUMNS", "1000")  # help on long lines: a name is never wrapped at its hyphen

    code, out, _ = run_cli(capsys, ["plugins", "--plugin", option_plugin])
    assert code == 0
    assert f"weighted-kl  (plugin {option_plugin})" in out
    assert "--option alpha=VALUE  float, default 1.0; the KL's weight; may change on --resume" in out
    assert "--option components=VALUE  int, default 500" in out
    with pytest.raises(SystemExit):
        from vaelab.cli import main

        main(["train", "--plugin", str(option_plugin), "--help"])
    out = capsys.readouterr().out
    assert "weighted-kl" in out and "alpha (--objective weighted-kl)" in out


# -- what a posterior family is: stochastic, a flow, or a deterministic code -------------------

KINDS = '''
import torch
from torch import nn
import vaelab
from vaelab.latents import GaussianPosterior
from vaelab.parts import DeterministicPosterior, FlowPosterior


@vaelab.register_latent("test-planar")
class Planar(FlowPosterior):
    """One planar step (Rezende & Mohamed 2015) after a diagonal Gaussian: f(z) = z + u tanh(w.z + b),
    with u kept invertible (w.u >= -1)."""

    def __init__(self, cfg):
        super().__init__()
        self.dim, self.n_params = cfg.latent_dim, 2 * cfg.latent_dim
        self.u = nn.Parameter(torch.randn(self.dim) * 0.5)
        self.w = nn.Parameter(torch.randn(self.dim) * 0.5)
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self):
        wu = self.w @ self.u
        return self.u + (nn.functional.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w)

    def step(self, z):
        u, a = self.u_hat(), z @ self.w + self.b
        log_det = torch.log((1 + (1 - torch.tanh(a) ** 2) * (self.w @ u)).abs())
        return z + u * torch.tanh(a)[..., None], log_det

    def sample_with_log_q(self, params, n):
        mu, logvar = params.chunk(2, -1)
        z0 = mu + torch.exp(0.5 * logvar) * torch.randn(n, *mu.shape)
        log_q0 = -0.5 * (((z0 - mu) ** 2) * torch.exp(-logvar) + logvar + 1.8378770664093453).sum(-1)
        z, log_det = self.step(z0)
        return z, log_q0 - log_det


@vaelab.register_latent("test-code")
class Code(DeterministicPosterior):
    """z = the encoder's output itself: an autoencoder's code, a point mass."""

    def __init__(self, cfg):
        super().__init__()
        self.dim = self.n_params = cfg.latent_dim

    def code(self, params):
        return params
'''


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    path = tmp_path_factory.mktemp("kinds") / "kind_parts.py"
    path.write_text(KINDS)
    vaelab.plugins.load([str(path)])
    return path


def test_a_flow_posterior_is_one_module_with_a_correct_bound(kinds, tmp_path, data_dir):
    from vaelab.registry import POSTERIORS

    flow = POSTERIORS["test-planar"](ModelCfg(3))
    for _ in range(5):  # the log-determinant against autograd's Jacobian, at random points
        z = torch.randn(3)
        jac = torch.autograd.functional.jacobian(lambda v: flow.step(v)[0], z)
        assert torch.allclose(flow.step(z)[1], torch.linalg.slogdet(jac)[1], atol=1e-5)
    with pytest.raises(VaelabError, match="is a flow: log q"):
        flow.log_prob(torch.zeros(1, 3), torch.zeros(1, 6))
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "mnist", "data_dir": data_dir},
            "model": {"latent": "test-planar", "latent_dim": 3, "hidden": [32]},
            "train": {"epochs": 1, "batch_size": 500, "device": "cpu"},
        },
        plugins=[str(kinds)],
    )
    assert cfg.train.kl == "mc"  # --kl auto: a flow has no closed-form KL
    run = vaelab.train(cfg, tmp_path / "flow", progress=False, log=lambda m: None)
    result = vaelab.evaluate(run, iw_samples=50, device="cpu", data_dir=data_dir)
    assert result["nll"] < result["neg_elbo"] and result["active_units"] <= 3
    assert vaelab.reconstruct(run, n=4, device="cpu", data_dir=data_dir)[1].shape == (4, 1, 28, 28)


def test_a_deterministic_code_reports_its_bound_and_no_importance_sampled_nll(kinds, tmp_path, data_dir):
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "mnist", "data_dir": data_dir},
            "model": {"latent": "test-code", "latent_dim": 3, "hidden": [32]},
            "train": {"epochs": 1, "batch_size": 500, "device": "cpu"},
        },
        plugins=[str(kinds)],
    )
    run = vaelab.train(cfg, tmp_path / "code", progress=False, log=lambda m: None)
    result = vaelab.evaluate(run, device="cpu", data_dir=data_dir)
    assert "active_units" not in result and "nll" not in result  # neither means anything for a code
    with pytest.raises(VaelabError, match="deterministic .* importance sampling would only repeat its bound"):
        vaelab.evaluate(run, iw_samples=10, device="cpu", data_dir=data_dir)


def test_active_units_are_not_counted_for_one_hot_codes(tmp_path, data_dir):
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "binarized_mnist", "data_dir": data_dir},
            "model": {"latent": "categorical", "categorical_dims": [4, 3], "hidden": [32]},
            "train": {"epochs": 1, "batch_size": 1000, "device": "cpu"},
        }
    )
    run = vaelab.train(cfg, tmp_path / "cat", progress=False, log=lambda m: None)
    assert "active_units" not in vaelab.evaluate(run, device="cpu", data_dir=data_dir)


class ModelCfg:
    def __init__(self, latent_dim):
        self.latent_dim = latent_dim

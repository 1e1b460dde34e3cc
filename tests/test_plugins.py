"""Users' own parts, without editing vaelab: a plugin written here registers a network, a latent
family with its own prior, and an objective; it trains through the API and the CLI, is evaluated
with importance sampling, plotted and resumed; the examples/ run as their docstrings say."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaelab
from test_cli import assert_user_error
from test_cli import vaelab as vaelab_cli
from vaelab.errors import VaelabError

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
import math

import torch
from torch import distributions as D
from torch import nn

import vaelab
from vaelab.latents import GaussianPosterior
from vaelab.objectives import elbo_terms
from vaelab.parts import NetworkFamily, Prior


@vaelab.register_network("tiny")
class Tiny(NetworkFamily):
    @staticmethod
    def encoder(cfg, input_shape, n_out):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 24), nn.Softplus(), nn.Linear(24, n_out))

    @staticmethod
    def decoder(cfg, n_in, output_shape, n_params):
        return nn.Sequential(nn.Linear(n_in, 24), nn.Softplus(), nn.Linear(24, n_params * math.prod(output_shape)))


@vaelab.register_prior("wide-normal")
class WideNormal(Prior):
    """N(0, 2^2 I): a prior apart from the family, with no closed-form KL declared."""

    def __init__(self, cfg, posterior):
        super().__init__()
        self.dim, self.scale = posterior.dim, 2.0

    def log_prob(self, z):
        return D.Normal(0.0, self.scale).log_prob(z).sum(-1)

    def sample(self, n, device=None, generator=None):
        return self.scale * torch.randn(n, self.dim, device=device, generator=generator)


@vaelab.register_latent("wide-gaussian")
class WideGaussian(GaussianPosterior):
    default_prior = "wide-normal"


@vaelab.register_objective("half-kl")
def half_kl(model, x, ctx):
    """rec + KL / 2 with the Monte-Carlo KL; it counts its calls through the context."""
    assert ctx.n_train > 0 and ctx.steps_per_epoch > 0
    terms = elbo_terms(model, x, 1, "mc")
    return (terms["rec"] + 0.5 * terms["kl"]).mean(), terms
'''

SMALL = [
    "--dataset",
    "frey_face",
    "--likelihood",
    "gaussian",
    "--latent-dim",
    "3",
    "--batch-size",
    "200",
    "--no-progress",
]


@pytest.fixture
def plugin(tmp_path) -> Path:
    path = tmp_path / "my_parts.py"
    path.write_text(PLUGIN)
    return path


def test_a_plugin_trains_through_the_api(plugin, tmp_path, data_dir):
    over = {
        "data": {"dataset": "frey_face", "data_dir": data_dir},
        "model": {"network": "tiny", "latent": "wide-gaussian", "latent_dim": 3, "likelihood": "gaussian"},
        "train": {"objective": "half-kl", "kl": "mc", "epochs": 2, "batch_size": 200, "device": "cpu"},
    }
    cfg = vaelab.build_config(overrides=over, plugins=[str(plugin)])
    assert cfg.plugins == [str(plugin)]
    run = vaelab.train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    model = vaelab.load(run, device="cpu")
    assert type(model.prior).__name__ == "WideNormal" and type(model.encoder[1]).__name__ == "Linear"
    assert not model.has_analytic_kl
    result = vaelab.evaluate(run, "test", iw_samples=200, device="cpu", data_dir=data_dir)
    assert result["nll"] < result["neg_elbo"]  # L_200 is tighter than the ELBO
    # the log-weights use the plugin's prior: log p(z) of N(0, 4 I)
    x = torch.rand(5, 1, 28, 20)
    lw = model.log_weights(x, 4)
    expected = torch.distributions.Normal(0.0, 2.0).log_prob(lw.z).sum(-1)
    torch.testing.assert_close(lw.log_ratio, model.latent.log_prob(lw.z, lw.params) - expected)
    # an analytic KL that does not exist is one clear error
    over["train"]["kl"], over["train"]["objective"] = "analytic", "elbo"
    with pytest.raises(VaelabError, match="no closed form"):
        vaelab.train(vaelab.build_config(overrides=over, plugins=[str(plugin)]), tmp_path / "r2", progress=False)
    assert not (tmp_path / "r2").exists()


def test_a_plugin_run_through_the_command_line(plugin, tmp_path, data_dir):
    run = tmp_path / "cli-run"
    args = [
        "--plugin",
        plugin,
        "--model",
        "tiny",
        "--latent",
        "wide-gaussian",
        "--objective",
        "half-kl",
        "--kl",
        "mc",
        *SMALL,
    ]
    proc = vaelab_cli("train", *args, "--epochs", "1", "--out", run, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((run / "config.json").read_text())
    assert saved["plugins"] == [str(plugin)] and saved["model"]["network"] == "tiny"
    ev = vaelab_cli("evaluate", run, "--iw-samples", "100", "--json", data_dir=data_dir)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert math.isfinite(result["nll"]) and result["nll"] < result["neg_elbo"]
    assert vaelab_cli("plot", run, data_dir=data_dir).returncode == 0
    assert (run / "manifold.png").is_file() and (run / "latents.png").is_file()
    resumed = vaelab_cli("train", "--resume", run, "--epochs", "2", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    plugin.unlink()  # the plugin has gone: every command on the run says so in one line
    for command in (["evaluate", run], ["plot", run], ["train", "--resume", run, "--epochs", "3"]):
        assert_user_error(vaelab_cli(*command, data_dir=data_dir), "plugin", str(plugin), "not found")


def test_a_broken_plugin_is_one_line_naming_it(tmp_path, data_dir):
    broken, twice, wrong_kind = (tmp_path / f"{name}.py" for name in ("broken", "twice", "wrong_kind"))
    broken.write_text("import vaelab\n\nx = 1 / 0\n")
    twice.write_text(
        "import vaelab\nfrom vaelab.networks import MLP\n\n"
        "@vaelab.register_network('mlp')\nclass Mine(MLP):\n    pass\n"
    )
    wrong_kind.write_text("import torch\nimport vaelab\n\nvaelab.register_activation('t')(torch.tanh)\n")
    for plugin, fragments in (
        (broken, [f"plugin {broken} failed while importing at {broken}:3", "ZeroDivisionError"]),
        (twice, ["registered twice"]),
        (wrong_kind, [f"at {wrong_kind}:4", "activation 't' must be a subclass of torch.nn"]),
    ):
        proc = vaelab_cli("train", "--plugin", plugin, *SMALL, "--out", tmp_path / "r", data_dir=data_dir)
        assert_user_error(proc, *fragments)
    # the wrong kind through the API too, in a fresh process where nothing has imported vaelab's parts yet
    api = f"import vaelab\nvaelab.build_config(plugins=[{str(wrong_kind)!r}])"
    proc = subprocess.run([sys.executable, "-c", api], capture_output=True, text=True, timeout=300)
    assert "VaelabError" in proc.stderr and "must be a subclass of torch.nn" in proc.stderr, proc.stderr
    assert_user_error(
        vaelab_cli("train", "--plugin", "no_such_module_xyz", *SMALL, "--out", tmp_path / "r"), "no_such_module_xyz"
    )
    assert not (tmp_path / "r").exists()


def test_an_optimizer_of_your_own_trains_and_resumes(tmp_path, data_dir):
    """examples/warmup_adagrad.py: its first 11 steps only accumulate squared gradients. Epoch 1
    (8 steps of 200 of Frey Face's 1565 training frames) leaves every weight as initialised, the
    resumed epoch 2 passes the warm-up and moves them: the run used the plugin's optimizer, and
    resume restored its step count."""
    from vaelab.checkpoint import load_config
    from vaelab.model import VAE

    plugin = REPO / "examples" / "warmup_adagrad.py"
    run = tmp_path / "run"
    args = ["--plugin", plugin, "--optimizer", "adagrad-warmup", "--lr", "0.01", *SMALL]
    proc = vaelab_cli("train", *args, "--epochs", "1", "--out", run, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(run)
    assert cfg.train.optimizer == "adagrad-warmup" and json.loads((run / "metrics.jsonl").read_text())["step"] == 8
    torch.manual_seed(cfg.train.seed)
    initial = VAE(cfg.model).state_dict()

    def weights():
        return vaelab.load(run, device="cpu").state_dict()

    assert all(torch.equal(w, initial[k]) for k, w in weights().items())
    proc = vaelab_cli("train", "--resume", run, "--epochs", "2", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert all(not torch.equal(w, initial[k]) for k, w in weights().items())


INIT_AND_ACTIVATION = """
from torch import nn

import vaelab


@vaelab.register_activation("square")
class Square(nn.Module):
    def forward(self, x):
        return x * x


@vaelab.register_init("constant")
def constant(net):
    for p in net.parameters():
        nn.init.constant_(p, 0.01)
"""


def test_an_initialisation_and_an_activation_of_your_own(tmp_path, data_dir):
    """register_init and register_activation: their names are settings like any other, and the
    model is built with both. With every weight and bias 0.01 and h -> h^2 between the layers, an
    encoder 560-7-6 maps a white Frey Face frame to 0.01 * 7 * (0.01 * 560 + 0.01)^2 + 0.01 in
    every output; the run trains and resumes through the command line."""
    from vaelab.model import VAE

    plugin = tmp_path / "init_activation.py"
    plugin.write_text(INIT_AND_ACTIVATION)
    model_over = {"latent_dim": 3, "likelihood": "gaussian", "hidden": [7], "activation": "square", "init": "constant"}
    cfg = vaelab.build_config(
        overrides={"data": {"dataset": "frey_face", "data_dir": data_dir}, "model": model_over},
        plugins=[str(plugin)],
    )
    cfg.model.input_shape = [1, 28, 20]
    out = VAE(cfg.model).encoder(torch.ones(2, 1, 28, 20))
    assert out.shape == (2, 6)
    torch.testing.assert_close(out, torch.full_like(out, 0.01 * 7 * (0.01 * 560 + 0.01) ** 2 + 0.01))

    run = tmp_path / "run"
    args = ["--plugin", plugin, "--activation", "square", "--init", "constant", "--hidden", "7"]
    proc = vaelab_cli("train", *args, *SMALL, "--epochs", "1", "--out", run, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    proc = vaelab_cli("train", "--resume", run, "--epochs", "2", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((run / "config.json").read_text())["model"]
    assert (saved["activation"], saved["init"]) == ("square", "constant")


SCHEDULES = """
import math

import vaelab


@vaelab.register_lr_schedule("halve", describe=lambda epoch: f"halved {epoch} times")
def halve(base_lr, epoch):
    return base_lr / 2**epoch


@vaelab.register_lr_schedule("nan")
def nan(base_lr, epoch):
    return math.nan
"""


def test_a_learning_rate_schedule_of_your_own(tmp_path, data_dir):
    """register_lr_schedule: each epoch's rate is the plugin's function of the epoch, after a
    resume too, with its note in the log; a schedule that gives no usable rate is one line."""
    plugin = tmp_path / "schedules.py"
    plugin.write_text(SCHEDULES)
    run = tmp_path / "run"
    args = ["--plugin", plugin, "--lr", "0.008", *SMALL]
    proc = vaelab_cli("train", *args, "--lr-schedule", "halve", "--epochs", "2", "--out", run, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "halved 1 times" in proc.stderr
    proc = vaelab_cli("train", "--resume", run, "--epochs", "3", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs == [0.008, 0.004, 0.002]
    proc = vaelab_cli("train", *args, "--lr-schedule", "nan", "--out", tmp_path / "nan", data_dir=data_dir)
    assert_user_error(proc, "learning-rate schedule 'nan' gave nan for epoch 0")
    assert not (tmp_path / "nan").exists()


def test_a_score_function_baseline_of_your_own(data_dir):
    """examples/leave_one_out_baseline.py through the plugin loader: its b is each draw's mean of
    the other draws, the estimator with it stays unbiased against the exact gradient and is less
    noisy than without it; a baseline that returns the wrong shape is one line naming it."""
    from test_categorical import Toy, exact_gradient
    from vaelab.objectives import score_function_terms
    from vaelab.parts import Baseline
    from vaelab.plugins import load
    from vaelab.registry import BASELINES

    load([str(REPO / "examples" / "leave_one_out_baseline.py")])
    loo = BASELINES["leave-one-out"]((1,))
    b, scale, loss = loo(None, torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    assert torch.equal(b, torch.tensor([[4.0, 5.0], [3.0, 4.0], [2.0, 3.0]]))
    assert scale.item() == 1.0 and loss.item() == 0.0

    class Offset(Toy):
        """The toy's log p(x|z) + 100: the same gradient, and a learning signal far from zero,
        as a VAE's (hundreds of nats), which plain REINFORCE multiplies into its noise."""

        def log_px_given_z(self, x, z):
            return super().log_px_given_z(x, z) + 100.0

    def gradients(baseline, m, seed):  # one row per example, each the mean over its draws
        torch.manual_seed(seed)
        toy = Offset(m)
        score_function_terms(toy, None, draws, "analytic", baseline=baseline)[0].sum().backward()
        return toy.params.grad.double()

    m, draws = 50_000, 4
    exact = exact_gradient(kl=True)
    plain, with_loo = gradients(None, m, seed=0), gradients(loo, m, seed=1)
    for g in (plain, with_loo):
        stderr = g.std(0) / math.sqrt(m)
        assert ((g.mean(0) - exact).abs() < 4 * stderr).all(), (g.mean(0), exact, stderr)
    assert with_loo.var(0).sum() < 0.001 * plain.var(0).sum(), (with_loo.var(0), plain.var(0))

    @vaelab.register_baseline("per-pixel-by-mistake")
    class Wrong(Baseline):
        def __init__(self, input_shape):
            super().__init__()

        def forward(self, x, signal):
            return signal.new_zeros(signal.shape[-1], 1), signal.new_ones(()), signal.new_zeros(())

    with pytest.raises(VaelabError, match=r"baseline 'per-pixel-by-mistake' returned b of shape \(6, 1\) for"):
        score_function_terms(Toy(6), None, draws, "analytic", baseline=Wrong((1,)))
    with pytest.raises(TypeError, match="must be a subclass of vaelab.parts.Baseline"):
        vaelab.register_baseline("not-a-baseline")(torch.nn.Identity)


def test_a_data_set_of_your_own_splits_frey_face_as_kingmas_code(data_dir):
    """examples/frey_split_1600.py: 1600 training frames and 365 held out, together every one
    of the 1965 frames once; the 365 hold vaelab's own 200 test frames, and frey_face_1600b holds
    out 365 others (the first of vaelab's order)."""
    from vaelab.data import load_split
    from vaelab.plugins import load

    load([str(REPO / "examples" / "frey_split_1600.py")])
    train = load_split("frey_face_1600", "train", data_dir, full_train=True).images
    test = load_split("frey_face_1600", "test", data_dir).images
    short, valid = (load_split("frey_face_1600", s, data_dir).images for s in ("train", "valid"))
    assert (len(train), len(test), len(short), len(valid)) == (1600, 365, 1400, 200)
    assert torch.equal(torch.cat([short, valid]), train)
    everything = torch.cat([load_split("frey_face", s, data_dir, full_train=True).images for s in ("train", "test")])
    assert torch.equal(torch.cat([train, test]), everything)
    assert torch.equal(test[-200:], load_split("frey_face", "test", data_dir).images)
    other_train = load_split("frey_face_1600b", "train", data_dir, full_train=True).images
    other_test = load_split("frey_face_1600b", "test", data_dir).images
    assert torch.equal(other_test, everything[:365]) and torch.equal(other_train, everything[365:])


def test_kingmas_frey_decoder_is_a_normalised_mixture_with_one_scale_per_pixel():
    """examples/kingma_frey_decoder.py: each pixel's density w + (1 - w) N(x; m, var) integrates
    to 1 over the line, is the Gaussian's as w -> 0 and w + (1 - w) N at w = 1/2; the decoder's
    log-variance and mixture logit are the same for every z."""
    from vaelab.config import ModelConfig
    from vaelab.plugins import load
    from vaelab.registry import LIKELIHOODS, NETWORKS

    load([str(REPO / "examples" / "kingma_frey_decoder.py")])
    lik = LIKELIHOODS["gaussian-uniform"]()
    x = torch.linspace(-12.0, 13.0, 250001, dtype=torch.float64).unsqueeze(1)  # (N, 1): one pixel
    params = torch.tensor([[0.4, math.log(0.3**2), -0.7]], dtype=torch.float64)  # mean 0.6, sd 0.3, w 0.33
    density = lik.log_prob(x, params.expand(len(x), 3)).exp()
    assert torch.trapezoid(density, x[:, 0]).item() == pytest.approx(1.0, abs=1e-4)  # steps of 1e-4 at 0 and 1
    w = 1 / (1 + math.exp(0.7))
    at = torch.tensor([[0.25]], dtype=torch.float64)
    normal = math.exp(-0.5 * ((0.25 - 1 / (1 + math.exp(-0.4))) / 0.3) ** 2) / (0.3 * math.sqrt(2 * math.pi))
    assert lik.log_prob(at, params).item() == pytest.approx(math.log(w + (1 - w) * normal), rel=1e-12)
    gauss_only = torch.tensor([[0.4, math.log(0.3**2), -60.0]], dtype=torch.float64)
    assert lik.log_prob(at, gauss_only).item() == pytest.approx(math.log(normal), rel=1e-12)

    cfg = ModelConfig(hidden=[16], latent_dim=2, activation="tanh")
    decoder = NETWORKS["mlp-pixel-scale"].decoder(cfg, 2, (1, 4, 5), 3)
    with torch.no_grad():
        decoder.free.normal_()
        out = decoder(torch.randn(7, 2))
    assert out.shape == (7, 60)
    assert not torch.allclose(out[0, :20], out[1, :20])  # the means depend on z
    assert torch.equal(out[:, 20:], decoder.free.expand(7, 40))  # the scales and weights do not


def test_kingmas_2013_encoder_damps_its_log_variance_and_starts_it_at_zero():
    """examples/kingma_2013_encoder.py: under the AEVB preset's N(0, 0.01) initialisation the
    encoder's log-variance weights stay 0 (q(z|x) starts with unit variances for every x), and
    log sigma^2 = 0.1 W h + b."""
    from vaelab.model import VAE
    from vaelab.plugins import load

    load([str(REPO / "examples" / "kingma_2013_encoder.py")])
    cfg = vaelab.build_config("aevb-frey", overrides={"model": {"network": "mlp-damped-logvar", "latent_dim": 3}})
    model = VAE(cfg.model)
    enc = model.encoder
    assert torch.count_nonzero(enc.logvar_weight) == 0 and torch.count_nonzero(enc.logvar_bias) == 0
    assert enc.mean.weight.std().item() == pytest.approx(0.01, rel=0.05)  # --init normal reached the rest
    x = torch.rand(5, *model.input_shape)
    assert torch.equal(enc(x)[:, 3:], torch.zeros(5, 3))
    with torch.no_grad():
        enc.logvar_weight.fill_(1.0)
        enc.logvar_bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
        h = enc.hidden(x.flatten(1))
        expected = 0.1 * h.sum(-1, keepdim=True) + torch.tensor([1.0, 2.0, 3.0])
        torch.testing.assert_close(enc(x)[:, 3:], expected)


def test_dlvm_init_zeroes_the_encoder_log_variance_and_the_decoder_output_biases():
    """examples/dlvm_init.py: the initialisation of anglepy's DLVM (April 2014). q(z|x) starts
    as N(mu, I) for every x: the encoder's log-variance rows are 0 and its output is exactly 0
    there; the decoder's output biases are 0; every other weight and bias is N(0, 0.01^2)."""
    from vaelab.model import VAE
    from vaelab.plugins import load

    load([str(REPO / "examples" / "dlvm_init.py")])
    torch.manual_seed(0)
    cfg = vaelab.build_config("aevb-frey", overrides={"model": {"init": "normal-dlvm", "latent_dim": 3}})
    model = VAE(cfg.model)
    enc_out = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    dec_lin = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert torch.count_nonzero(enc_out.weight[3:]) == 0 and torch.count_nonzero(enc_out.bias[3:]) == 0
    assert torch.count_nonzero(dec_lin[-1].bias) == 0
    x = torch.rand(5, *model.input_shape)
    assert torch.equal(model.encoder(x)[:, 3:], torch.zeros(5, 3))
    assert enc_out.weight[:3].std().item() == pytest.approx(0.01, rel=0.1)  # the means' rows as --init normal
    assert dec_lin[-1].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert dec_lin[0].bias.std().item() == pytest.approx(0.01, rel=0.2)  # hidden biases are drawn, not zeroed
    conv = vaelab.build_config("aevb-frey", overrides={"model": {"init": "normal-dlvm", "network": "conv"}})
    with pytest.raises(vaelab.VaelabError, match="initialisation of --model mlp, not of ConvEncoder"):
        VAE(conv.model)


def test_adagrad_with_an_initial_sum_steps_as_sgd_until_the_squares_add_up():
    """examples/adagrad_initial_sum.py: each step moves a weight by lr g / sqrt(S + sum g^2), so
    with S = 10^4 a gradient of 1 moves it by lr / sqrt(10^4 + 1) (plain Adagrad: the whole lr), and
    after 10^4 such steps by lr / sqrt(2 10^4 + 1)."""
    from vaelab.config import TrainConfig
    from vaelab.plugins import load
    from vaelab.registry import OPTIMIZERS

    load([str(REPO / "examples" / "adagrad_initial_sum.py")])
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))  # the weights' sum of 10^4 steps: no float32 rounding
    opt = OPTIMIZERS["adagrad-sum1e4"]([w], TrainConfig(lr=0.01), torch.device("cpu"))
    before = w.detach().clone()
    w.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt.step()
    expected = 0.01 * w.grad / torch.sqrt(1e4 + w.grad**2)
    torch.testing.assert_close(before - w.detach(), expected, rtol=1e-9, atol=0)
    assert (before - w.detach())[0].item() == pytest.approx(0.01 / math.sqrt(1e4 + 1), rel=1e-9)
    for _ in range(9999):
        w.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
    moved = w.detach().clone()
    w.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    step = (moved - w.detach())[0].item()  # its sum: 10^4 + 1 + 9999 + 1
    assert step == pytest.approx(0.01 / math.sqrt(2e4 + 1), rel=1e-9)
    assert sorted(n for n in OPTIMIZERS.names() if n.startswith("adagrad-sum")) == [
        "adagrad-sum1e3",
        "adagrad-sum1e4",
        "adagrad-sum1e5",
    ]


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_run_as_their_docstrings_say(example, tmp_path, data_dir):
    """Each example's `$ ` command, shortened (Frey Face, one epoch) and into a temporary run.
    Its importance-sampled nll is at most its neg_elbo: below it, or within 0.1 nats where one
    epoch from the AEVB initialisation leaves a decoder that barely uses z (the two are then equal
    in expectation, and each is a Monte-Carlo estimate)."""
    lines = [line[2:] for line in example.read_text().splitlines() if line.startswith("$ ")]
    assert lines, f"{example.name} has no `$ ` command line in its docstring"
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["vaelab", "train"]
        out = words.index("--out")
        words[out + 1] = str(tmp_path / "run")
        proc = vaelab_cli(*words[1:], *SMALL, "--epochs", "1", cwd=REPO, data_dir=data_dir)
        assert proc.returncode == 0, proc.stderr
        ev = vaelab_cli("evaluate", tmp_path / "run", "--iw-samples", "50", "--json", data_dir=data_dir)
        assert ev.returncode == 0, ev.stderr
        report = json.loads(ev.stdout)
        assert report["nll"] < report["neg_elbo"] + 0.1


def test_a_new_part_is_one_module():
    """Counted through the code: vaelab's own parts are found only through their registries, so
    a new one needs no edit elsewhere. No module compares a setting with a part's name, and no
    caller asks a part what it can do with hasattr: capabilities are declared attributes."""
    src = REPO / "src" / "vaelab"
    setting = r"(network|latent|prior|likelihood|objective|estimator|optimizer|baseline|lr_schedule|init)"
    pattern = re.compile(rf"""\.{setting}\s*(==|!=|in)\s*([\[(]|["'](?!auto|none))""")
    offenders = [
        f"{p.relative_to(src)}:{i}"
        for p in src.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
    hasattr_calls = [
        f"{p.relative_to(src)}:{i}"
        for p in src.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "hasattr(" in line
    ]
    assert hasattr_calls == []

"""The convolutional encoder/decoder: shapes for any image size, every latent family and
likelihood, FLOP counting, config handling, and a short real training run on MNIST."""

import math

import pytest
import torch
from torch import nn

from vaelab import checkpoint as ckpt
from vaelab.config import ModelConfig, build_config
from vaelab.errors import VaelabError
from vaelab.evaluation import bytes_per_sample
from vaelab.model import VAE
from vaelab.networks import ConvDecoder, ConvEncoder, conv_plan
from vaelab.registry import LIKELIHOODS
from vaelab.registry import POSTERIORS as LATENTS
from vaelab.training import Trainer


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for these tiny models: on a shared 2-core machine under load, two threads
    ran the training test 40x slower (oversubscribed OpenMP), and one is as fast when it is idle."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def conv_model(shape, latent="gaussian", likelihood="bernoulli", channels=(8, 16), hidden=()):
    cfg = ModelConfig(
        network="conv",
        latent=latent,
        likelihood=likelihood,
        latent_dim=6,
        channels=list(channels),
        hidden=list(hidden),
        input_shape=list(shape),
        options={"code_dim": 2} if latent == "vq" else {},  # 6 latents as 3 code vectors
    )
    cfg.validate()
    return VAE(cfg)


@pytest.mark.parametrize("shape, feature", [([1, 28, 28], (7, 7)), ([1, 28, 20], (7, 5)), ([3, 32, 32], (8, 8))])
@pytest.mark.parametrize("latent", sorted(LATENTS))
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_conv_shapes(shape, feature, latent, likelihood):
    torch.manual_seed(0)
    model = conv_model(shape, latent, likelihood, hidden=[32])
    c, h, w = shape
    x = torch.rand(5, c, h, w)
    params = model.encode(x)
    assert params.shape == (5, model.latent.n_params)
    assert model.encoder.feature_shape == (16, *feature) == model.decoder.feature_shape

    z = torch.randn(5, model.latent.dim)
    out = model.decode(z)
    assert out.shape == (5, model.likelihood.n_params * c * h * w)
    # the last transposed convolution lands on exactly (H, W): no crop, no pad
    last, _, last_out = model.layer_shapes("decoder")[-1]
    assert isinstance(last, nn.ConvTranspose2d) and last_out == (1, model.likelihood.n_params * c, h, w)
    assert model.decode_mean(z).shape == (5, c, h, w)
    assert model.sample(3).shape == (3, c, h, w)
    # several samples of z at once, as the objectives pass them
    assert model.decode(torch.randn(4, 5, model.latent.dim)).shape == (4, 5, out.shape[1])

    # the whole objective runs and every weight gets a gradient
    from vaelab.objectives import elbo_terms

    targets = torch.bernoulli(x) if likelihood == "bernoulli" else x
    terms = elbo_terms(model, targets, kl="analytic" if model.has_analytic_kl else "mc")
    assert torch.isfinite(terms["neg_elbo"]).all()
    terms["neg_elbo"].mean().backward()
    # (a VQ codebook learns from its own loss term, --objective vqvae, or by moving averages: the
    # ELBO's straight-through gradient passes it by, by design)
    codebook = getattr(model.latent, "codebook", None)
    trained = [p for p in model.parameters() if p.requires_grad and p is not codebook]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_plan_derives_every_shape_from_the_input():
    assert conv_plan((28, 20), 2) == ([(28, 20), (14, 10), (7, 5)], [(2, 2), (2, 2)])
    # sides are halved while larger than 2, then kept: small or narrow images never vanish
    sizes, strides = conv_plan((5, 1), 4)
    assert sizes == [(5, 1), (3, 1), (2, 1), (2, 1), (2, 1)]
    assert strides == [(2, 1), (2, 1), (1, 1), (1, 1)]
    for shape in [(1, 1, 1), (1, 5, 3), (2, 7, 100), (1, 31, 17)]:
        enc = ConvEncoder(shape, 4, [], "relu", channels=[3, 5, 7])
        dec = ConvDecoder(2, shape, 2, [], "tanh", channels=[3, 5, 7])
        assert enc(torch.rand(2, *shape)).shape == (2, 4)
        assert dec.deconv(torch.zeros(2, *dec.feature_shape)).shape == (2, 2 * shape[0], *shape[1:])


def test_decoder_output_is_channel_blocked():
    """For two parameters per pixel the flat output is [all first parameters, all second], so the
    Gaussian likelihood's chunk(2) gives the (C, H, W) means and then the log-variances."""
    torch.manual_seed(0)
    model = conv_model([3, 6, 4], likelihood="gaussian")
    z = torch.randn(2, model.latent.dim)
    maps = model.decoder.deconv(model.decoder.fc(z).view(-1, *model.decoder.feature_shape))  # (2, 6, 6, 4)
    mean_raw, logvar = model.decode(z).chunk(2, dim=-1)
    torch.testing.assert_close(mean_raw.view(2, 3, 6, 4), maps[:, :3])
    torch.testing.assert_close(logvar.view(2, 3, 6, 4), maps[:, 3:])


def test_flops_count_conv_layers():
    model = conv_model([1, 28, 20], channels=(8, 16), hidden=[32])
    d = model.latent.dim
    macs = (
        14 * 10 * 8 * 1 * 9  # conv 1->8, 3x3, output 14x10
        + 7 * 5 * 16 * 8 * 9  # conv 8->16, output 7x5
        + 16 * 7 * 5 * 32
        + 32 * 2 * d  # linear to hidden, to q's parameters
        + d * 32
        + 32 * 16 * 7 * 5  # decoder linear layers
        + 16 * 7 * 5 * 8 * 9  # transposed conv 16->8: each input scatters 8 x 3x3
        + 8 * 14 * 10 * 1 * 9
    )  # transposed conv 8->1
    assert model.flops_per_example() == 2 * macs
    # the fully connected model keeps its count: 2 x in x out over its linear layers
    mlp = VAE(ModelConfig(hidden=[400], latent_dim=20))
    assert mlp.flops_per_example() == 2 * (784 * 400 + 400 * 40 + 20 * 400 + 400 * 784)
    # the memory estimate of a decoder pass includes the feature maps
    assert bytes_per_sample(model) > 4 * 2 * (8 * 14 * 10 + 16 * 7 * 5)


def test_conv_config():
    cfg = build_config("cnn-mnist")
    assert cfg.model.network == "conv" and cfg.model.channels == [32, 64] and cfg.model.hidden == []
    model = VAE(cfg.model)
    assert model.encoder.feature_shape == (64, 7, 7)
    assert build_config(overrides={"model": {"network": "conv", "channels": "16,32", "hidden": ""}}).model.channels == [
        16,
        32,
    ]
    with pytest.raises(VaelabError, match="--channels"):
        build_config(overrides={"model": {"network": "conv", "channels": [16, 0]}})
    with pytest.raises(VaelabError, match="--channels"):
        build_config(overrides={"model": {"network": "conv", "channels": ""}})
    # an MLP without hidden layers is linear: one layer each way (probabilistic PCA's shape)
    linear = VAE(build_config(overrides={"model": {"network": "mlp", "hidden": ""}}).model)
    layers = [[type(m).__name__ for m in net.net] for net in (linear.encoder, linear.decoder)]
    assert layers == [["Linear"], ["Linear"]]


def test_short_conv_run_on_mnist_learns(tmp_path, data_dir):
    """Two epochs of a tiny conv VAE on the first 10000 MNIST training images (the real trainer;
    the subset only keeps the test fast): the validation neg_elbo falls from the untrained
    model's ~560 nats to below 190, and the saved run loads back to the same numbers."""
    cfg = build_config(
        overrides={
            "data": {"dataset": "mnist", "binarize": "dynamic", "data_dir": data_dir},
            "model": {"network": "conv", "channels": [8, 16], "hidden": [], "latent_dim": 8},
            "train": {"epochs": 2, "batch_size": 100, "lr": 3e-3, "device": "cpu"},
        }
    )
    trainer = Trainer(cfg, tmp_path, progress=False, log=lambda m: None)
    trainer.train_x, trainer.eval_x = trainer.train_x[:10000], trainer.eval_x[:1000]
    from vaelab.evaluation import evaluate_elbo

    untrained = evaluate_elbo(trainer.model, trainer.eval_x)["neg_elbo"]
    history = trainer.fit()
    valid = [r["valid_neg_elbo"] for r in history]
    assert untrained > 500 and valid[0] > valid[1] and valid[1] < 190, (untrained, valid)
    assert all(math.isfinite(r["train_neg_elbo"]) for r in history)
    _, model = ckpt.load_model(tmp_path)
    again = evaluate_elbo(model, trainer.eval_x)["neg_elbo"]
    assert again == pytest.approx(valid[-1], rel=1e-5)

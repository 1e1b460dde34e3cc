"""Training on real MNIST: the loss falls, resume is exact, NaN never overwrites a checkpoint."""

import json

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab import checkpoint as ckpt
from vaelab.config import build_config
from vaelab.training import NonFiniteLoss, Trainer, TrainingInterrupted


def small_config(data_dir, epochs=2, **train):
    return build_config(
        overrides={
            "data": {"dataset": "mnist", "binarize": "dynamic", "data_dir": data_dir},
            "model": {"hidden": [64], "latent_dim": 8},
            "train": {"epochs": epochs, "batch_size": 500, "device": "cpu", **train},
        }
    )


def weights(run):
    return load_file(str(run / ckpt.WEIGHTS))


def test_short_mnist_run_learns(tmp_path, data_dir):
    cfg = small_config(data_dir, epochs=3, lr=3e-3)
    run = vaelab.train(cfg, tmp_path / "run", progress=False)
    history = ckpt.read_metrics(run)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    valid = [r["valid_neg_elbo"] for r in history]
    assert valid[0] > valid[1] > valid[2]
    # an untrained model sits near 784 * log 2 = 543 nats; 300 steps of a small VAE on
    # binarized MNIST reach about 145
    assert valid[-1] < 160
    for r in history:
        assert r["valid_neg_elbo"] == pytest.approx(r["valid_rec"] + r["valid_kl"], rel=1e-6)
        assert r["train_kl"] > 0
    # evaluate on the same split reproduces the logged number (same fixed binarization, same seed)
    result = vaelab.evaluate(run, "valid", device="cpu", data_dir=data_dir)
    assert result["neg_elbo"] == pytest.approx(valid[-1], rel=1e-5)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, data_dir):
    straight = vaelab.train(small_config(data_dir, epochs=2), tmp_path / "straight", progress=False)

    # stopped at an epoch boundary, then resumed with more epochs
    chunked = vaelab.train(small_config(data_dir, epochs=1), tmp_path / "chunked", progress=False)
    vaelab.train(small_config(data_dir, epochs=2), chunked, resume=True, progress=False)

    # stopped in the middle of an epoch (what Ctrl-C does), then resumed
    cfg = small_config(data_dir, epochs=2)
    mid = tmp_path / "mid"
    mid.mkdir()
    trainer = Trainer(cfg, mid, progress=False)

    def interrupt(t):
        if t.step == 130:
            t.stop_requested = True

    trainer.on_step = interrupt
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    assert json.loads((mid / ckpt.CONFIG).read_text())["train"]["epochs"] == 2
    vaelab.train(cfg, mid, resume=True, progress=False)

    a, b, c = weights(straight), weights(chunked), weights(mid)
    for name in a:
        assert torch.equal(a[name], b[name]), name
        assert torch.equal(a[name], c[name]), name
    ha, hc = ckpt.read_metrics(straight), ckpt.read_metrics(mid)
    assert [r["valid_neg_elbo"] for r in ha] == [r["valid_neg_elbo"] for r in hc]
    assert ha[-1]["train_neg_elbo"] == pytest.approx(hc[-1]["train_neg_elbo"], rel=1e-9)


def test_sgd_takes_heavy_ball_momentum_steps():
    from vaelab.registry import OPTIMIZERS

    t = build_config(overrides={"train": {"optimizer": "sgd", "lr": 0.1}}).train
    w = torch.nn.Parameter(torch.tensor(1.0))
    opt = OPTIMIZERS[t.optimizer]([w], t, torch.device("cpu"))
    seen = []
    for _ in range(2):  # loss w^2 / 2: the gradient is w
        opt.zero_grad()
        (w**2 / 2).backward()
        opt.step()
        seen.append(w.item())
    # v1 = 1, w1 = 1 - 0.1 = 0.9; v2 = 0.9 * 1 + 0.9 = 1.8, w2 = 0.9 - 0.18 = 0.72
    assert seen == pytest.approx([0.9, 0.72])


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    run = vaelab.train(small_config(data_dir, epochs=1), tmp_path / "run", progress=False)
    before = {name: (run / name).read_bytes() for name in (ckpt.WEIGHTS, ckpt.RESUME, ckpt.METRICS)}

    trainer = Trainer(small_config(data_dir, epochs=2), run, resume=True, progress=False)

    def poison(t):
        if t.step == 105:
            with torch.no_grad():
                next(t.model.parameters()).fill_(float("nan"))

    trainer.on_step = poison
    with pytest.raises(NonFiniteLoss, match="NaN or infinite"):
        trainer.fit()
    after = {name: (run / name).read_bytes() for name in before}
    assert after == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_changed_settings(tmp_path, data_dir):
    run = vaelab.train(small_config(data_dir, epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(vaelab.VaelabError, match="train.lr"):
        vaelab.train(small_config(data_dir, epochs=2, lr=0.1), run, resume=True, progress=False)


def test_bf16_autocast_keeps_densities_in_float32(tmp_path, data_dir):
    fp32 = ckpt.read_metrics(vaelab.train(small_config(data_dir, epochs=1), tmp_path / "fp32", progress=False))
    bf16 = ckpt.read_metrics(
        vaelab.train(small_config(data_dir, epochs=1, precision="bf16"), tmp_path / "bf16", progress=False)
    )
    # bf16 networks, float32 likelihood and KL: the same learning curve to within a couple of nats
    assert bf16[0]["valid_neg_elbo"] == pytest.approx(fp32[0]["valid_neg_elbo"], abs=3)
    model = vaelab.load(tmp_path / "bf16", device="cpu")
    with torch.autocast("cpu", torch.bfloat16):
        assert model.encode(torch.rand(2, 1, 28, 28)).dtype == torch.float32
        assert model.decode(torch.randn(2, 8)).dtype == torch.float32


def test_fp16_needs_a_gpu(tmp_path, data_dir):
    if torch.cuda.is_available():  # with a gradient scaler, fp16 learns like fp32 on a GPU
        history = ckpt.read_metrics(
            vaelab.train(
                small_config(data_dir, epochs=1, precision="fp16", device="cuda"), tmp_path / "fp16", progress=False
            )
        )
        assert history[0]["valid_neg_elbo"] < 250
        return
    with pytest.raises(vaelab.VaelabError, match="bf16"):
        vaelab.train(small_config(data_dir, epochs=1, precision="fp16"), tmp_path / "fp16", progress=False)


def test_compile_trains_like_eager(tmp_path, data_dir):
    eager = ckpt.read_metrics(vaelab.train(small_config(data_dir, epochs=1), tmp_path / "eager", progress=False))
    logs = []
    (tmp_path / "compiled").mkdir()
    compiled = Trainer(
        small_config(data_dir, epochs=1, compile=True), tmp_path / "compiled", progress=False, log=logs.append
    )
    history = compiled.fit()
    # either it compiled, or it said why not and trained eagerly: both must learn the same
    assert compiled.step_fn.works is True or any("--compile failed" in m for m in logs)
    assert history[0]["valid_neg_elbo"] == pytest.approx(eager[0]["valid_neg_elbo"], abs=3)


def test_cuda_graphs(tmp_path, data_dir):
    cfg = small_config(data_dir, epochs=1, cuda_graphs=True, device="cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():  # recorded once per batch shape, replayed: learns like eager
        history = ckpt.read_metrics(vaelab.train(cfg, tmp_path / "graphs", progress=False))
        assert history[0]["valid_neg_elbo"] < 250
        return
    with pytest.raises(vaelab.VaelabError, match="--cuda-graphs needs one CUDA GPU"):
        vaelab.train(cfg, tmp_path / "graphs", progress=False)
    assert not (tmp_path / "graphs").exists()  # nothing left behind


def test_cuda_graph_step_wrapper_matches_eager_on_cpu():
    """The wrapper's own logic (reduce-overhead mode, a step boundary before each call) on a
    CPU, where inductor compiles without recording graphs: same outputs as the eager module."""
    from vaelab.training import _CompiledOrEager

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    logs = []
    wrapped = _CompiledOrEager(net, logs.append, cuda_graphs=True)
    x = torch.randn(4, 6)
    for _ in range(2):
        out = wrapped(x)
        out.sum().backward()
    assert wrapped.works is True or any("--cuda-graphs failed" in m for m in logs)
    assert torch.allclose(out, net(x), atol=1e-6)

"""Pictures, the report, the explorer's server and TensorBoard scalars, on tiny real runs.

The browser checks of the report and the explorer are in test_report_browser.py.
"""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

import vaelab
from vaelab import api, cli
from vaelab.viz import latent as L
from vaelab.viz import pictures

PNG = b"\x89PNG\r\n\x1a\n"

# the pictures of a run whose prior has no images to show (all of vaelab's but the VampPrior)
SHOWN = [p for p in vaelab.viz.PICTURES if p != "prior"]


def read_png(path):
    img = mpimg.imread(path)
    return img[..., :3] if img.ndim == 3 else img


def assert_picture(path, shape):
    """The file is a PNG of (height, width) pixels with real content (not one flat colour)."""
    assert path.read_bytes()[:8] == PNG
    img = read_png(path)
    assert img.shape[:2] == shape, (path.name, img.shape)
    assert img.std() > 0.05, (path.name, img.std())


# -- the latent points ----------------------------------------------------------------------------


def test_manifold_grid_is_the_prior_inverse_cdf():
    n = 20
    z = L.manifold_grid(n).reshape(n, n, 2)
    u = (np.arange(n) + 0.5) / n
    expected = torch.special.ndtri(torch.tensor(u, dtype=torch.float64)).float()
    for r in range(n):
        torch.testing.assert_close(z[r, :, 0], expected)  # z1 grows to the right ...
        torch.testing.assert_close(z[:, r, 1], expected.flip(0))  # ... z2 grows upwards
    assert u.min() > 0 and u.max() < 1
    torch.testing.assert_close(z[0, 0], torch.tensor([-1.959964, 1.959964]))  # Phi^-1(0.025) = -1.96


def test_manifold_picture_decodes_the_grid_in_one_batch(tiny_run, tmp_path):
    model = vaelab.load(tiny_run, "cpu")
    calls = []
    decode_mean = model.decode_mean
    model.decode_mean = lambda z: calls.append(z.clone()) or decode_mean(z)
    path = pictures.save_manifold_2d(model, tmp_path / "m.png", n=20)
    assert len(calls) == 1
    torch.testing.assert_close(calls[0], L.manifold_grid(20))
    assert_picture(path, (36 + 20 * 28 * 2 + 58, 78 + 20 * 28 * 2 + 16))


def test_traversal_grid_sweeps_one_dimension_per_row():
    centre = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64)
    scale = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    dims = torch.tensor([2, 0])
    z = L.traversal_grid(centre, dims, scale, n=5).reshape(2, 5, 4)
    offsets = torch.special.ndtri((torch.arange(5, dtype=torch.float64) + 0.5) / 5)
    torch.testing.assert_close(z[0, :, 2], 2.0 + 0.5 * offsets)
    torch.testing.assert_close(z[1, :, 0], 0.5 + 1.0 * offsets)
    for row, d in enumerate(dims.tolist()):
        others = [i for i in range(4) if i != d]
        torch.testing.assert_close(z[row][:, others], centre[others].expand(5, 3))


def test_most_active_orders_by_variance_of_posterior_means():
    mu = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.1, 3.0, 0.01, 1.0])
    dims, var = L.most_active(mu, 2)
    assert dims.tolist() == [1, 3]
    torch.testing.assert_close(var, mu.double().var(0))


def test_pca_matches_numpy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3.0
    coords, explained = L.pca_2d(x)
    xc = x.double().numpy() - x.double().numpy().mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    ref = xc @ vt[:2].T
    np.testing.assert_allclose(np.abs(coords.numpy()), np.abs(ref), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(explained.numpy(), s[:2] ** 2 / (s**2).sum(), rtol=1e-8)


def test_categorical_codes_and_usage():
    codes = L.one_hot_codes(torch.tensor([[2, 0, 1]]), 3)
    assert codes.tolist() == [[0, 0, 1, 1, 0, 0, 0, 1, 0]]
    z = L.categorical_traversal(torch.tensor([2, 0, 1]), 3).reshape(3, 3, 3, 3)  # row n, class k, variable, class
    for n in range(3):
        for k in range(3):
            expected = [2, 0, 1]
            expected[n] = k
            assert z[n, k].argmax(-1).tolist() == expected and z[n, k].sum().item() == 3
    probs = torch.softmax(torch.randn(100, 4, 5, generator=torch.Generator().manual_seed(0)), -1)
    usage = L.class_usage(probs)
    assert usage.shape == (4, 5)
    torch.testing.assert_close(usage.sum(1), torch.ones(4, dtype=torch.float64))


# -- vaelab plot --------------------------------------------------------------------------------


def test_plot_writes_every_picture(tiny_run, data_dir):
    env = {**os.environ, "VAELAB_DATA_DIR": data_dir}
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab", "plot", str(tiny_run)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    # every picture but "prior", which only a prior made of images has (the VampPrior's)
    assert proc.stdout.split() == [str(tiny_run / f"{p}.png") for p in SHOWN]
    # sizes follow from the layout: 28x28 MNIST cells, 2 px padding, every pixel doubled
    grid8 = 2 * (8 * 30 + 2)
    assert_picture(tiny_run / "curves.png", (390, 1290))
    assert_picture(tiny_run / "samples.png", (36 + 30 + grid8 + 16, 16 + grid8 + 32 + grid8 + 16))
    assert_picture(tiny_run / "reconstructions.png", (36 + 2 * (4 * 30 + 2) + 16, 64 + 2 * (16 * 30 + 2) + 16))
    assert_picture(tiny_run / "manifold.png", (36 + 1120 + 58, 78 + 1120 + 16))
    assert_picture(tiny_run / "latents.png", (640, 840))
    assert not list(tiny_run.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_plot_what_picks_pictures(tiny_run, tmp_path, capsys):
    paths = api.plot(tiny_run, what="latents,samples", device="cpu")
    assert [p.name for p in paths] == ["samples.png", "latents.png"]
    assert cli.main(["plot", str(tiny_run), "--what", "samples,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown picture 'nope'" in err[0] and "curves,samples" in err[0]


def test_latent_scatter_legend_only_with_labels(tiny_run):
    mu = torch.randn(300, 2)
    fig = pictures.latent_scatter_figure(mu, torch.arange(300) % 10, "mnist")
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [str(i) for i in range(10)]
    fig = pictures.latent_scatter_figure(torch.randn(300, 5), None, "frey_face")
    assert fig.axes[0].get_legend() is None
    assert fig.axes[0].get_xlabel().startswith("PC1 (")


def test_more_dimensions_and_unlabelled_data(tiny_frey_run):
    paths = api.plot(tiny_frey_run, device="cpu")
    assert [p.name for p in paths] == [f"{p}.png" for p in SHOWN]
    # Frey Face is 28x20: 5 traversal rows of 11 steps
    assert_picture(tiny_frey_run / "manifold.png", (36 + 2 * (5 * 30 + 2) + 58, 110 + 2 * (11 * 22 + 2) + 16))
    assert_picture(tiny_frey_run / "latents.png", (640, 700))  # no legend column
    assert_picture(tiny_frey_run / "samples.png", (36 + 30 + 2 * (8 * 30 + 2) + 16, 16 + 4 * (8 * 22 + 2) + 32 + 16))


def test_categorical_pictures(tmp_path, data_dir):
    cfg = vaelab.build_config(
        overrides={
            "data": {"dataset": "frey_face", "data_dir": data_dir},
            "model": {"hidden": [32], "latent": "categorical", "categorical_dims": [3, 4], "likelihood": "gaussian"},
            "train": {"epochs": 1, "batch_size": 500, "device": "cpu"},
        }
    )
    run = vaelab.train(cfg, tmp_path / "cat", progress=False, log=lambda m: None)
    model = vaelab.load(run, "cpu")
    assert L.latent_view(model) == L.LatentView("categorical", 12, 3, 4)
    api.plot(run, device="cpu")
    assert_picture(run / "manifold.png", (36 + 2 * (3 * 30 + 2) + 58, 600))  # at least 600 wide, for the title
    assert_picture(run / "latents.png", (300, 500))
    html = api.report(run, device="cpu").read_text()
    assert "categorical, 3 variables \u00d7 4 classes" in html


# -- vaelab evaluate keeps its result; vaelab report ----------------------------------------------


class TableReader(HTMLParser):
    """Cells of every table: {table id: [[(data-key, data-value, text), ...] per row]}, and img srcs."""

    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self.links = {}, [], []
        self.table = self.cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(a.get("id", ""), [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag == "td" and self.table is not None:
            self.cell = [a.get("data-key"), a.get("data-value"), ""]
        elif tag == "img":
            self.imgs.append(a["src"])
        for key in ("href", "src"):
            if key in a and tag not in ("img",):
                self.links.append(a[key])

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.table[-1].append(tuple(self.cell))
            self.cell = None
        elif tag == "table":
            self.table = None


def test_report_holds_the_runs_numbers(tiny_run, data_dir):
    env = {**os.environ, "VAELAB_DATA_DIR": data_dir}
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab", "evaluate", str(tiny_run), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout: the result only, as before
    saved = json.loads((tiny_run / "evaluation_test.json").read_text())
    assert {k: saved[k] for k in result} == result and saved["samples"] == 1 and saved["seed"] == 0

    path = api.report(tiny_run, device="cpu")
    assert path == tiny_run / "report.html"
    html = path.read_text()
    reader = TableReader()
    reader.feed(html)

    history = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in reader.tables["metrics"] if r]
    assert len(rows) == len(history)
    for row, record in zip(rows, history):
        cells = {key: (json.loads(value), text) for key, value, text in row}
        assert set(cells) == set(record)
        for key, value in record.items():
            assert cells[key][0] == value  # the exact number ...
            if key.endswith(("neg_elbo", "_rec", "_kl")):
                assert cells[key][1] == f"{value:.2f}"  # ... shown with two decimals
    evaluation = {key: json.loads(value) for row in reader.tables["evaluation"] for key, value, _ in row if key}
    assert evaluation["neg_elbo"] == result["neg_elbo"] and evaluation["active_units"] == result["active_units"]
    assert f"{history[-1]['valid_neg_elbo']:.2f}" in html

    # self-contained: every picture embedded, nothing fetched from anywhere
    assert len(reader.imgs) == len(SHOWN)
    for src in reader.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    assert reader.links == []
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|@import|url\(""", html)


def test_report_redraws_missing_pictures(tiny_frey_run):
    for p in SHOWN:
        (tiny_frey_run / f"{p}.png").unlink(missing_ok=True)
    api.report(tiny_frey_run, device="cpu")
    assert all((tiny_frey_run / f"{p}.png").is_file() for p in SHOWN)
    assert "No saved evaluation" in (tiny_frey_run / "report.html").read_text()


# -- vaelab explore: the server (the page itself is tested in a browser) --------------------------


def _get(url, host=None):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_explore_cli_serves_on_loopback_and_stops_on_ctrl_c(tiny_run, data_dir):
    env = {**os.environ, "VAELAB_DATA_DIR": data_dir}
    proc = subprocess.Popen(
        # -X faulthandler: a SIGABRT makes it print every thread's stack, should it not stop
        [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "vaelab",
            "explore",
            str(tiny_run),
            "--port",
            "0",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C as from a terminal: a shell that starts a background job without job control
        # (a CI runner's, `(cmd &)`) hands it SIGINT ignored, and Python keeps it so.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(120)
        assert line and line[0], proc.stderr.read() if proc.poll() is not None else "no URL printed"
        url = re.search(r"http://127\.0\.0\.1:\d+/", line[0]).group(0)

        status, ctype, body = _get(url)
        assert status == 200 and "text/html" in ctype and b"vaelab explore" in body
        status, _, body = _get(url + "info")
        info = json.loads(body)
        assert info["kind"] == "continuous" and info["dim"] == 2 and info["shape"] == [1, 28, 28]
        assert len(info["points"]) == len(info["labels"]) == 2000
        a, b = _get(url + "decode?z=-1.5,0"), _get(url + "decode?z=1.5,0.5")
        assert a[0] == b[0] == 200 and a[1] == "image/png" and a[2][:8] == PNG and a[2] != b[2]
        assert _get(url + "decode?z=1,2,3")[0] == 400
        assert _get(url + "decode?z=nan,0")[0] == 400
        assert _get(url + "nothing")[0] == 404
        assert _get(url, host="evil.example:80")[0] == 403  # DNS rebinding
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"explore did not stop within 60 s of Ctrl-C; where its threads were:\n{err}")
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in err


def test_explore_port_in_use_is_one_line(tiny_run, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["explore", str(tiny_run), "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "--port 0" in err[0]


def test_explore_decodes_categorical_classes(tmp_path):
    from vaelab.config import ModelConfig
    from vaelab.viz.explore import Explorer

    model = vaelab.VAE(ModelConfig(latent="categorical", categorical_dims=[3, 4], hidden=[16])).eval()
    ex = Explorer(model)
    assert ex.info["kind"] == "categorical" and ex.info["n_vars"] == 3 and ex.info["n_classes"] == 4
    z = ex.parse({"c": ["1,0,3"]})
    assert z.tolist() == [[0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]]
    assert ex.decode_png(z)[:8] == PNG
    for bad in ("1,0", "1,0,4", "1,0,0.5"):
        with pytest.raises(ValueError):
            ex.parse({"c": [bad]})

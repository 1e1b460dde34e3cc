"""The pictures of `vaelab plot`, each a function of a trained model (and test data) that writes
one PNG atomically. Every grid of latent points is decoded in one batch.

    samples          z ~ p(z): draws x ~ p(x|z) beside the decoder means E[x|z] of the same z
    reconstructions  test images, each row above the row of their reconstructions
    manifold         2-D Gaussian: E[x|z] over z = Phi^-1(u) on a grid (AEVB, Figure 4);
                     more dimensions: traversals of the most active ones;
                     categorical: each variable swept through its classes
    latents          test posterior means coloured by class (PCA beyond 2-D);
                     categorical: class usage per variable
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from ..model import given
from .curves import save_curves
from .figures import cell_centres, new_figure, pixel_figure, place_image, save_figure
from .grids import image_grid, interleave_rows
from .latent import (
    LatentView,
    categorical_traversal,
    class_probs,
    class_usage,
    grid_quantiles,
    latent_view,
    manifold_grid,
    most_active,
    pca_2d,
    traversal_grid,
    traversal_offsets,
)

# what `vaelab plot` draws; "prior" only for priors made of images (the VampPrior's pseudo-inputs)
PICTURES = ("curves", "samples", "reconstructions", "manifold", "latents", "prior")

MARGIN, GAP, TITLE, HEADER = 16, 32, 30, 36  # pixels: border, between panels, panel title, figure title
PAD, SCALE = 2, 2  # grid cells: white pixels between, pixel repeat

CLASS_NAMES = {
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


def _header(fig, text: str, height: int = HEADER) -> None:
    W, H = fig.get_size_inches() * 100
    fig.text(0.5, 1 - (height / 2) / H, text, ha="center", va="center", fontsize=11, parse_math=False)


MIN_WIDTH = 600  # room for the figure title above small grids


def _canvas(width: int, height: int):
    """A pixel figure at least MIN_WIDTH wide, and the x offset that centres `width` in it."""
    full = max(width, MIN_WIDTH)
    return pixel_figure(full, height), (full - width) // 2


def _images(model, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    if model.conditional and y is None:  # a conditional model's pictures without a class show class 0
        y = torch.zeros(z.shape[0], dtype=torch.long)
    return model.decode_view(z.to(model.device), *given(y.to(model.device) if y is not None else None)).cpu()


# -- samples ---------------------------------------------------------------------------------


def save_prior_images(images: torch.Tensor, path: str | Path, title: str) -> Path:
    """The images a prior is made of, in a grid (at most 100 of them)."""
    grid = image_grid(images[:100].float().cpu(), pad=PAD, scale=SCALE)
    h, w = grid.shape[:2]
    fig, dx = _canvas(2 * MARGIN + w, HEADER + h + MARGIN)
    place_image(fig, grid, dx + MARGIN, HEADER)
    _header(fig, title if images.shape[0] <= 100 else f"{title} (the first 100)")
    return save_figure(fig, path)


@torch.inference_mode()
def save_samples(model, path: str | Path, n: int = 64, seed: int = 0, title: str = "") -> Path:
    """Left: x ~ p(x|z); right: E[x|z]; the same n prior draws z in both."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    y, ncol = None, None
    if model.conditional:  # one column per class
        ncol = model.n_classes
        n = ncol * max(1, round(n / ncol))
        y = torch.arange(n, device=model.device) % ncol
    z = model.prior.sample(n, device=model.device, generator=gen)
    params = model.decode(z, *given(y))
    shape = (n, *model.input_shape)
    draws = model.likelihood.sample(params, gen).reshape(shape).cpu()
    means = model.likelihood.mean(params).reshape(shape).cpu()
    left, right = image_grid(draws, ncol, pad=PAD, scale=SCALE), image_grid(means, ncol, pad=PAD, scale=SCALE)
    h, w = left.shape[:2]
    fig, dx = _canvas(2 * MARGIN + 2 * w + GAP, HEADER + TITLE + h + MARGIN)
    place_image(fig, left, dx + MARGIN, HEADER + TITLE, "samples  x ~ p(x|z)")
    place_image(fig, right, dx + MARGIN + w + GAP, HEADER + TITLE, "decoder means  E[x|z]")
    per_class = f", one column per class y = 0..{model.n_classes - 1}" if model.conditional else ""
    _header(fig, title or f"{n} draws z ~ p(z){per_class}, the same z in both panels")
    return save_figure(fig, path)


# -- reconstructions ---------------------------------------------------------------------------

ROW_LABEL = 64


@torch.inference_mode()
def save_reconstructions(
    model, x: torch.Tensor, path: str | Path, ncol: int = 16, title: str = "", y: torch.Tensor | None = None
) -> Path:
    """Test images in rows, each row followed by their reconstructions E[x | z = E_q z] (given
    their labels y, for a conditional model)."""
    recon = model.reconstruct(x.to(model.device), *given(y.to(model.device) if y is not None else None)).cpu()
    ncol = min(ncol, x.shape[0])
    grid = image_grid(interleave_rows(x.cpu(), recon, ncol), ncol, pad=PAD, scale=SCALE)
    h, w = grid.shape[:2]
    fig, dx = _canvas(ROW_LABEL + w + MARGIN, HEADER + h + MARGIN)
    ax = place_image(fig, grid, dx + ROW_LABEL, HEADER)
    nrow = 2 * math.ceil(x.shape[0] / ncol)
    ax.set_yticks(
        cell_centres(nrow, x.shape[2], PAD, SCALE),
        ["test" if r % 2 == 0 else "recon." for r in range(nrow)],
        fontsize=9,
    )
    ax.tick_params(length=0)
    _header(fig, title or "test images (rows marked test) above their reconstructions E[x|z], z = E[z|x]")
    return save_figure(fig, path)


# -- manifold and traversals -----------------------------------------------------------------

AXIS_LEFT, AXIS_BOTTOM = 78, 58


@torch.inference_mode()
def save_class_manifolds(model, path: str | Path, n: int = 10, per_row: int = 5, title: str = "") -> Path:
    """A conditional model's 2-D manifold for each class: E[x|z,y] on the n x n grid of
    save_manifold_2d, one panel per class y."""
    z = manifold_grid(n)
    panels = [
        image_grid(_images(model, z, torch.full((z.shape[0],), c)), ncol=n, pad=0, scale=1)
        for c in range(model.n_classes)
    ]
    h, w = panels[0].shape[:2]
    rows = math.ceil(len(panels) / per_row)
    cols = min(per_row, len(panels))
    fig, dx = _canvas(
        2 * MARGIN + cols * w + (cols - 1) * GAP, HEADER + rows * (TITLE + h) + (rows - 1) * GAP // 2 + MARGIN
    )
    for c, panel in enumerate(panels):
        r, k = divmod(c, per_row)
        place_image(fig, panel, dx + MARGIN + k * (w + GAP), HEADER + TITLE + r * (TITLE + h + GAP // 2), f"y = {c}")
    _header(fig, title or f"decoder means E[x|z,y] on a {n}\u00d7{n} grid through the prior's inverse CDF, per class")
    return save_figure(fig, path)


@torch.inference_mode()
def save_manifold_2d(model, path: str | Path, n: int = 20, title: str = "") -> Path:
    """E[x|z] for z = Phi^-1(u) on an n x n grid of u in (0, 1)^2 (AEVB paper, Figure 4)."""
    if model.conditional:
        return save_class_manifolds(model, path, title=title)
    z = manifold_grid(n)
    grid = image_grid(_images(model, z), ncol=n, pad=0, scale=SCALE)
    h, w = grid.shape[:2]
    fig, dx = _canvas(AXIS_LEFT + w + MARGIN, HEADER + h + AXIS_BOTTOM)
    ax = place_image(fig, grid, dx + AXIS_LEFT, HEADER)
    q = torch.special.ndtri(grid_quantiles(n)).numpy()
    # every cell labelled when there is room for "-1.96" (about 34 px), else every other one
    h_px, w_px = SCALE * model.input_shape[1], SCALE * model.input_shape[2]
    for axis, cell_px, cells, values in (
        (ax.xaxis, w_px, cell_centres(n, model.input_shape[2], 0, SCALE), q),
        (ax.yaxis, h_px, cell_centres(n, model.input_shape[1], 0, SCALE), q[::-1]),
    ):
        keep = list(range(n)) if cell_px >= 36 else list(range(0, n, 2))
        axis.set_ticks(cells[keep], [f"{values[i]:.2f}" for i in keep], fontsize=7 if cell_px < 48 else 8)
    ax.set_xlabel("z1 = \u03a6\u207b\u00b9(u1)", fontsize=10)
    ax.set_ylabel("z2 = \u03a6\u207b\u00b9(u2)", fontsize=10)
    _header(fig, title or f"decoder means E[x|z] on a {n}\u00d7{n} grid through the prior's inverse CDF")
    return save_figure(fig, path)


@torch.inference_mode()
def save_traversals(model, mu: torch.Tensor, path: str | Path, k: int = 10, n: int = 11, title: str = "") -> Path:
    """Rows: the k most active dimensions (largest variance of the test posterior means), each
    swept from mean - 1.69 sd to mean + 1.69 sd of its posterior means, the others at their mean."""
    dims, var = most_active(mu, min(k, mu.shape[1]))
    centre, scale = mu.double().mean(0), var.sqrt()
    z = traversal_grid(centre, dims, scale, n).float()
    grid = image_grid(_images(model, z), ncol=n, pad=PAD, scale=SCALE)
    h, w = grid.shape[:2]
    label_w = 110
    fig, dx = _canvas(label_w + w + MARGIN, HEADER + h + AXIS_BOTTOM)
    ax = place_image(fig, grid, dx + label_w, HEADER)
    ax.set_yticks(
        cell_centres(len(dims), model.input_shape[1], PAD, SCALE),
        [f"z{d}  (var {var[d]:.2f})" for d in dims.tolist()],
        fontsize=8,
    )
    ax.set_xticks(
        cell_centres(n, model.input_shape[2], PAD, SCALE),
        [f"{v:+.1f}" for v in traversal_offsets(n).tolist()],
        fontsize=8,
    )
    ax.tick_params(length=0)
    ax.set_xlabel("offset from the mean, in standard deviations of E[z_d|x] over the test set", fontsize=9)
    given = " (class y = 0)" if model.conditional else ""
    _header(fig, title or f"traversals of the {len(dims)} most active of {mu.shape[1]} latent dimensions{given}")
    return save_figure(fig, path)


@torch.inference_mode()
def save_categorical_traversal(model, view: LatentView, base: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Row n: variable n set to each class in turn, the others at the classes of `base` (N,)
    (the most probable classes of a test image); the base class of each row is framed."""
    from matplotlib.patches import Rectangle

    K = view.n_classes
    z = categorical_traversal(base.cpu(), K)
    grid = image_grid(_images(model, z), ncol=K, pad=PAD, scale=SCALE)
    h, w = grid.shape[:2]
    label_w = 70
    fig, dx = _canvas(label_w + w + MARGIN, HEADER + h + AXIS_BOTTOM)
    ax = place_image(fig, grid, dx + label_w, HEADER)
    ch, cw = model.input_shape[1], model.input_shape[2]
    ax.set_yticks(cell_centres(view.n_vars, ch, PAD, SCALE), [f"var {i}" for i in range(view.n_vars)], fontsize=8)
    ax.set_xticks(cell_centres(K, cw, PAD, SCALE), [str(k) for k in range(K)], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("class", fontsize=9)
    for row, cls in enumerate(base.tolist()):
        ax.add_patch(
            Rectangle(
                (SCALE * (PAD / 2 + cls * (cw + PAD)) - 0.5, SCALE * (PAD / 2 + row * (ch + PAD)) - 0.5),
                SCALE * (cw + PAD),
                SCALE * (ch + PAD),
                fill=False,
                edgecolor="#d62728",
                lw=1.2,
            )
        )
    _header(fig, title or f"each of {view.n_vars} variables through its {K} classes (framed: a test image's code)")
    return save_figure(fig, path)


# -- the latent space ------------------------------------------------------------------------


def save_latent_scatter(
    mu: torch.Tensor, labels: torch.Tensor | None, path: str | Path, dataset: str = "", title: str = ""
) -> Path:
    """Test posterior means, by PCA when there are more than two dimensions; coloured by class
    with a legend when the data has labels."""
    return save_figure(latent_scatter_figure(mu, labels, dataset, title), path)


def latent_scatter_figure(mu: torch.Tensor, labels: torch.Tensor | None, dataset: str = "", title: str = ""):
    from matplotlib.lines import Line2D

    d = mu.shape[1]
    axis: tuple[str, ...]
    if d == 2:
        coords, axis = mu.double(), ("z1", "z2")
    else:
        coords, explained = pca_2d(mu)
        axis = tuple(f"PC{i + 1} ({100 * explained[i]:.0f}% of variance)" for i in range(2))
    xy = coords.numpy()
    if d == 1:
        axis = ("z1", "")
    fig = new_figure(8.4 if labels is not None else 7.0, 6.4)
    ax = fig.add_axes((0.1, 0.1, 0.66 if labels is not None else 0.84, 0.8))
    order = np.random.default_rng(0).permutation(len(xy))  # no class drawn on top of all others
    if labels is None:
        ax.scatter(xy[order, 0], xy[order, 1], s=3, alpha=0.5, color="#1f77b4", linewidths=0, rasterized=True)
    else:
        import matplotlib

        lab = labels.numpy()
        classes = np.unique(lab)
        cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
        ax.scatter(
            xy[order, 0], xy[order, 1], s=3, alpha=0.6, c=[colour[c] for c in lab[order]], linewidths=0, rasterized=True
        )
        names = CLASS_NAMES.get(dataset)
        handles = [
            Line2D(
                [], [], marker="o", ls="", color=colour[c], ms=7, label=names[c] if names and c < len(names) else str(c)
            )
            for c in classes
        ]
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
            frameon=False,
            fontsize=9,
            title="digit" if dataset in ("mnist", "binarized_mnist") else "class",
        )
    ax.set_xlabel(axis[0])
    ax.set_ylabel(axis[1])
    ax.grid(alpha=0.25)
    if d == 2:
        ax.set_aspect("equal", adjustable="datalim")
    where = "" if d == 2 else f", {d}-D projected on 2 principal components"
    ax.set_title(title or f"test posterior means E[z|x]{where}", fontsize=11)
    return fig


def save_class_usage(model, params: torch.Tensor, view: LatentView, path: str | Path, title: str = "") -> Path:
    """Heatmap (variables x classes) of how often each class is the most probable one."""
    usage = class_usage(class_probs(model, params, view)).numpy()
    nv, k = usage.shape
    fig = new_figure(max(5.0, 1.6 + 0.45 * k), max(3.0, 1.6 + 0.28 * nv))
    ax = fig.add_axes((0.14, 0.14, 0.68, 0.74))
    img = ax.imshow(
        usage, cmap="viridis", vmin=0.0, vmax=max(float(usage.max()), 1e-9), aspect="auto", interpolation="nearest"
    )
    ax.set_xticks(range(k), [str(i) for i in range(k)], fontsize=8)
    ax.set_yticks(range(nv), [str(i) for i in range(nv)], fontsize=7 if nv > 20 else 8)
    ax.set_xlabel("class k")
    ax.set_ylabel("variable n")
    cax = fig.add_axes((0.85, 0.14, 0.03, 0.74))
    fig.colorbar(img, cax=cax).set_label("fraction of test points with argmax_k q(c_n = k | x)", fontsize=8)
    ax.set_title(title or f"class usage per variable (uniform = {1 / k:.2f})", fontsize=11)
    return save_figure(fig, path)


# -- all of a run's pictures ---------------------------------------------------------------


def _pictures(what) -> tuple[str, ...]:
    if what is None:
        return PICTURES
    names = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
    unknown = [w for w in names if w not in PICTURES]
    if unknown or not names:
        raise VaelabError(
            f"unknown picture {', '.join(map(repr, unknown)) or '(none given)'}; choose from {','.join(PICTURES)}"
        )
    return tuple(p for p in PICTURES if p in names)


def plot_run(
    run: str | Path, *, what=None, device: str = "auto", data_dir: str | None = None, n: int = 64, seed: int = 0
) -> list[Path]:
    """The pictures of a run as PNGs in its directory; `what` is a subset of curves, samples,
    reconstructions, manifold, latents (a list or comma-separated; default all). Returns the
    paths written. See vaelab.viz.pictures for what each shows."""
    from ..checkpoint import read_metrics
    from ..dataprep import load_inputs
    from ..evaluation import condition, encode_all, posterior_means
    from ..runs import load_run

    what = _pictures(what)
    run = Path(run)
    cfg, model = load_run(run, device, data_dir)
    view = latent_view(model)
    paths = []
    if "curves" in what:
        history = read_metrics(run)
        if history:
            paths.append(save_curves(history, run / "curves.png", title=f"{run.name}  ({cfg.data.dataset})"))
    if "samples" in what:
        paths.append(save_samples(model, run / "samples.png", n, seed))
    for title, images in model.prior.images().items() if "prior" in what else ():
        paths.append(save_prior_images(images, run / "prior.png", title))
    plane = view.kind == "continuous" and view.dim == 2
    if "manifold" in what and plane:  # the AEVB lattice needs no data
        paths.append(save_manifold_2d(model, run / "manifold.png"))
    if not {"reconstructions", "latents"} & set(what) and ("manifold" not in what or plane):
        return _in_order(paths)
    inputs = load_inputs(cfg.data, "test", expect_shape=cfg.model.input_shape)
    y = condition(model, inputs.labels)
    if "reconstructions" in what:
        first = y[:32] if y is not None else None
        paths.append(save_reconstructions(model, inputs.images[:32], run / "reconstructions.png", y=first))
    params = encode_all(model, inputs.images, cfg.train.eval_batch_size, y)
    if "manifold" in what and view.kind == "categorical":
        base = class_probs(model, params[:1], view).argmax(-1)[0]
        paths.append(save_categorical_traversal(model, view, base, run / "manifold.png"))
    elif "manifold" in what and not plane:
        paths.append(
            save_traversals(model, model.latent.latent_to_view(posterior_means(model, params)), run / "manifold.png")
        )
    if "latents" in what and view.kind == "categorical":
        paths.append(save_class_usage(model, params, view, run / "latents.png"))
    elif "latents" in what:
        mu = model.latent.latent_to_view(posterior_means(model, params))
        paths.append(save_latent_scatter(mu, inputs.labels, run / "latents.png", dataset=cfg.data.dataset))
    return _in_order(paths)


def _in_order(paths: list[Path]) -> list[Path]:
    """The pictures in the order of PICTURES."""
    return sorted(paths, key=lambda p: PICTURES.index(p.stem))

"""Pictures: image grids and training curves, written as PNG files.

Grids are assembled in NumPy and written with matplotlib's `imsave` (no figure needed);
curves use a headless (Agg) figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2, scale: int = 2) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*H, cols*W[, 3]) array with `pad` pixels between cells,
    each pixel repeated `scale` times so small digits are visible."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):  # at most a few hundred cells: a picture, not a hot loop
        r, col = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    arr = grid.numpy()
    return arr[0] if c == 1 else arr[:3].transpose(1, 2, 0)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    import matplotlib.image as mpimg
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if array.ndim == 2 else {}
    atomic_write(path, lambda tmp: mpimg.imsave(tmp, array, format="png", **kw))
    return path


def save_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None) -> Path:
    return save_png(image_grid(images, ncol), path)


def save_recon(x: torch.Tensor, recon: torch.Tensor, path: str | Path, ncol: int = 16) -> Path:
    """Rows of originals, each followed by the row of their reconstructions."""
    n = x.shape[0]
    rows = []
    for i in range(0, n, ncol):
        rows += [x[i:i + ncol], recon[i:i + ncol]]
    # pad the last pair of rows to a full row so the grid stays aligned
    rows = [torch.cat([r, torch.ones(ncol - r.shape[0], *r.shape[1:])]) if r.shape[0] < ncol else r for r in rows]
    return save_png(image_grid(torch.cat(rows), ncol), path)


def save_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Train and evaluation neg_elbo, reconstruction and KL against epoch, in nats."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, term, label in zip(axes, ("neg_elbo", "rec", "kl"),
                               ("neg_elbo (nats)", "reconstruction -E log p(x|z) (nats)", "KL(q||p) (nats)")):
        for key in sorted(k for k in history[0] if k.endswith("_" + term)):
            ax.plot(epochs, [r[key] for r in history], marker="o", ms=3, label=key[: -len(term) - 1])
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path

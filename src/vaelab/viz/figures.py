"""Matplotlib figures without pyplot: no global state, no GUI backend, safe in any thread.

Image panels are placed by pixel so that one pixel of a grid is one pixel of the PNG (no
resampling blur) and every picture has a size that follows from its content alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..safefs import atomic_write, make_parent

DPI = 100
FONT = "DejaVu Sans"  # ships with matplotlib: the same look on every machine


def new_figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=DPI)


def pixel_figure(width_px: int, height_px: int):
    """A white figure of exactly width_px x height_px pixels."""
    return new_figure(width_px / DPI, height_px / DPI)


def save_figure(fig, path: str | Path) -> Path:
    """Write the figure as a PNG atomically (no bbox cropping: the pixel size is the figure's)."""
    path = Path(path)
    make_parent(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, facecolor="white"))
    return path


def place_image(fig, array: np.ndarray, left: int, top: int, title: str | None = None):
    """Draw `array` (grey in [0, 1], or RGB) at pixel offset (left, top) from the figure's top-left
    corner, 1:1, in axes of exactly its size; returns the axes (for ticks and labels)."""
    W, H = fig.get_size_inches() * DPI
    h, w = array.shape[:2]
    ax = fig.add_axes((left / W, 1 - (top + h) / H, w / W, h / H))
    kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if array.ndim == 2 else {}
    ax.imshow(array, interpolation="nearest", aspect="auto", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10, pad=6)
    return ax


def cell_centres(n: int, cell: int, pad: int, scale: int) -> np.ndarray:
    """Pixel coordinates of the centres of n grid cells of size `cell` (before scaling)."""
    return (pad + np.arange(n) * (cell + pad) + cell / 2) * scale - 0.5

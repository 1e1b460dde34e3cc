"""Image grids: many small images tiled into one array, and plain PNG files of them.

Grids are assembled in one tensor operation and written with matplotlib's `imsave` (no figure),
so a grid file has an exact, predictable pixel size: (rows*(H+pad)+pad) * scale by
(cols*(W+pad)+pad) * scale.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..safefs import atomic_write, make_parent


def grid_shape(n: int, ncol: int | None = None) -> tuple[int, int]:
    """(rows, cols) of the grid that `image_grid` makes for n images."""
    ncol = ncol or math.ceil(math.sqrt(n))
    return math.ceil(n / ncol), ncol


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2, scale: int = 2) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*H, cols*W[, 3]) array with `pad` white pixels between
    cells, each pixel repeated `scale` times so small digits are visible. C is 1 (grey) or 3 (RGB)."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    nrow, ncol = grid_shape(n, ncol)
    if nrow * ncol > n:  # blank (white) cells fill the last row
        images = torch.cat([images, images.new_ones(nrow * ncol - n, c, h, w)])
    cells = F.pad(images, (pad, 0, pad, 0), value=1.0)  # white border left and top of each cell
    grid = (
        cells.reshape(nrow, ncol, c, h + pad, w + pad)
        .permute(2, 0, 3, 1, 4)
        .reshape(c, nrow * (h + pad), ncol * (w + pad))
    )
    grid = F.pad(grid, (0, pad, 0, pad), value=1.0)  # and the outer border right and bottom
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    arr = grid.numpy()
    return arr[0] if c == 1 else arr[:3].transpose(1, 2, 0)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    import matplotlib.image as mpimg

    path = Path(path)
    make_parent(path)
    kw: dict[str, Any] = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if array.ndim == 2 else {}
    atomic_write(path, lambda tmp: mpimg.imsave(tmp, array, format="png", **kw))
    return path


def save_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None) -> Path:
    return save_png(image_grid(images, ncol), path)


def interleave_rows(x: torch.Tensor, recon: torch.Tensor, ncol: int) -> torch.Tensor:
    """Rows of originals, each followed by the row of their reconstructions; the last pair of
    rows is padded with white cells so the grid stays aligned."""
    n = x.shape[0]
    rows = []
    for i in range(0, n, ncol):
        rows += [x[i : i + ncol], recon[i : i + ncol]]
    return torch.cat(
        [torch.cat([r, r.new_ones(ncol - r.shape[0], *r.shape[1:])]) if r.shape[0] < ncol else r for r in rows]
    )


def save_recon(x: torch.Tensor, recon: torch.Tensor, path: str | Path, ncol: int = 16) -> Path:
    """Rows of originals, each followed by the row of their reconstructions."""
    return save_png(image_grid(interleave_rows(x, recon, ncol), ncol), path)


def png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit PNG of a (H, W) grey or (H, W, 3) RGB array in [0, 1], with the standard library
    only (zlib): fast enough to answer every slider move of `vaelab explore`."""
    import struct
    import zlib

    a = (np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = a.shape[:2]
    colour = 0 if a.ndim == 2 else 2
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, -1)], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )

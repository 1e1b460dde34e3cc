"""Pictures of what a VAE learned: grids, training curves, the latent manifold and space, the
HTML report and the interactive explorer.

    grids      image grids and plain PNG files (exact pixel sizes)
    figures    matplotlib figures without pyplot, image panels placed pixel for pixel
    curves     training curves from metrics.jsonl
    latent     the latent points pictures decode (manifold grid, traversals, PCA, categorical codes)
    pictures   the PNGs of `vaelab plot`
    report     the self-contained report.html of `vaelab report`
    explore    the local page of `vaelab explore`
"""

from .curves import save_curves
from .grids import image_grid, png_bytes, save_grid, save_png, save_recon
from .latent import LatentView, latent_view, manifold_grid, most_active, pca_2d, traversal_grid
from .pictures import (
    PICTURES,
    save_categorical_traversal,
    save_class_usage,
    save_latent_scatter,
    save_manifold_2d,
    save_reconstructions,
    save_samples,
    save_traversals,
)

__all__ = [
    "PICTURES",
    "image_grid",
    "png_bytes",
    "save_grid",
    "save_png",
    "save_recon",
    "save_curves",
    "LatentView",
    "latent_view",
    "manifold_grid",
    "most_active",
    "pca_2d",
    "traversal_grid",
    "save_samples",
    "save_reconstructions",
    "save_manifold_2d",
    "save_traversals",
    "save_categorical_traversal",
    "save_latent_scatter",
    "save_class_usage",
]

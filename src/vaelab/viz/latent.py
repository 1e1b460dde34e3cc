"""The latent points the pictures and `vaelab explore` decode, as plain tensor functions.

- `manifold_grid`: the AEVB paper's Figure 4 lattice, z = Phi^-1(u) for u on an evenly spaced
  n x n grid inside (0, 1)^2, so equal areas of the grid hold equal prior mass;
- `traversal_grid`: each chosen dimension swept around a centre, the others held fixed;
- `pca_2d`: the two leading principal components, by SVD;
- categorical helpers for a latent of N variables with K classes each, whose decoder input is
  the N one-hot vectors laid end to end, variable by variable, (B, N*K).

A model's latent is seen through `latent_view(model)`, the family's own `view` (a LatentView:
continuous or categorical): the pictures ask the family how to show itself, never its name.
"""

from __future__ import annotations

import torch

from ..parts import LatentView


def latent_view(model) -> LatentView:
    return model.latent.view


# -- Gaussian ----------------------------------------------------------------------------------


def grid_quantiles(n: int) -> torch.Tensor:
    """u_i = (i + 1/2) / n, i = 0..n-1: n evenly spaced points inside (0, 1), symmetric about 1/2
    (float64)."""
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def manifold_grid(n: int = 20) -> torch.Tensor:
    """(n*n, 2) latent points z = Phi^-1(u) in reading order of the picture: row r, column c is
    z = (Phi^-1(u_c), Phi^-1(u_{n-1-r})), so z1 grows to the right and z2 grows upwards."""
    q = torch.special.ndtri(grid_quantiles(n))
    z1 = q.expand(n, n)  # columns
    z2 = q.flip(0)[:, None].expand(n, n)  # rows, top row = largest z2
    return torch.stack([z1, z2], -1).reshape(n * n, 2).float()


def most_active(mu: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the k dimensions with the largest variance over data points of the posterior
    mean (the "activity" of Burda et al. 2016), most active first, and all the variances."""
    var = mu.double().var(0) if mu.shape[0] > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return torch.argsort(var, descending=True, stable=True)[:k], var


def traversal_offsets(n: int = 11) -> torch.Tensor:
    """Steps of a traversal in units of the dimension's spread: Phi^-1(u) for u on the same even
    grid as the manifold, so the sweep covers the central (n-1)/n of a standard normal."""
    return torch.special.ndtri(grid_quantiles(n))


def traversal_grid(centre: torch.Tensor, dims: torch.Tensor, scale: torch.Tensor, n: int = 11) -> torch.Tensor:
    """(len(dims) * n, D): row r sweeps dimension dims[r] through centre + scale * offsets, the
    other dimensions held at `centre`."""
    offsets = traversal_offsets(n).to(centre.dtype)
    z = centre.expand(len(dims), n, centre.shape[0]).clone()
    rows = torch.arange(len(dims))
    z[rows, :, dims] = centre[dims][:, None] + scale[dims][:, None] * offsets
    return z.reshape(-1, centre.shape[0])


def pca_2d(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates on the two leading principal components (N, 2) and the fraction of the total
    variance each explains (2,), from the SVD of the centred data (float64)."""
    x = points.double()
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = min(2, s.shape[0])
    coords = u[:, :k] * s[:k]
    if k < 2:
        coords = torch.cat([coords, torch.zeros(x.shape[0], 2 - k, dtype=x.dtype)], 1)
    power = s**2
    explained = power[:2] / power.sum().clamp_min(1e-300)
    return coords, torch.cat([explained, explained.new_zeros(2 - explained.shape[0])])


# -- categorical -------------------------------------------------------------------------------


@torch.inference_mode()
def class_probs(model, params: torch.Tensor, view: LatentView) -> torch.Tensor:
    """q(c_n = k | x) as (B, N, K) from encoder outputs: the family's E_q[z] of one-hot codes."""
    return model.latent.mean(params).reshape(-1, view.n_vars, view.n_classes)


def class_usage(probs: torch.Tensor) -> torch.Tensor:
    """(N, K): for each variable, the fraction of data points whose most probable class is k."""
    n, nv, k = probs.shape
    counts = torch.nn.functional.one_hot(probs.argmax(-1), k).sum(0).double()
    return counts / max(n, 1)


def one_hot_codes(classes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class indices (B, N) -> decoder inputs (B, N*K), one-hot per variable, variable-major."""
    return torch.nn.functional.one_hot(classes.long(), n_classes).flatten(-2).float()


def categorical_traversal(base: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N*K, N*K) decoder inputs: row n of the picture sets variable n of `base` (N,) to each
    class k = 0..K-1 in turn, the other variables keep their base class."""
    nv = base.shape[0]
    classes = base.expand(nv, n_classes, nv).clone()
    classes[torch.arange(nv), :, torch.arange(nv)] = torch.arange(n_classes).expand(nv, n_classes)
    return one_hot_codes(classes.reshape(nv * n_classes, nv), n_classes)

"""Drawing reproduced figures in the paper's layout, from their member protocols' directories
(run.run_figure runs the members first)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VaelabError
from .protocol import get_protocol
from .run import read_record, run_curve, seed_dir

# -- Kingma & Welling (2014), Figure 2 ----------------------------------------------------------

# The paper's own curves, read from the vector paths of its Figure 2 (the file says how)
PAPER_CURVES = Path(__file__).with_name("aevb_figure2_paper.json")


def paper_curves() -> dict[str, dict[str, list]]:
    """{protocol: {"train" | "test": [[log10 examples, L], ...], "ylim": [lo, hi]}} of the AEVB
    paper's Figure 2."""
    import json

    return json.loads(PAPER_CURVES.read_text())["curves"]


def draw_bound_panels(dirs: dict[str, Path], path: Path, *, title: str) -> Path:
    """One panel per member, in rows by data set: the lower bound L (= -neg_elbo) per example on
    the training set (solid) and the test set (dashed) against training examples evaluated, log
    scale, as the AEVB paper's Figure 2 (which also draws wake-sleep, not reproduced here), with
    the paper's own AEVB curves in grey beside them."""
    from ..viz.figures import new_figure, save_figure

    records = {m: read_record(d) for m, d in dirs.items()}
    theirs = paper_curves()
    groups: dict[str, list[str]] = {}
    for m in dirs:
        groups.setdefault(get_protocol(m).config(0).data.dataset, []).append(m)
    ncol = max(len(v) for v in groups.values())
    legend = False  # on the first panel with curves (some may not have run yet: --draw)
    fig = new_figure(3.0 * ncol, 2.7 * len(groups) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(groups), ncol, squeeze=False))
    for row, (dataset, members) in enumerate(groups.items()):
        for col in range(ncol):
            ax = axes[row, col]
            if col >= len(members):
                ax.set_visible(False)
                continue
            member = members[col]
            p = get_protocol(member)
            record = records[member]
            for split, ls in (("train", "-"), ("test", "--")):
                if split in theirs.get(member, {}):
                    logx, bound = np.array(theirs[member][split]).T
                    ax.plot(10**logx, bound, color="0.6", lw=1.2, ls=ls, label=f"paper ({split})")
            c = run_curve(p, dirs[member], p.seeds[0])  # as the run stands, finished or not
            eval_key = next((k for k in c if k.endswith("_neg_elbo") and not k.startswith("train")), None)
            if c and eval_key is not None:
                ax.plot(c["examples"], [-v for v in c["train_neg_elbo"]], color="C0", lw=1.5, label="vaelab (train)")
                ax.plot(
                    c["examples"],
                    [-v for v in c[eval_key]],
                    color="C0",
                    lw=1.5,
                    ls="--",
                    label=f"vaelab ({eval_key.split('_')[0]})",
                )
                if not legend:
                    ax.legend(fontsize=7, frameon=False)
                    legend = True
            else:
                ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xscale("log")
            lo, hi = p.figure_xlim or (None, None)
            ax.set_xlim(lo, hi)
            if "ylim" in theirs.get(member, {}):  # the paper's panel, so the two read alike
                ax.set_ylim(*theirs[member]["ylim"])
            name = "MNIST" if dataset == "mnist" else "Frey Face" if dataset == "frey_face" else dataset
            done = "" if record and record["complete"] else " (incomplete)"
            ax.set_title(f"{name}, $N_z$ = {p.config(0).model.latent_dim}{done}", fontsize=9)
            ax.grid(alpha=0.3, which="both", lw=0.5)
            ax.tick_params(labelsize=8)
            if col == 0:
                ax.set_ylabel("L (nats per example)", fontsize=8)
            if row == len(groups) - 1:
                ax.set_xlabel("# training samples evaluated", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_manifolds(dirs: dict[str, Path], path: Path, *, title: str) -> Path:
    """The learned 2-D manifolds side by side: E[x|z] over z = Phi^-1(u) on an evenly spaced grid
    of the unit square (the AEVB paper's Figure 4: 10 x 10 faces, 20 x 20 digits), one panel per
    member run (seed 0)."""
    from ..checkpoint import WEIGHTS, load_model
    from ..viz.figures import pixel_figure, place_image, save_figure
    from ..viz.grids import image_grid
    from ..viz.latent import manifold_grid

    panels = []
    for member, d in dirs.items():
        run = seed_dir(d, get_protocol(member).seeds[0])
        if not (run / WEIGHTS).is_file():  # not begun (a figure drawn with --draw as runs stand)
            continue
        _, model = load_model(run)
        if model.latent.dim != 2:
            raise VaelabError(f"{member} has a {model.latent.dim}-D latent; a manifold needs 2")
        n = 10 if model.input_shape[1:] == (28, 20) else 20
        images = model.decode_mean(manifold_grid(n).to(model.device)).detach().cpu()
        record = read_record(d)
        done = "" if record and record["complete"] else " (incomplete)"
        panels.append((image_grid(images, ncol=n, pad=0, scale=2), get_protocol(member).citation.row + done))
    margin, gap, head = 16, 24, 40
    width = 2 * margin + sum(p[0].shape[1] for p in panels) + gap * (len(panels) - 1)
    height = head + 24 + max(p[0].shape[0] for p in panels) + margin
    fig = pixel_figure(width, height)
    x = margin
    for grid, label in panels:
        place_image(fig, grid, x, head + 24, label)
        x += grid.shape[1] + gap
    fig.text(0.5, 1 - (head / 2) / height, title, ha="center", va="center", fontsize=11)
    return save_figure(fig, path)

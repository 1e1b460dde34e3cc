"""Training curves from metrics.jsonl: neg_elbo, reconstruction and KL against epoch, for the
training set and the split watched during training, and the temperature when there is one."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from .figures import new_figure, save_figure

PANELS = (
    ("neg_elbo", "-ELBO (nats per example)"),
    ("rec", "reconstruction  -E_q log p(x|z)  (nats)"),
    ("kl", "KL(q(z|x) || p(z))  (nats)"),
)


SCHEDULED = {"tau": "temperature tau", "kl_weight": "KL weight (warm-up)"}


def _series(history: list[dict], term: str) -> list[str]:
    """Keys `<split>_<term>` present in the history, training first."""
    keys = {
        k for r in history for k in r if k.endswith("_" + term) and k[: -len(term) - 1] in ("train", "valid", "test")
    }
    return sorted(keys, key=lambda k: (not k.startswith("train"), k))


def save_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """One panel per term, train and valid/test in each; a fourth panel for the scheduled values
    when the records carry them (`tau`, the Gumbel-Softmax temperature; `kl_weight`, KL warm-up).
    `neg_iwae` (the IWAE objective) is drawn dashed on the -ELBO panel."""
    scheduled = [k for k in SCHEDULED if any(k in r for r in history)]
    panels = list(PANELS) + ([("schedule", " and ".join(SCHEDULED[k] for k in scheduled))] if scheduled else [])
    fig = new_figure(4.3 * len(panels), 3.9)
    axes = fig.subplots(1, len(panels))
    for ax, (term, label) in zip(axes, panels):
        keys = scheduled if term == "schedule" else _series(history, term)
        if term == "neg_elbo":
            keys += _series(history, "neg_iwae")
        for key in keys:
            points = [(r["epoch"], r[key]) for r in history if key in r]
            split = key.split("_", 1)[0] if key not in SCHEDULED else key
            ax.plot(
                *zip(*points),
                marker="o",
                ms=3,
                lw=1.5,
                ls="--" if "iwae" in key else "-",
                color={"train": "C0", "valid": "C1", "test": "C1", "kl_weight": "C3"}.get(split, "C2"),
                label=key.replace("_", " ", 1) if key not in SCHEDULED else SCHEDULED[key],
            )
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(history) == 1:
            ax.set_xlim(history[0]["epoch"] - 1, history[0]["epoch"] + 1)
        if keys:
            ax.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11, parse_math=False)  # a run named $x$ is shown as named
    fig.tight_layout()
    return save_figure(fig, path)

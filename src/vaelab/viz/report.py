"""report.html: one self-contained page about a run, readable from disk with no network.

Pictures are embedded as base64 PNG data URIs, styles are inline, there is no script; the
page holds the headline numbers, the `vaelab evaluate` results saved in the run, every epoch's
metrics and the full config. Table cells carry their exact value in `data-value`, so a reader
(or a test) can check the page against metrics.jsonl.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path

from ..parts import LatentView
from ..safefs import atomic_write_text, read_bytes
from ..safefs import read_text as _read_text

TERMS = ("neg_iwae", "neg_elbo", "rec", "kl")
SPLITS = ("train", "valid", "test")

CAPTIONS = {
    "curves": "Training curves: the negative ELBO and its two terms, reconstruction and KL, in nats per "
    "example, on the training set (running mean over the epoch) and on the split watched during "
    "training. Lower is better.",
    "samples": "z drawn from the prior p(z), decoded: on the left a draw x ~ p(x|z), on the right the "
    "decoder mean E[x|z] of the same z.",
    "reconstructions": "Test images, each row above the row of their reconstructions E[x|z] at the "
    "posterior mean z = E[z|x].",
    "manifold": {
        "continuous2": "The learned manifold, as in the AEVB paper's Figure 4: decoder means E[x|z] for "
        "z = \u03a6\u207b\u00b9(u) with u on an evenly spaced grid in (0, 1)\u00b2, so each cell "
        "holds equal prior mass.",
        "continuous": "Traversals: each row sweeps one of the most active latent dimensions (largest variance "
        "of the test posterior means) around the mean posterior mean; the other dimensions "
        "stay fixed.",
        "categorical": "Each categorical variable set to each of its classes in turn, the others kept at the "
        "code of a test image (framed).",
    },
    "prior": "The VampPrior is the mixture of the posterior at these learned pseudo-inputs: "
    "p(z) = (1/K) \u03a3 q(z | u_k).",
    "latents": {
        "continuous": "The latent space: posterior means E[z|x] of the test set, coloured by class when the "
        "data has labels (projected on two principal components beyond two dimensions).",
        "categorical": "Class usage: for each variable, how often each class is the most probable one "
        "over the test set. A dead variable uses one class only.",
    },
}

TITLES = {
    "prior": "The prior's images",
    "curves": "Training curves",
    "samples": "Samples from the prior",
    "reconstructions": "Reconstructions",
    "manifold": "Latent manifold",
    "latents": "Latent space",
}

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2330; background: #f6f7f9; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff;
       box-shadow: 0 0 0 1px #e3e6eb; min-height: 100vh; box-sizing: border-box; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e3e6eb; }
h3 { font-size: 1.05em; margin: 20px 0 6px; }
.sub { color: #5b6473; margin: 0 0 20px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #e3e6eb; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card .label { color: #5b6473; font-size: 0.85em; }
.card .value { font-size: 1.45em; font-variant-numeric: tabular-nums; font-weight: 600; }
.card .note { color: #5b6473; font-size: 0.8em; }
figure { margin: 8px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eef0f3; display: block; }
figcaption { color: #3d4554; font-size: 0.92em; margin-top: 6px; max-width: 900px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.9em; }
th, td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
th { background: #f2f4f7; position: sticky; top: 0; font-weight: 600; }
td.k, th.k { text-align: left; }
tbody tr:nth-child(even) td { background: #fafbfc; }
.scroll { max-height: 480px; overflow: auto; border: 1px solid #e3e6eb; border-radius: 6px; display: inline-block;
          max-width: 100%; }
.config { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.muted { color: #5b6473; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.92em; }
footer { margin-top: 40px; color: #5b6473; font-size: 0.85em; }
"""


def fmt(key: str, value) -> str:
    """How a metric is shown: nats with 2 decimals, seconds with 1, lr and tau with 3 significant
    figures, counts as integers."""
    if isinstance(value, bool) or value is None or (isinstance(value, float) and not math.isfinite(value)):
        return str(value)
    if isinstance(value, int) or key in ("epoch", "step", "n", "active_units", "iw_samples", "samples", "seed"):
        return f"{int(value)}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if key.endswith("seconds"):
        return f"{value:.1f}"
    if key in ("lr", "tau") or key.endswith("_tau"):
        return f"{value:.3g}"
    return f"{value:.2f}"


def metric_columns(history: list[dict]) -> list[str]:
    """epoch, step, then each term for train and the watched split, then the rest."""
    keys: list[str] = []
    for r in history:
        keys += [k for k in r if k not in keys]
    ordered: list[str] = [k for k in ("epoch", "step") if k in keys]
    ordered += [f"{s}_{t}" for t in TERMS for s in SPLITS if f"{s}_{t}" in keys]
    ordered += [k for k in ("tau", "lr") if k in keys]
    rest = [k for k in keys if k not in ordered]
    return ordered + sorted(k for k in rest if not k.endswith("seconds")) + [k for k in rest if k.endswith("seconds")]


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _cell(key: str, value) -> str:
    exact = json.dumps(value) if value is not None else ""
    return f'<td data-key="{_e(key)}" data-value="{_e(exact)}">{_e(fmt(key, value)) if value is not None else ""}</td>'


def metrics_table(history: list[dict]) -> str:
    if not history:
        return '<p class="muted">No metrics.jsonl in this run yet.</p>'
    cols = metric_columns(history)
    head = "".join(f'<th data-key="{_e(c)}">{_e(c.replace("_", " "))}</th>' for c in cols)
    rows = "".join("<tr>" + "".join(_cell(c, r.get(c)) for c in cols) + "</tr>\n" for r in history)
    return (
        f'<div class="scroll"><table id="metrics"><thead><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table></div>'
    )


def _card(label: str, key: str, value, note: str = "", ident: str = "") -> str:
    idattr = f' id="{_e(ident)}"' if ident else ""
    return (
        f'<div class="card"{idattr}><div class="label">{_e(label)}</div>'
        f'<div class="value" data-key="{_e(key)}" data-value="{_e(json.dumps(value))}">{_e(fmt(key, value))}</div>'
        + (f'<div class="note">{_e(note)}</div>' if note else "")
        + "</div>"
    )


def headline(history: list[dict]) -> str:
    if not history:
        return ""
    last = history[-1]
    cards = []
    for s in SPLITS:
        key = f"{s}_neg_elbo"
        if key in last:
            note = (
                f"rec {fmt('rec', last[f'{s}_rec'])}, kl {fmt('kl', last[f'{s}_kl'])}"
                if f"{s}_rec" in last and f"{s}_kl" in last
                else ""
            )
            cards.append(_card(f"{s} neg_elbo, epoch {last['epoch']}", key, last[key], note, f"last-{s}-neg_elbo"))
    if "train_neg_iwae" in last:
        cards.append(_card(f"train neg_iwae, epoch {last['epoch']}", "train_neg_iwae", last["train_neg_iwae"]))
    seconds = sum(r.get("train_seconds", 0.0) for r in history)
    cards.append(
        _card(
            "training time (seconds)",
            "train_seconds",
            seconds,
            f"{len(history)} epoch{'s' if len(history) != 1 else ''}",
        )
    )
    return '<div class="cards">' + "".join(cards) + "</div>"


EVAL_ROWS = (
    ("bounds", "the bounds below are on"),
    ("neg_elbo", "neg_elbo (nats)"),
    ("neg_elbo_stderr", "\u00b1 standard error"),
    ("rec", "reconstruction"),
    ("kl", "KL"),
    ("nll", "nll, importance sampled"),
    ("nll_stderr", "\u00b1 standard error"),
    ("iw_samples", "importance samples k"),
    ("active_units", "active units"),
    ("n", "points"),
    ("samples", "Monte-Carlo samples of z"),
    ("seed", "seed"),
    ("epoch", "weights of epoch"),
)


def evaluation_section(evaluations: dict[str, dict], stale: Sequence[str] = (), damaged: Sequence[str] = ()) -> str:
    note = ""
    if stale:
        note = (
            '<p class="muted" id="stale-evaluations">Left out, measured on earlier weights of this run: '
            + "; ".join(_e(s) for s in stale)
            + ". Run <code>vaelab evaluate</code> again for these weights.</p>"
        )
    if damaged:
        note += (
            '<p class="muted" id="damaged-evaluations">Left out, damaged: '
            + "; ".join(_e(s) for s in damaged)
            + ". Run <code>vaelab evaluate</code> again to rewrite them.</p>"
        )
    if not evaluations:
        return note + (
            '<p class="muted">No saved evaluation of these weights: run <code>vaelab evaluate RUN --split '
            "test</code> (add <code>--iw-samples</code> for the log-likelihood), then this report again.</p>"
        )
    splits = [s for s in SPLITS if s in evaluations] + sorted(set(evaluations) - set(SPLITS))
    rows = []
    for key, label in EVAL_ROWS:
        if any(key in evaluations[s] for s in splits):
            cells = "".join(_cell(key, evaluations[s].get(key)) for s in splits)
            rows.append(f'<tr><td class="k">{_e(label)}</td>{cells}</tr>')
    # the latent family's own numbers (PosteriorFamily.statistics), e.g. a codebook's usage
    family = sorted({k for s in splits for k in evaluations[s].get("latent_statistics", {})})
    for key in family:
        cells = "".join(_cell(key, evaluations[s].get("latent_statistics", {}).get(key)) for s in splits)
        rows.append(f'<tr><td class="k">{_e(key.replace("_", " "))}</td>{cells}</tr>')
    head = "".join(f"<th>{_e(s)}</th>" for s in splits)
    return (
        f'<table id="evaluation"><thead><tr><th class="k"></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    ) + note


def config_section(config: dict) -> str:
    tables = []
    for section, values in config.items():
        if not isinstance(values, dict):
            continue
        rows = "".join(
            f'<tr><td class="k"><code>{_e(k)}</code></td><td class="k">{_e(json.dumps(v))}</td></tr>'
            for k, v in values.items()
        )
        tables.append(f'<div><h3>[{_e(section)}]</h3><table class="cfg">{rows}</table></div>')
    return '<div class="config">' + "".join(tables) + "</div>"


def picture_html(name: str, path: Path, kind: str) -> str:
    data = base64.b64encode(read_bytes(path, in_run=True)).decode("ascii")  # never a link out of the run
    entry = CAPTIONS.get(name, "")
    caption = entry.get(kind, entry.get(kind.rstrip("0123456789"), "")) if isinstance(entry, dict) else entry
    return (
        f'<section id="picture-{_e(name)}"><h3>{_e(TITLES.get(name, name))}</h3><figure>'
        f'<img src="data:image/png;base64,{data}" alt="{_e(TITLES.get(name, name))}" '
        f'data-file="{_e(path.name)}"><figcaption>{_e(caption)}</figcaption></figure></section>'
    )


def model_summary(config: dict, view: LatentView | None = None) -> str:
    d, m, t = config.get("data", {}), config.get("model", {}), config.get("train", {})
    latent = m.get("latent")
    if view is not None and view.n_vars:
        latent = f"{latent}, {view.n_vars} variables \u00d7 {view.n_classes} classes"
    elif view is not None:
        latent = f"{latent}, {view.dim} dimensions"
    hidden = "-".join(map(str, m.get("hidden", [])))
    return (
        f"{d.get('dataset')} \u00b7 {m.get('network')} {hidden} {m.get('activation')} \u00b7 latent {latent} "
        f"\u00b7 {m.get('likelihood')} likelihood \u00b7 {t.get('objective')} objective, "
        f"{t.get('optimizer')} lr {t.get('lr')}, batch {t.get('batch_size')}"
    )


def render_report(
    title: str,
    config: dict,
    history: list[dict],
    evaluations: dict[str, dict],
    pictures: list[tuple[str, Path]],
    kind: str,
    version: str = "",
    stale: Sequence[str] = (),
    view: LatentView | None = None,
    damaged: Sequence[str] = (),
) -> str:
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    pics = (
        "".join(picture_html(n, p, kind) for n, p in pictures)
        or '<p class="muted">No pictures: run <code>vaelab plot RUN</code>.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} \u2014 vaelab report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{_e(title)}</h1>
<p class="sub">{_e(model_summary(config, view))}</p>
{headline(history)}
<h2>Evaluation</h2>
{evaluation_section(evaluations, stale, damaged)}
<h2>Pictures</h2>
{pics}
<h2>Metrics per epoch</h2>
<p class="muted">From <code>metrics.jsonl</code>; nats per example, lower is better.</p>
{metrics_table(history)}
<h2>Config</h2>
{config_section(config)}
<footer>Written by vaelab {_e(version)} on {_e(now)}. A self-contained page: pictures are embedded,
it needs no network.</footer>
</main>
</body>
</html>
"""


def write_report(path: str | Path, **kw) -> Path:
    path = Path(path)
    atomic_write_text(path, render_report(**kw))
    return path


def report_run(run: str | Path, *, device: str = "auto", data_dir: str | None = None) -> Path:
    """RUN/report.html: one self-contained page with the pictures (drawn first when missing or
    older than the weights), the saved evaluations, the metrics of every epoch and the config."""
    from .. import checkpoint as ckpt
    from ..runs import load_run
    from .pictures import PICTURES, plot_run

    run = Path(run)
    cfg, model = load_run(run, "cpu", data_dir)
    history = ckpt.read_metrics(run)
    weights = run / ckpt.WEIGHTS
    newest = max((p.stat().st_mtime for p in (weights, run / ckpt.METRICS) if p.is_file()), default=0.0)
    wanted = [p for p in PICTURES if p != "prior" or model.prior.images()]  # a prior of images shows them
    stale = [p for p in wanted if not (run / f"{p}.png").is_file() or (run / f"{p}.png").stat().st_mtime < newest]
    if stale == ["curves"] and not history:
        stale = []
    if stale:
        plot_run(run, what=stale, device=device, data_dir=data_dir)
    evaluations, stale, damaged = {}, [], []
    now = ckpt.weights_info(run).get("step")
    for path in sorted(run.glob("evaluation_*.json")):
        saved = _read_evaluation(path)  # a link out of the run is refused; damage is only left out
        if isinstance(saved, str):
            damaged.append(f"{path.name} ({saved})")
            continue
        if saved.get("step") != now:  # measured on other weights: never shown as these weights' figures
            stale.append(
                f"{path.name} (measured at epoch {saved.get('epoch', '?')}; the weights are now those of "
                f"epoch {ckpt.weights_info(run).get('epoch', '?')})"
            )
            continue
        evaluations[path.stem.removeprefix("evaluation_")] = saved
    view = model.latent.view  # how the family shows itself, for the captions
    kind = view.kind + ("2" if view.kind == "continuous" and view.dim == 2 else "")
    pictures = [(p, run / f"{p}.png") for p in wanted if (run / f"{p}.png").is_file()]
    return write_report(
        run / "report.html",
        title=run.resolve().name,
        config=cfg.to_dict(),
        history=history,
        evaluations=evaluations,
        pictures=pictures,
        kind=kind,
        version=_package_version(),
        stale=stale,
        view=view,
        damaged=damaged,
    )


TEXT_KEYS = ("split", "dataset", "bounds")  # every other value of a saved evaluation is a number


def _read_evaluation(path: Path) -> dict | str:
    """A saved `vaelab evaluate` result, or what is wrong with it."""
    try:
        saved = json.loads(_read_text(path, in_run=True))
    except (json.JSONDecodeError, RecursionError):
        return "not JSON"
    if not isinstance(saved, dict):
        return "not a table"
    for key, value in saved.items():
        if key == "latent_statistics":  # a table of the latent family's own numbers
            ok = isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values())
        else:
            ok = isinstance(value, str) if key in TEXT_KEYS else value is None or isinstance(value, (int, float))
        if not ok:
            return f"{key} is {value!r:.40}"
    return saved


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vaelab")
    except PackageNotFoundError:
        return ""

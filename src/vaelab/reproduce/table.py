"""The reproduction table (Markdown, from reproduction.json files; never typed by hand) and the
`--list` of every protocol with how far given directories have got."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import VaelabError
from .protocol import COST_MACHINE, FIGURES, all_protocols
from .run import FORMAT, REPRODUCTION, epochs_done, format_duration, other_settings, read_record, seed_dir


def find_records(paths: Sequence[str | Path]) -> list[dict]:
    """Reproduction records under `paths`: reproduction.json files at any depth, and *.json files
    that are records (the committed copies in reproductions/), one per protocol (the newest)."""
    found: dict[str, dict] = {}
    for root in map(Path, paths):
        if not root.exists():
            raise VaelabError(f"{root} does not exist; give a directory of reproductions or a reproduction.json")
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for path in files:
            if path.name != REPRODUCTION and path.parent.name.startswith("seed-"):
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                if path.name == REPRODUCTION or root.is_file():
                    raise VaelabError(f"{path} is damaged ({e})") from None
                continue
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                if path.name == REPRODUCTION or root.is_file():
                    raise VaelabError(f"{path} is not a vaelab reproduction record")
                continue
            name = record["protocol"]
            if name not in found or record.get("updated", "") > found[name].get("updated", ""):
                found[name] = record
    order = {p.name: i for i, p in enumerate(all_protocols())}
    return sorted(found.values(), key=lambda r: (order.get(r["protocol"], len(order)), r["protocol"]))


def _num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ours(record: dict) -> str:
    if record["value"] is None:
        return "not evaluated yet"
    values = record["values"]
    if len(values) == 1:
        return f"**{record['value']:.2f}** (seed {record['seeds'][0]})"
    each = ", ".join(f"{v:.2f}" for v in values)
    return f"**{record['value']:.2f} ± {record['sd']:.2f}** ({len(values)} seeds: {each})"


def _also(record: dict) -> str:
    parts = []
    for entry in record.get("also", {}).values():
        if entry["value"] is None:
            continue
        sd = f" ± {entry['sd']:.2f}" if entry.get("sd") is not None else ""
        paper = f" (paper {entry['paper_value']:.2f})" if entry.get("paper_value") is not None else ""
        parts.append(f"{entry['metric']['description']} {entry['value']:.2f}{sd}{paper}")
    return "; ".join(parts) or "—"


def _epochs(record: dict) -> str:
    if record["complete"]:
        return f"{record['epochs_total']} (complete)"
    return f"{record['epochs_run']} of {record['epochs_total']} (**incomplete**)"


def markdown_table(records: list[dict]) -> str:
    """One row per protocol: the paper's number beside ours, the gap, how much ran, its cost and
    the command that made it."""
    head = [
        "protocol",
        "paper",
        "metric",
        "paper's",
        "ours (mean ± sd)",
        "gap",
        "also measured",
        "epochs",
        "wall time, machine",
        "command",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        p = r["paper"]
        paper = f"{p['authors']} ({p['year']}), {p['where']}, row {p['row']}, column {p['column']}"
        gap = "—" if r["value"] is None or r["paper_value"] is None else f"{r['value'] - r['paper_value']:+.2f}"
        metric = f"{r['metric']['description']}; {r['binarization']}"
        cost = f"{format_duration(r['wall_seconds'])}, {r['machine']}"
        cells = [
            f"`{r['protocol']}`",
            paper,
            metric,
            _num(r["paper_value"]),
            _ours(r),
            gap,
            _also(r),
            _epochs(r),
            cost,
            f"`{r['command']}`",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _progress_of(outs: list[Path], protocol) -> str:
    """How far the protocol has got in the first of `outs` made with its current settings (a
    folder kept from before the protocol changed is named only when no other is)."""
    cells = [_progress(out, protocol) for out in outs]
    return next((text for own, text in cells if own), cells[0][1])


def _progress(out: Path, protocol) -> tuple[bool, str]:
    """(whether the folder's runs were made with the protocol's settings, how far it has got)."""
    try:
        record = read_record(out)
    except VaelabError as e:
        return False, f"unreadable ({e})"
    if record is None:
        return True, "not started"
    seeds = [s["seed"] for s in record.get("per_seed", [])] or list(protocol.seeds)
    try:
        changed = sorted({k for s in seeds for k in other_settings(seed_dir(out, s), protocol.config(s))})
    except VaelabError as e:
        return False, f"unreadable ({e})"
    if changed:
        return False, f"made with other settings than the protocol's ({', '.join(changed)})  ({out})"
    done = [epochs_done(seed_dir(out, s)) for s in seeds]
    total = protocol.epochs * len(seeds)
    state = "complete" if record["complete"] else f"{sum(done)} of {total} epochs"
    value = f", {record['value']:.2f}" if record["value"] is not None else ""
    return True, f"{state}{value}  ({out})"


def list_protocols(outs: Sequence[str | Path] = ()) -> str:
    """Every protocol with its paper, number, metric, epochs and CPU cost; with `outs`
    (reproduction directories, or folders holding them), how far each has got."""
    where: dict[str, list[Path]] = {}
    for root in map(Path, outs):
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        for d in candidates:
            try:
                record = read_record(d)
            except VaelabError:
                continue
            if record is not None:
                where.setdefault(record["protocol"], []).append(d)
    rows = [("protocol", "reproduces", "paper's", "metric", "epochs", "CPU s/epoch", "CPU total", "progress")]
    for p in all_protocols():
        c = p.citation
        cost = p.cpu_seconds_per_epoch
        total = format_duration(cost * p.epochs * len(p.seeds)) if cost else "?"
        seeds = f" x {len(p.seeds)} seeds" if len(p.seeds) > 1 else ""
        rows.append(
            (
                p.name,
                f"{c.short()}, {c.row}, {c.column}",
                _num(p.paper_value),
                p.metric.describe(),
                f"{p.epochs}{seeds}",
                f"{cost:g}" if cost else "?",  # as declared: 0.14 for Frey Face, not 0.1
                total,
                _progress_of(where[p.name], p) if p.name in where else ("" if not outs else "not found"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
    figs = "\n".join(
        f"  {f.name}: {f.citation.authors} ({f.citation.year}), {f.citation.where}; runs {', '.join(f.members)}"
        for f in FIGURES.values()
    )
    return (
        text + f"\n\nCPU s/epoch: an epoch's training and the bound it ends with, on {COST_MACHINE} "
        "(benchmarks/bench_protocols.py); a running `vaelab reproduce` prints its own time left."
        + ("\n\nFigures (vaelab reproduce FIGURE --out DIR runs every member, then draws it):\n" + figs if figs else "")
        + "\n"
    )


README_START, README_END = "<!-- reproductions:start -->", "<!-- reproductions:end -->"
NOTHING_YET = "No reproduction has finished yet."


def readme_table(records_dir: str | Path) -> str:
    """What the README shows between its reproduction markers: the table of `records_dir`."""
    records = find_records([records_dir]) if Path(records_dir).is_dir() else []
    return markdown_table(records).strip() if records else NOTHING_YET


def update_readme(readme: str | Path, records_dir: str | Path) -> None:
    """Replace the README's table with the one generated from `records_dir`."""
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise VaelabError(f"{path} has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(f"{head}{README_START}\n{readme_table(records_dir)}\n{README_END}{tail}")

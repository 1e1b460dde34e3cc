"""`vaelab reproduce`: published protocols run to their end, evaluated as the paper did, and
shown beside the paper's numbers.

    protocol   what a protocol is (Citation, Metric, Protocol) and its registry
    protocols  the declarations: one per published number, each citing its paper, table and row
    run        running one to its end, resumably, and writing DIR/reproduction.json
    figures    figures drawn from several protocols' runs (the AEVB paper's Figures 2 and 4)
    table      the Markdown table of reproduction.json files, and `--list`
"""

from __future__ import annotations

from pathlib import Path

from .figures import FIGURES, Figure, register_figure, run_figure
from .protocol import PROTOCOLS, Citation, Metric, Protocol, all_protocols, get_protocol, register_protocol
from .run import read_record, reproduce
from .table import find_records, list_protocols, markdown_table


def run_named(name: str, out: str | Path, **kw):
    """Run a protocol, or every member of a figure and then the figure."""
    from . import protocols  # noqa: F401 - fills the registries
    if name in FIGURES:
        return run_figure(name, out, **kw)
    return reproduce(name, out, **kw)


__all__ = ["FIGURES", "PROTOCOLS", "Citation", "Figure", "Metric", "Protocol", "all_protocols", "find_records",
           "get_protocol", "list_protocols", "markdown_table", "read_record", "register_figure",
           "register_protocol", "reproduce", "run_figure", "run_named"]

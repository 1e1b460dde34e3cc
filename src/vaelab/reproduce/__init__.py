"""`vaelab reproduce`: published protocols run to their end, evaluated as the paper did, and
shown beside the paper's numbers.

    protocol   what a protocol and a reproduced figure are, and their registries
    protocols  the declarations: one per published number, each citing its paper, table and row
    run        running one to its end, resumably, and writing DIR/reproduction.json; figures
    figures    drawing figures from several protocols' runs (the AEVB paper's Figures 2 and 4)
    table      the Markdown table of reproduction.json files, and `--list`
"""

from __future__ import annotations

from . import protocols  # noqa: F401 - the declarations fill the registries
from .protocol import (
    FIGURES,
    PROTOCOLS,
    Citation,
    Figure,
    Metric,
    Protocol,
    all_protocols,
    get_protocol,
    register_figure,
    register_protocol,
)
from .run import read_record, reproduce, run_figure, run_named
from .table import find_records, list_protocols, markdown_table

__all__ = [
    "FIGURES",
    "PROTOCOLS",
    "Citation",
    "Figure",
    "Metric",
    "Protocol",
    "all_protocols",
    "find_records",
    "get_protocol",
    "list_protocols",
    "markdown_table",
    "read_record",
    "register_figure",
    "register_protocol",
    "reproduce",
    "run_figure",
    "run_named",
]

"""``--once``: one snapshot to stdout, for scripts, cron and status bars. No Textual here."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.table import Table

from metrics_protocol.figures import SCHEMA
from metrics_protocol.schema import Schema
from metrics_protocol.wire import Metrics, encode_data, format_timestamp
from metrics_tui import formatting


def render_table(m: Metrics, schema: Schema = SCHEMA) -> Table:
    """The snapshot as a compact table: a block per card, its title and accent on the first
    row, labels in lower case, alert figures in red while non-zero."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("group", style="bold")
    table.add_column("metric", style="dim")
    table.add_column("value", justify="right", style="bold")
    for card in schema.cards:
        rows = [
            (f, v) for f in schema.card_figures(card.id) if (v := schema.value(m, f)) is not None
        ]
        for i, (f, v) in enumerate(rows):
            style = "red" if f.alert and v else card.accent if i == 0 else None
            text = formatting.BY_KIND[f.kind](v)
            table.add_row(card.title if i == 0 else "", f.labels[0].lower(), text, style=style)
    return table


def print_snapshot(m: Metrics, *, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        out.write(encode_data(m) + "\n")
        out.flush()
    else:
        console = Console(file=out, highlight=False)
        # A line of its own: as a table title it would wrap at the table's narrow width.
        console.print(f"metrics at {format_timestamp(m.timestamp)}", style="dim")
        console.print(render_table(m))

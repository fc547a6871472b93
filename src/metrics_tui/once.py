"""``--once``: one snapshot to stdout, for scripts, cron and status bars. No Textual here."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.table import Table

from metrics_protocol.wire import Metrics, encode_data, format_timestamp
from metrics_tui import formatting


def render_table(m: Metrics) -> Table:
    """The snapshot as a compact two-column table per group."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("group", style="bold")
    table.add_column("metric", style="dim")
    table.add_column("value", justify="right", style="bold")
    if m.revenue is not None:
        r = m.revenue
        table.add_row("Revenue", "total", formatting.money(r.total), style="green")
        table.add_row("", "today", formatting.money(r.today))
        table.add_row("", "this week", formatting.money(r.this_week))
        table.add_row("", "this month", formatting.money(r.this_month))
    if m.active_users is not None:
        a = m.active_users
        table.add_row("Active users", "current", formatting.count(a.current), style="blue")
        table.add_row("", "today", formatting.count(a.today))
        table.add_row("", "peak 24h", formatting.count(a.peak24h))
    if m.transactions is not None:
        t = m.transactions
        table.add_row("Transactions", "total", formatting.count(t.total), style="yellow")
        table.add_row("", "pending", formatting.count(t.pending))
        table.add_row("", "completed", formatting.count(t.completed))
        table.add_row("", "failed", formatting.count(t.failed), style="red" if t.failed else None)
    if m.content is not None:
        c = m.content
        table.add_row("Content", "views", formatting.count(c.total_views), style="magenta")
        table.add_row("", "purchases", formatting.count(c.total_purchases))
        table.add_row("", "conversion", formatting.percent(c.conversion_rate))
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

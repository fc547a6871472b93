"""The figure table: everything derives from it, and one new row shows up everywhere."""

from __future__ import annotations

import ast
import dataclasses
import io
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from textual.app import App, ComposeResult

from bench._common import big_metrics
from metrics_protocol import wire as p
from metrics_protocol.figures import CARDS, CSV_COLUMNS, FIGURES, SCHEMA
from metrics_protocol.schema import COUNT, MONEY, PERCENT, Card, Figure, Rate, Schema
from metrics_server.core import Rollups, plan_batch
from metrics_server.events import parse_batch
from metrics_tui.once import render_table
from metrics_tui.widgets.cards import MetricCard, card_values, metric_cards

SRC = Path(__file__).resolve().parents[1] / "src"


def big() -> p.Metrics:
    """The figures of the fan-out bench's message: every field wide."""
    return big_metrics()


# What the hand-written encoder (metrics_server/protocol.py, before the table) wrote for big().
FROZEN_METRICS = (
    '{"type":"metrics","kind":"interval","data":{"revenue":{"total":98765432109.87,'
    '"today":123456789.01,"thisWeek":876543210.98,"thisMonth":3456789012.34},'
    '"activeUsers":{"current":1234567,"today":98765432,"peak24h":2345678},'
    '"transactions":{"total":987654321,"pending":12345,"completed":975000000,'
    '"failed":12641976},"content":{"totalViews":9876543210,"totalPurchases":975000000,'
    '"conversionRate":9.87},"timestamp":"2025-11-04T10:30:00.123Z"}}'
)
FROZEN_SELECTION = (
    '{"content":{"totalViews":9876543210,"totalPurchases":975000000,"conversionRate":9.87},'
    '"activeUsers":{"current":1234567,"today":98765432,"peak24h":2345678},'
    '"timestamp":"2025-11-04T10:30:00.123Z"}'
)
FROZEN_HISTORY = (
    '{"type":"history","interval":5,"data":[{"transactions":{"total":987654321,'
    '"pending":12345,"completed":975000000,"failed":12641976},'
    '"timestamp":"2025-11-04T10:30:00.123Z"}]}'
)


def test_encoder_output_is_byte_identical_to_the_hand_written_one() -> None:
    assert p.encode_metrics(big(), "interval") == FROZEN_METRICS
    assert p.encode_data(big(), ("content", "activeUsers")) == FROZEN_SELECTION
    assert p.encode_data(big(), iter(["content", "activeUsers"])) == FROZEN_SELECTION
    assert p.encode_history([big()], ("transactions",), 5) == FROZEN_HISTORY
    assert p.decode_data(p.loads(FROZEN_METRICS)["data"]) == big()


def test_attribute_api_and_generated_classes() -> None:
    m = big()
    assert m.revenue.this_week == Decimal("876543210.98")
    assert m.active_users.peak24h == 2_345_678
    assert m.content.conversion_rate == Decimal("9.87")
    assert [f.name for f in dataclasses.fields(p.Metrics)] == [
        "timestamp",
        "revenue",
        "active_users",
        "transactions",
        "content",
    ]
    assert p.Metrics(timestamp=m.timestamp).revenue is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.revenue.total = Decimal(0)  # type: ignore[misc]
    assert not hasattr(m.revenue, "__dict__")  # slots
    assert p.Revenue.__module__ == "metrics_protocol.figures"


def test_csv_columns() -> None:
    assert CSV_COLUMNS == (
        "timestamp",
        "revenue.total",
        "revenue.today",
        "revenue.thisWeek",
        "revenue.thisMonth",
        "activeUsers.current",
        "activeUsers.today",
        "activeUsers.peak24h",
        "transactions.total",
        "transactions.pending",
        "transactions.completed",
        "transactions.failed",
        "content.totalViews",
        "content.totalPurchases",
        "content.conversionRate",
    )
    row = SCHEMA.csv_row(big())
    assert len(row) == len(CSV_COLUMNS)
    assert row[:3] == ["2025-11-04T10:30:00.123Z", "98765432109.87", "123456789.01"]
    assert row[-1] == "9.87"
    half = dataclasses.replace(big(), revenue=None)
    assert SCHEMA.csv_row(half)[1:5] == ["", "", "", ""]


def test_rollups_provide_every_quantity_the_table_reads() -> None:
    quantities = Rollups("UTC").quantities(1_764_000_000.0)
    assert SCHEMA.sources() <= set(quantities)
    assert all(type(v) is int for v in quantities.values())


def test_each_wire_key_is_written_in_one_file_under_src() -> None:
    """The table is the only place that spells a figure's wire key (words such as "total" or
    "pending" are also statuses and labels; the check covers the keys that are not words)."""
    keys = {f.key for f in FIGURES} | {f.group for f in FIGURES}
    keys = {k for k in keys if k != k.lower() or any(ch.isdigit() for ch in k)}
    assert {"thisWeek", "peak24h", "conversionRate", "activeUsers"} <= keys
    found: dict[str, set[str]] = {k: set() for k in keys}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for k in keys:
                    if k in node.value:
                        found[k].add(str(path.relative_to(SRC)))
    # Range points have keys of their own (wire.RANGE_FIELDS, named in issue 11), spelled in
    # wire.py; "activeUsers" is one of them.
    table, ranges = {"metrics_protocol/figures.py"}, {"metrics_protocol/wire.py"}
    assert found == {k: table | ranges if k in p.RANGE_FIELDS else table for k in keys}


# --------------------------------------------------------------------------- a new figure

FAILURE_RATE = Figure(
    "transactions",
    "failureRate",
    PERCENT,
    ("Failure rate", "Failed %", "F%"),
    "transactions",
    Rate("txn_failed", "txn_total"),
    alert=True,
)


def _rollups_with_failures(now: float) -> Rollups:
    """Three transactions: two completed, one failed."""
    events = [
        {"type": "transaction", "id": f"t{i}", "status": status, "amount": "10.00"}
        for i, status in enumerate(["completed", "completed", "failed"])
    ]
    r = Rollups("UTC")
    r.apply(plan_batch(parse_batch(events, now), {}), now)
    return r


class _Cards(App[None]):
    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema

    def compose(self) -> ComposeResult:
        yield from metric_cards(self.schema)


async def test_a_new_figure_appears_everywhere_from_one_row() -> None:
    """One row added to a copy of the table: the server computes it, the wire carries it, the
    decoder reads it, a card and --once show it, and the CSV has its column."""
    schema = Schema((*FIGURES, FAILURE_RATE), CARDS)
    now = 1_764_000_000.0
    m = _rollups_with_failures(now).snapshot(now, schema)
    assert m.transactions.failure_rate == Decimal("33.33")
    assert m.transactions.failed == 1

    text = schema.encode_data(m)
    assert '"failed":1,"failureRate":33.33}' in text
    assert schema.decode_data(p.loads(text)) == m
    assert schema.decode_data(p.loads(text)).transactions.failure_rate == Decimal("33.33")
    with pytest.raises(p.ProtocolError, match="failureRate"):
        schema.decode_data(p.loads(text.replace('"failureRate":33.33', '"failureRate":"x"')))
    # The default table knows nothing of it.
    assert "failureRate" not in SCHEMA.encode_data(SCHEMA.decode_data(p.loads(text)))

    assert schema.csv_columns()[-1] == "transactions.failureRate"
    assert schema.csv_row(m)[-1] == "33.33"

    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(render_table(m, schema))
    assert "failure rate" in out.getvalue() and "33.33%" in out.getvalue()

    app = _Cards(schema)
    async with app.run_test(size=(60, 30)) as pilot:
        card = app.query_one("#transactions", MetricCard)
        card.set_values(card_values(m, schema)["transactions"], animate=False)
        await pilot.pause()
        lines = card.render().plain.splitlines()
        assert lines[-1].startswith("Failure rate") and lines[-1].endswith("33.33%")
        assert len(lines) == 5


# --------------------------------------------------------------------------- bad tables


def _figure(**change: object) -> Figure:
    return dataclasses.replace(FIGURES[0], **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "cards", "message"),
    [
        (_figure(), CARDS, "declared twice"),
        (_figure(key="this_week"), CARDS, "declared twice"),  # the attribute of thisWeek
        (_figure(key='a"b'), CARDS, "not an ASCII identifier"),
        (_figure(key="class"), CARDS, "not an ASCII identifier"),
        (_figure(group="timestamp", card="users"), CARDS, "timestamp"),
        (_figure(key="rate", kind=PERCENT), CARDS, "Rate"),
        (_figure(key="rate", kind=MONEY, source=Rate("a", "b")), CARDS, "Rate"),
        (_figure(key="rate", kind="ratio"), CARDS, "unknown kind"),
        (_figure(key="other", card="nowhere"), CARDS, "no card"),
        (_figure(key="other", labels=()), CARDS, "no label"),
        (_figure(group="other", kind=COUNT), CARDS, "row key"),  # revenue.total and other.total
        (_figure(key="other"), (*CARDS, Card("empty", "Empty", "red")), "without figures"),
        (_figure(key="other"), (*CARDS, CARDS[0]), "repeat"),
    ],
)
def test_a_bad_table_is_refused_with_the_row_at_fault(
    extra: Figure, cards: tuple[Card, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Schema((*FIGURES, extra), cards)

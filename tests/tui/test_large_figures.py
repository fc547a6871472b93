"""Large figures: every card row keeps its label and its value on one line, at every size.

Revenue runs from $0 to the largest sum the store can hold (2^63-1 cents); a figure is exact
where it fits and compact (``$12.35M``) where it does not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from textual.geometry import Region

from metrics_protocol.wire import ActiveUsers, Content, Metrics, Revenue, Transactions
from metrics_tui.app import MetricsApp
from metrics_tui.formatting import compact_count, compact_money, count, money
from metrics_tui.messages import ConnectionChanged, ConnState, MetricsUpdated, Status
from metrics_tui.widgets.cards import MetricCard

INT64 = 2**63 - 1
#: The largest revenue the store holds: 2^63-1 cents.
MAX_REVENUE = Decimal(INT64).scaleb(-2)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0", "$0.00"),
        ("0.07", "$0.07"),
        ("999.99", "$999.99"),  # under $1,000 the exact figure is already short
        ("1000", "$1.000K"),
        ("1234.56", "$1.235K"),  # half up
        ("99994.99", "$99.99K"),
        ("99995.00", "$100.0K"),  # a carry into a new digit keeps 4 significant digits
        ("9999.50", "$10.00K"),
        ("999949.99", "$999.9K"),
        ("999950.00", "$1.000M"),  # rounding up across a unit: never "$1000K"
        ("999999.99", "$1.000M"),
        ("12345678.90", "$12.35M"),
        ("987600000.00", "$987.6M"),
        ("999999999.99", "$1.000B"),
        ("100000001125.50", "$100.0B"),
        ("1234567890123.45", "$1.235T"),
        (str(MAX_REVENUE), "$92.23Q"),
        ("-1234567", "-$1.235M"),
    ],
)
def test_compact_money(value: str, text: str) -> None:
    assert compact_money(Decimal(value)) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1.000K"),
        (1_234_567, "1.235M"),
        (999_500, "999.5K"),
        (999_950, "1.000M"),
        (999_999_999, "1.000B"),
        (INT64, "9,223Q"),  # past the last unit the whole number grows
    ],
)
def test_compact_count(value: int, text: str) -> None:
    assert compact_count(value) == text


def test_compact_floats_for_chart_axes() -> None:
    assert compact_money(1_250_000.0) == "$1.250M"
    assert compact_money(0.1) == "$0.10"


#: Revenue from nothing to the store's bound, with a count of a like size for the other cards.
MAGNITUDES: list[tuple[Decimal, int]] = [
    (Decimal("0.00"), 0),
    (Decimal("999.99"), 999),
    (Decimal("125000.50"), 5_420),
    (Decimal("12345678.90"), 1_234_567),
    (Decimal("987654321.09"), 98_765_432),
    (Decimal("1000000000.00"), 1_000_000_000),  # one transaction at the per-transaction maximum
    (Decimal("100000001125.50"), 12_345_678_901),
    (MAX_REVENUE, INT64),
]

WIDTHS = sorted({*range(40, 201, 8), 79, 80, 99, 100, 200})
HEIGHTS = sorted({*range(15, 61, 5), 60})


def metrics(revenue: Decimal, n: int) -> Metrics:
    return Metrics(
        timestamp=datetime(2025, 11, 4, 10, 30, tzinfo=UTC),
        revenue=Revenue(revenue, (revenue / 10).quantize(Decimal("0.01")), revenue / 2, revenue),
        active_users=ActiveUsers(n, n, n),
        transactions=Transactions(n, n // 3, n // 2, n // 7),
        content=Content(n, n // 3, Decimal("33.33")),
    )


def card_rows(app: MetricsApp) -> list[tuple[MetricCard, list[str]]]:
    """The text each card draws inside its border, one string per line.

    Read from the card's rendered strips (what the compositor places on screen), not from the
    screen as a whole, which would also render the charts each time.
    """
    out = []
    for card in app.screen.query(MetricCard):
        outer, box = card.region, card.content_region
        strips = card.render_lines(Region(0, 0, outer.width, outer.height))
        x = box.x - outer.x
        lines = [strips[y - outer.y].text[x : x + box.width] for y in range(box.y, box.bottom)]
        out.append((card, lines))
    return out


def check_cards(app: MetricsApp, size: tuple[int, int]) -> None:
    for card, lines in card_rows(app):
        assert len(lines) >= len(card.rows), (size, card.id, lines)
        for row, line in zip(card.rows, lines, strict=False):
            where = (size, card.id, row.key, line)
            label = next((lb for lb in row.labels if line.startswith(lb + " ")), None)
            assert label is not None, where
            words = line[len(label) :].split()
            if row.pulse:
                assert words[-1] == "●", where
                words = words[:-1]
            assert len(words) == 1, where  # the value, whole, on this line
            value = card.shown[row.key]
            forms = {row.fmt(value)}
            if row.compact is not None:
                forms.add(row.compact(value))
            assert words[0] in forms, where


def sizes() -> list[tuple[tuple[int, int], bool]]:
    """(size, every magnitude?) for a grid of widths and heights, at about 90 ms a resize.

    Every width at the smallest height, where the cards have the least room, with every
    magnitude; and at one of the other heights in turn with the largest figures, so that each
    height is seen at two or three widths. A card's width depends on the terminal's width only.
    """
    out = []
    for i, width in enumerate(WIDTHS):
        other = HEIGHTS[1 + i % (len(HEIGHTS) - 1)]
        out += [((width, HEIGHTS[0]), True), ((width, other), False)]
    return out


async def test_every_row_keeps_its_label_and_value_at_every_size() -> None:
    app = MetricsApp("ws://127.0.0.1:1/ws/metrics", animate=False, connect=False)
    async with app.run_test(size=(WIDTHS[0], HEIGHTS[0])) as pilot:
        app.post_message(ConnectionChanged(Status(ConnState.LIVE)))
        for size, every in sizes():
            await pilot.resize_terminal(*size)
            for revenue, n in MAGNITUDES if every else MAGNITUDES[-3:]:
                # The handler itself, not a posted message: a pause per figure would cost
                # 20 ms each, and the compositor already reads the updated cards.
                app.on_metrics_updated(MetricsUpdated(metrics(revenue, n), "change", 5.0))
                check_cards(app, size)


async def test_exact_where_it_fits() -> None:
    """Wide cards show the exact figure; at 80 columns the ones that fit stay exact too."""
    big = Metrics(
        timestamp=datetime(2025, 11, 4, 10, 30, tzinfo=UTC),
        revenue=Revenue(
            Decimal("12345678.90"), Decimal("15550.75"), Decimal("30590.25"), Decimal("87330.60")
        ),
        active_users=ActiveUsers(1_234_567, 1_250, 89),
    )
    app = MetricsApp("ws://127.0.0.1:1/ws/metrics", animate=False, connect=False)
    async with app.run_test(size=(200, 40)) as pilot:
        app.post_message(MetricsUpdated(big, "change", 5.0))
        await pilot.pause()
        text = "\n".join(" ".join(lines) for _, lines in card_rows(app))
        assert money(Decimal("12345678.90")) in text and count(1_234_567) in text
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        rows = dict((card.id, lines) for card, lines in card_rows(app))
        assert [line.split() for line in rows["revenue"]] == [
            ["Total", "$12.35M"],  # the case: "$12,345,678.90" left no room for "Total"
            ["Today", "$15,550.75"],
            ["Week", "$30,590.25"],
            ["Month", "$87,330.60"],
        ]
        # An exact figure with a short label beats a compact one with a long label.
        assert rows["users"][0].split() == ["Now", "1,234,567", "●"]


def test_once_prints_the_exact_figures() -> None:
    """``--once`` has room for every digit: no compact figure there, even at the bound."""
    import io

    from metrics_tui.once import print_snapshot

    out = io.StringIO()
    print_snapshot(metrics(MAX_REVENUE, INT64), as_json=False, out=out)
    assert "$92,233,720,368,547,758.07" in out.getvalue()
    assert "9,223,372,036,854,775,807" in out.getvalue()
    assert "Q" not in out.getvalue()  # no compact unit

"""The figures of a metrics snapshot, declared once.

Each row says where a figure travels (its group and wire key), what it is (money, count or
percent), how the monitor labels it and on which card, and which quantity of the server's
rollups it is. The snapshot classes, the encoder and decoder, the server's snapshot, the
monitor's cards and ``--once`` table and the CSV columns all derive from this table: adding a
figure is one row here (and a quantity in ``Rollups.quantities`` if it counts something new).
"""

from __future__ import annotations

from .schema import COUNT, MONEY, PERCENT, Card, Figure, Rate, Schema

CARDS = (
    Card("revenue", "Revenue", accent="green", count_up=True),
    Card("users", "Active users", accent="blue"),
    Card("transactions", "Transactions", accent="yellow"),
    Card("content", "Content", accent="magenta"),
)

# fmt: off
FIGURES = (
    # group, wire key, kind, card labels (long to short), card, rollups quantity, options
    Figure("revenue", "total", MONEY, ("Total", "Total", "Tot"), "revenue", "revenue_cents"),
    Figure("revenue", "today", MONEY, ("Today", "Today", "Day"), "revenue", "revenue_today_cents"),
    Figure("revenue", "thisWeek", MONEY, ("This week", "Week", "Wk"), "revenue", "revenue_week_cents"),
    Figure("revenue", "thisMonth", MONEY, ("This month", "Month", "Mo"), "revenue", "revenue_month_cents"),
    Figure("activeUsers", "current", COUNT, ("Current", "Current", "Now"), "users", "users_active", pulse=True),
    Figure("activeUsers", "today", COUNT, ("Today", "Today", "Day"), "users", "users_today"),
    Figure("activeUsers", "peak24h", COUNT, ("Peak 24h", "Peak", "Pk"), "users", "users_peak_24h"),
    Figure("transactions", "total", COUNT, ("Total", "Total", "Tot"), "transactions", "txn_total"),
    Figure("transactions", "pending", COUNT, ("Pending", "Pending", "Pend"), "transactions", "txn_pending"),
    Figure("transactions", "completed", COUNT, ("Completed", "Done"), "transactions", "txn_completed"),
    Figure("transactions", "failed", COUNT, ("Failed", "Failed", "Fail"), "transactions", "txn_failed", alert=True),
    Figure("content", "totalViews", COUNT, ("Views", "Views", "Vw"), "content", "views"),
    Figure("content", "totalPurchases", COUNT, ("Purchases", "Bought", "Buys"), "content", "txn_completed"),
    Figure("content", "conversionRate", PERCENT, ("Conversion", "Conv", "Cv"), "content", Rate("txn_completed", "views")),
)
# fmt: on

SCHEMA = Schema(FIGURES, CARDS, module=__name__)

# The generated snapshot classes, under the names both programs use.
Metrics = SCHEMA.metrics
Revenue = SCHEMA.group_class("revenue")
ActiveUsers = SCHEMA.group_class("activeUsers")
Transactions = SCHEMA.group_class("transactions")
Content = SCHEMA.group_class("content")

#: The header of a CSV export of snapshots (rows: ``SCHEMA.csv_row(m)``).
CSV_COLUMNS = SCHEMA.csv_columns()

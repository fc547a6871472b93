"""Number and time formatting for the cards, the status line and ``--once``."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from metrics_protocol.schema import COUNT, MONEY, PERCENT

CENT = Decimal("0.01")


def money(value: Decimal | float, currency: str = "$") -> str:
    """``$125,000.50``: exact two decimals from a Decimal."""
    value = Decimal(value) if not isinstance(value, Decimal) else value
    q = value.quantize(CENT, rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    return f"{sign}{currency}{abs(q):,.2f}"


def count(value: int | float | Decimal) -> str:
    """``5,420``."""
    return f"{int(value):,}"


def percent(value: Decimal | float) -> str:
    """``4.30%``: conversion rate as sent (already a percentage)."""
    value = Decimal(value) if not isinstance(value, Decimal) else value
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):.2f}%"


#: How a figure of each kind reads on a card and in ``--once``.
BY_KIND: dict[str, Callable[[Any], str]] = {MONEY: money, COUNT: count, PERCENT: percent}


def compact_money(value: Decimal | float, currency: str = "$") -> str:
    """``$1.25M`` for tight spaces such as chart titles."""
    v = float(value)
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= limit:
            return f"{currency}{v / limit:.2f}{suffix}"
    return f"{currency}{v:,.2f}"


def axis_money(value: Decimal | float, currency: str = "$") -> str:
    """Chart labels: whole units up to millions (``$69,250``), compact beyond (``$1.25M``)."""
    v = float(value)
    if abs(v) >= 1e6:
        return compact_money(v, currency)
    if abs(v) >= 100:
        return f"{currency}{v:,.0f}"
    return f"{currency}{v:,.2f}"


def age(seconds: float) -> str:
    """``3s``, ``4m05s``, ``2h07m``, ``3d04h``: how long ago the last update came."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def interval(seconds: float) -> str:
    """``5s`` or ``0.5s``."""
    return f"{seconds:g}s"

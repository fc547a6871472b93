"""Timestamps over the whole range ``datetime`` allows, in the most extreme zones, through the
service and a real SQLite file: each event is refused with a clear error (nothing stored) or
accepted and counted, and the store always loads again, with the same figures."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from metrics_protocol.wire import loads
from metrics_server.events import EventError
from metrics_server.service import MetricsService
from metrics_server.store import SQLiteStore

#: 2026-01-01T00:02:00Z: the 5 minutes ahead cross a new year in UTC, and it is already
#: 14:02 in Kiritimati and still 12:02 on 2025-12-31 in Etc/GMT+12.
NOW = 1_767_225_720.0
SERVER_ZONES = ["Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu", "America/New_York", "UTC"]
OFFSETS = [
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=5, minutes=45)),
    timezone(timedelta(minutes=1)),
    timezone(-timedelta(hours=23, minutes=59)),  # the widest offsets ISO 8601 text can carry
    timezone(timedelta(hours=23, minutes=59)),
    UTC,
    *(ZoneInfo(z) for z in SERVER_ZONES),
]
WINDOW_START = datetime(2000, 1, 1, tzinfo=UTC).timestamp()

iso = st.datetimes(datetime.min, datetime.max, timezones=st.sampled_from(OFFSETS)).map(
    lambda d: d.isoformat()
)
# Near the edges of the window, where the off-by-ones live, as ISO text or epoch numbers.
near = st.floats(WINDOW_START - 86400, WINDOW_START + 86400) | st.floats(NOW - 3 * 86400, NOW + 600)
near_iso = st.tuples(near, st.sampled_from(OFFSETS)).map(
    lambda t: datetime.fromtimestamp(t[0], t[1]).isoformat()
)
# Epoch numbers as JSON text, read the way the server reads the wire (floats as Decimal).
epoch_text = (
    st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | near.map(repr)
    | st.sampled_from(
        [
            "-62135596800",  # 0001-01-01T00:00:00Z
            "253402300799",  # 9999-12-31T23:59:59Z
            "253402300800",
            "946684799.999999999999999999999",
            "946684800",
            "1e308",
            "-1e999999999",
            "1e999999999",
            "4e-320",
            "-0",
            "1" + "0" * 400,
        ]
    )
)
TIMESTAMP = iso | near_iso | epoch_text.map(loads) | near


def figures(service: MetricsService) -> tuple:
    m = service.get_metrics()
    return (m.revenue, m.active_users, m.transactions, m.content)


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def scenario(db: Path, zone: str, stamps: list[Any], other_zone: str) -> None:
    service = MetricsService(SQLiteStore(db), tz=zone, clock=lambda: NOW)
    await service.start()
    accepted, cents = 0, 0
    for i, ts in enumerate(stamps):
        batch = [
            {"type": "user_activity", "userId": f"u{i}", "ts": ts},
            {"type": "transaction", "id": f"t{i}", "status": "completed", "amount": "1.25"},
        ]
        batch[1]["ts"] = ts
        before, stored = figures(service), service.store.event_count()
        try:
            assert await service.ingest(batch) == 2
        except EventError as exc:
            assert exc.index == 0 and exc.message.startswith("'ts'"), exc.message
            assert "2000-01-01T00:00:00Z" in exc.message or "finite" in exc.message
            assert figures(service) == before and service.store.event_count() == stored
        else:
            accepted += 1
            cents += 125
            assert service.store.event_count() == stored + 2
    m = service.get_metrics()
    assert m.transactions is not None and m.revenue is not None
    assert m.transactions.completed == accepted
    assert m.revenue.total == Decimal(cents) / 100
    before = figures(service)
    await service.close()

    warnings = Warnings()
    log = logging.getLogger("metrics_server")
    log.addHandler(warnings)
    try:
        again = MetricsService(SQLiteStore(db), tz=zone, clock=lambda: NOW)
        await again.start()  # a restart: it must load
        assert figures(again) == before
        await again.close()
        elsewhere = MetricsService(SQLiteStore(db), tz=other_zone, clock=lambda: NOW)
        await elsewhere.start()  # and in any other zone too
        assert figures(elsewhere)[2] == before[2]
        await elsewhere.close()
    finally:
        log.removeHandler(warnings)
    assert warnings.lines == []  # nothing stored that a start-up has to skip


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    zone=st.sampled_from(SERVER_ZONES),
    other_zone=st.sampled_from(SERVER_ZONES),
    stamps=st.lists(TIMESTAMP, min_size=1, max_size=5),
)
# The issue's: year 1 at +00:01 has no day in UTC; Go's zero time has none in New York.
@example(zone="UTC", other_zone="UTC", stamps=["0001-01-01T00:00:00+00:01"])
@example(zone="America/New_York", other_zone="UTC", stamps=["0001-01-01T00:00:00Z"])
@example(zone="Etc/GMT+12", other_zone="Pacific/Kiritimati", stamps=["9999-12-31T23:59:59+14:00"])
@example(zone="UTC", other_zone="UTC", stamps=["1969-12-31T23:59:59Z", NOW + 300, NOW])
def test_any_timestamp_is_refused_or_counted_and_the_store_loads_again(
    zone: str, other_zone: str, stamps: list[Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "m.db", zone, stamps, other_zone))


async def test_a_stored_batch_is_acknowledged_even_if_the_live_figures_cannot_take_it(
    tmp_path: Path, caplog
) -> None:
    """Defence in depth: plan_batch checks what could fail in the rollups, but if applying
    still raised, the batch is on disk, so it must be acknowledged (a retry would count it
    twice) and the failure logged; a restart then rebuilds the figures from the store."""
    db = tmp_path / "m.db"
    service = MetricsService(SQLiteStore(db), clock=lambda: NOW)
    await service.start()

    def broken(*_args: object) -> None:
        raise OverflowError("date value out of range")

    service.rollups.apply = broken  # type: ignore[method-assign]
    txn = {"type": "transaction", "id": "t", "status": "completed", "amount": "5.00"}
    with caplog.at_level(logging.ERROR, logger="metrics_server"):
        assert await service.ingest([txn]) == 1
    assert "could not be added to the live figures" in caplog.text
    assert service.store.event_count() == 1
    await service.close()
    again = MetricsService(SQLiteStore(db), clock=lambda: NOW)
    await again.start()
    assert figures(again)[0].total == Decimal("5.00")
    await again.close()

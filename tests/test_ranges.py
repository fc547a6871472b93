"""Figures over date ranges, checked against a brute-force recomputation from the raw events:
every field of every bucket, for every step, in zones with DST and with +05:45 and +12:45
offsets, around DST changes, month ends and ISO-week year boundaries. The rollups go through the
real path: plan_batch, the calendar's delta, the SQLite store's transaction, its rows read back.

The store tests run on each store (the ``stores`` fixture: SQLite, and a PostgreSQL schema of
their own), and PostgreSQL's rows must equal SQLite's.

The oracle finds bucket boundaries on its own: by scanning the window quarter-hour by quarter-hour
for the instants where the local date (1d), ISO week (1w) or month (1mo) changes or the local
clock shows minute 0 (1h), and by UTC arithmetic for 1m, 5m and 15m.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_protocol import wire
from metrics_server.core import Rollups, plan_batch, txn_ids
from metrics_server.events import (
    ContentView,
    Event,
    EventError,
    TransactionEvent,
    UserActivity,
)
from metrics_server.ranges import Calendar, RangeError, RangeQuery, query_values
from metrics_server.store import SQLiteStore
from pg_service import Stores

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Australia/Lord_Howe",  # a half-hour DST change
    "UTC",
]
#: Local times, read in each zone: DST changes (Paris, New York, Chatham), month ends (a leap
#: day), and ISO-week year boundaries (2020 and 2026 have 53 weeks).
ANCHORS = [
    datetime(2026, 3, 29, 2, 30),  # Paris springs forward at 02:00
    datetime(2026, 10, 25, 2, 30),  # Paris falls back: 02:00-03:00 twice
    datetime(2026, 3, 8, 2, 30),  # New York springs forward
    datetime(2026, 11, 1, 1, 30),  # New York falls back: 01:00-02:00 twice
    datetime(2026, 4, 5, 3, 0),  # Chatham falls back at 03:45
    datetime(2026, 9, 27, 2, 45),  # Chatham springs forward at 02:45
    datetime(2024, 2, 29, 23, 59),  # a leap day, then March
    datetime(2026, 1, 31, 23, 30),  # January into February
    datetime(2020, 12, 31, 23, 0),  # 2020-W53 runs to Sunday 2021-01-03
    datetime(2027, 1, 3, 23, 30),  # Sunday of 2026-W53, then 2027-W01
]
#: How far events and ranges reach from the anchor, per step (seconds).
REACH = {
    "1m": 3 * 3600,
    "5m": 10 * 3600,
    "15m": 30 * 3600,
    "1h": 4 * 86400,
    "1d": 25 * 86400,
    "1w": 70 * 86400,
    "1mo": 200 * 86400,
}
LONGEST = {"1m": 60, "5m": 300, "15m": 900, "1h": 7200, "1d": 2 * 86400}
LONGEST |= {"1w": 8 * 86400, "1mo": 32 * 86400}


# --------------------------------------------------------------------------- the oracle


def _key(step: str, ts: int, tz: ZoneInfo) -> object:
    lt = datetime.fromtimestamp(ts, tz)
    if step == "1h":
        return ts if lt.minute == 0 else None  # a new key at every minute 0
    if step == "1d":
        return lt.date()
    if step == "1w":
        return lt.isocalendar()[:2]
    return lt.year, lt.month


@functools.cache
def boundaries(zone: str, step: str, lo: int, hi: int) -> tuple[int, ...]:
    """Bucket starts in [lo, hi], found by scanning (every zone here changes offset on a
    quarter-hour), or by UTC arithmetic for the minute steps."""
    size = {"1m": 60, "5m": 300, "15m": 900}.get(step)
    if size is not None:
        return tuple(range(lo - lo % size, hi + 1, size))
    tz = ZoneInfo(zone)
    q = lo - lo % 900
    out, prev = [], _key(step, q, tz)
    while q <= hi:
        q += 900
        k = _key(step, q, tz)
        if k != prev and k is not None:
            out.append(q)
        prev = k
    return tuple(out)


def brute_force(
    accepted: list[Event],
    samples: dict[int, int],
    starts: list[int],
    after_last: int,
) -> list[dict[str, object]]:
    """Every point's figures from the accepted events, the obvious way."""
    edges = [*starts, after_last]

    def bucket(ts: float) -> int | None:
        i = bisect.bisect_right(edges, ts) - 1
        return i if 0 <= i < len(starts) else None

    pts = [
        {
            "revenue": 0,
            "completed": 0,
            "failed": 0,
            "started": 0,
            "views": 0,
            "users": set(),
            "peak": None,
        }
        for _ in starts
    ]
    status: dict[str, str] = {}
    amount: dict[str, int] = {}
    for e in accepted:
        b = bucket(e.ts)
        if b is not None and e.user_id is not None:
            pts[b]["users"].add(e.user_id)  # type: ignore[attr-defined]
        if isinstance(e, ContentView):
            if b is not None:
                pts[b]["views"] += 1  # type: ignore[operator]
        elif isinstance(e, TransactionEvent):
            before = status.get(e.txn_id)
            if before is None:
                amount[e.txn_id] = e.amount_cents  # type: ignore[assignment]
                if b is not None:
                    pts[b]["started"] += 1  # type: ignore[operator]
            if before is None or (before == "pending" and e.status != "pending"):
                status[e.txn_id] = e.status
                if b is not None and e.status != "pending":
                    pts[b][e.status] += 1  # type: ignore[operator]
                    if e.status == "completed":
                        pts[b]["revenue"] += amount[e.txn_id]  # type: ignore[operator]
    for minute, value in samples.items():
        b = bucket(minute * 60)
        if b is not None:
            peak = pts[b]["peak"]
            pts[b]["peak"] = value if peak is None else max(peak, value)  # type: ignore[call-overload]
    return [
        {
            "start": s,
            "revenue": Decimal(p["revenue"]) / 100,  # type: ignore[arg-type]
            "completed": p["completed"],
            "failed": p["failed"],
            "started": p["started"],
            "views": p["views"],
            "activeUsers": len(p["users"]),  # type: ignore[arg-type]
            "peakCurrent": p["peak"],
        }
        for s, p in zip(starts, pts, strict=True)
    ]


def as_rows(answer: wire.Range) -> list[dict[str, object]]:
    return [
        {
            "start": int(pt.start.timestamp()),
            "revenue": pt.revenue,
            "completed": pt.completed,
            "failed": pt.failed,
            "started": pt.started,
            "views": pt.views,
            "activeUsers": pt.active_users,
            "peakCurrent": pt.peak_current,
        }
        for pt in answer.points
    ]


# --------------------------------------------------------------------------- the system

_names = itertools.count()


@contextlib.contextmanager
def range_store(stores: Stores) -> Iterator[Any]:
    """A new, empty store of the kit's kind (SQLite in memory; a PostgreSQL schema of its
    own, dropped after), closed at the end."""
    if stores.kind == "sqlite":
        store: Any = SQLiteStore(":memory:")
    else:
        name = f"r{next(_names)}"
        store = stores.open(name)
    try:
        yield store
    finally:
        store.close()
        if stores.kind != "sqlite":
            stores.drop(name)


def execute(store: Any, sql: str) -> None:
    """A statement on the store's database, beside the store (a test's surgery)."""
    if isinstance(store, SQLiteStore):
        store._db.execute(sql)
        return
    with store._conn() as conn:
        conn.execute(sql)


def ingest(store: Any, calendar: Calendar, groups: list[list[list[Event]]]) -> list[Event]:
    """Each group is planned and committed in one atomic() scope, as the service's group
    commit does; a batch with a bad transition is refused alone. Returns the accepted events
    in order."""
    accepted: list[Event] = []
    for group in groups:
        with store.atomic():
            planned: dict = {}
            plans = []
            for events in group:
                ids = txn_ids(events)
                known = dict(store.get_transactions(ids.difference(planned)))
                known.update((i, planned[i]) for i in ids if i in planned)
                try:
                    plan = plan_batch(events, known)
                except EventError:
                    continue
                plan.ranges = calendar.delta(plan)
                planned.update(plan.txns)
                plans.append(plan)
                accepted.extend(events)
            store.commit_many(plans)
    return accepted


def event_specs(lo: int, hi: int, edges: tuple[int, ...]) -> st.SearchStrategy:
    when = st.one_of(
        st.integers(lo, hi).map(float),
        st.floats(lo, hi, allow_nan=False),
        # On a boundary, just either side of it, and a minute or two into its bucket (a user
        # seen in a bucket's first minute and again later in it counts once).
        st.tuples(
            st.sampled_from(edges),
            st.sampled_from([-61.0, -1.0, -0.001, 0.0, 0.5, 59.999, 60.0, 150.0]),
        ).map(lambda p: p[0] + p[1]),
    )
    return st.tuples(
        st.sampled_from(["user", "view", "txn", "txn"]),
        st.integers(0, 4),  # user
        st.integers(0, 5),  # txn id
        st.sampled_from(["pending", "completed", "failed"]),
        st.sampled_from([None, 0, 1, 999, 125_050]),
        when,
        st.booleans(),  # has a user
    )


def make_event(spec: tuple) -> Event:
    kind, user, ident, status, cents, ts, has_user = spec
    uid = f"u{user}" if has_user else None
    if kind == "user":
        return UserActivity(f"u{user}", ts)
    if kind == "view":
        return ContentView(f"c{ident}", uid, ts)
    return TransactionEvent(f"t{ident}", status, cents, uid, None, ts)


def iso(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()


_BRUTE = given(data=st.data(), zone=st.sampled_from(ZONES), anchor=st.sampled_from(ANCHORS))
_SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.mark.parametrize("stores", ["sqlite"], indirect=True)
@pytest.mark.parametrize("step", wire.RANGE_STEPS)
@settings(max_examples=40, deadline=None, suppress_health_check=_SLOW)
@_BRUTE
def test_every_field_of_every_bucket_matches_brute_force(
    stores: Stores, step: str, data: st.DataObject, zone: str, anchor: datetime
) -> None:
    every_field_of_every_bucket(stores, step, data, zone, anchor)


@pytest.mark.parametrize("stores", ["postgres"], indirect=True)
@pytest.mark.parametrize("step", wire.RANGE_STEPS)
@settings(max_examples=25, deadline=None, suppress_health_check=_SLOW)
@_BRUTE
def test_every_field_of_every_bucket_matches_brute_force_on_postgres(
    stores: Stores, step: str, data: st.DataObject, zone: str, anchor: datetime
) -> None:
    """The same on PostgreSQL, with fewer examples: each needs a schema of its own (its
    migrations and connections take about as long as the rest of an example)."""
    every_field_of_every_bucket(stores, step, data, zone, anchor)


def every_field_of_every_bucket(
    stores: Stores, step: str, data: st.DataObject, zone: str, anchor: datetime
) -> None:
    tz = ZoneInfo(zone)
    mid = int(anchor.replace(tzinfo=tz).timestamp())
    reach = REACH[step]
    lo, hi = mid - reach, mid + reach
    edges = boundaries(zone, step, lo - LONGEST[step], hi + 3 * LONGEST[step])
    near = tuple(e for e in edges if lo <= e <= hi) or (mid,)
    specs = event_specs(lo, hi, near)
    groups = data.draw(
        st.lists(
            st.lists(st.lists(specs, min_size=1, max_size=6), min_size=1, max_size=3),
            min_size=1,
            max_size=8,
        ),
        label="groups of batches",
    )
    mode = data.draw(st.sampled_from(["live", "cold cache", "other zone", "from events"]))
    samples = data.draw(
        st.dictionaries(st.integers(lo // 60, hi // 60), st.integers(0, 50), max_size=6),
        label="peak samples",
    )
    calendar = Calendar(tz)
    built_for = Calendar("Asia/Kolkata") if mode == "other zone" else calendar
    with range_store(stores) as store:
        store.prepare_ranges(built_for)
        accepted: list[Event] = []
        for n, group in enumerate(groups):
            accepted += ingest(store, built_for, [[[make_event(s) for s in b] for b in group]])
            if mode == "cold cache" and n % 2:
                store._recent.clear()  # as after a restart: the users are only in the table
        peaks = sorted(samples.items())
        store.save_sample(peaks, None, None, 0, built_for.peaks(peaks))
        if mode == "other zone":  # --tz changed: the zone's steps are rebuilt
            assert "rebuilt" in (store.prepare_ranges(calendar) or "")
        elif mode == "from events":  # a database from before the range rollups
            execute(store, "DELETE FROM range_buckets")
            execute(store, "DELETE FROM user_minutes")
            execute(store, "DELETE FROM meta WHERE key = 'ranges_tz'")
            store.prepare_ranges(calendar)
            newest = max(samples, default=0)  # the peaks table keeps 24 h of samples
            samples = {m: v for m, v in samples.items() if m > newest - 24 * 60}

        start = data.draw(st.one_of(st.integers(lo, hi), st.sampled_from(near)), label="from")
        end = data.draw(st.integers(start + 1, hi + LONGEST[step]), label="to")
        query = calendar.parse({"from": iso(start, tz), "to": iso(end, tz), "step": step})
        rows = store.range_rows(step, query.starts[0], query.starts[-1])
    answer = calendar.answer(query, rows)

    first = edges[bisect.bisect_right(edges, start) - 1]
    starts = [e for e in edges if first <= e < end]
    after = edges[bisect.bisect_right(edges, starts[-1])]
    assert list(query.starts) == starts
    assert as_rows(answer) == brute_force(accepted, samples, starts, after)
    assert all(
        pt.start.utcoffset() == datetime.fromtimestamp(s, tz).utcoffset()
        for pt, s in zip(answer.points, starts, strict=True)
    )


# --------------------------------------------------------------------------- against live figures


@settings(max_examples=30, deadline=None, suppress_health_check=_SLOW)
@given(
    zone=st.sampled_from(ZONES),
    month=st.sampled_from([(2026, 3), (2026, 10), (2026, 11), (2024, 2), (2026, 12)]),
    sales=st.lists(st.tuples(st.floats(-2, 33), st.integers(1, 10**6)), min_size=1, max_size=30),
)
def test_daily_revenue_over_a_month_adds_up_to_the_live_month(
    stores: Stores, zone: str, month: tuple[int, int], sales: list[tuple[float, int]]
) -> None:
    """The 1d points of a month sum to the snapshot's thisMonth at the month's last instant,
    and to the month's 1mo point."""
    tz = ZoneInfo(zone)
    year, mo = month
    first = datetime(year, mo, 1, tzinfo=tz)
    after = datetime(year + mo // 12, mo % 12 + 1, 1, tzinfo=tz)
    events: list[Event] = [
        TransactionEvent(f"t{i}", "completed", cents, None, None, first.timestamp() + day * 86400)
        for i, (day, cents) in enumerate(sales)
    ]
    calendar, live = Calendar(tz), Rollups(tz)
    plan = plan_batch(events, {})
    plan.ranges = calendar.delta(plan)
    now = after.timestamp() - 0.001
    live.apply(plan, now)
    snapshot = live.snapshot(now)
    assert snapshot.revenue is not None

    with range_store(stores) as store:
        store.prepare_ranges(calendar)
        store.commit_many([plan])

        def points(step: str) -> list[wire.RangePoint]:
            q = calendar.parse({"from": first.isoformat(), "to": after.isoformat(), "step": step})
            rows = store.range_rows(step, q.starts[0], q.starts[-1])
            return list(calendar.answer(q, rows).points)

        days = points("1d")
        months = points("1mo")
    assert len(days) == (after.date() - first.date()).days
    assert sum(p.revenue for p in days) == snapshot.revenue.this_month
    assert [p.revenue for p in months] == [snapshot.revenue.this_month]


# --------------------------------------------------------------------------- the calendar


def test_every_zone_offset_since_2000_is_a_multiple_of_15_minutes() -> None:
    """Why 1m, 5m and 15m can be UTC buckets in every zone (and a zone's hour and day are
    whole UTC quarter-hours): sampled every 9 days and 5 hours (so every season and hour of
    the day comes round) from 2000 to 2038."""
    lo = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
    hi = int(datetime(2038, 1, 1, tzinfo=UTC).timestamp())
    odd = []
    for name in sorted(available_timezones()):
        tz = ZoneInfo(name)
        times = range(lo, hi, 9 * 86400 + 5 * 3600)
        offsets = {datetime.fromtimestamp(t, tz).utcoffset() for t in times}
        odd += [(name, o) for o in offsets if o is not None and o.total_seconds() % 900]
    assert odd == []


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Paris", (2026, 3, 29), 23),
        ("Europe/Paris", (2026, 10, 25), 25),
        ("America/New_York", (2026, 3, 8), 23),
        ("America/New_York", (2026, 11, 1), 25),
        ("Pacific/Chatham", (2026, 4, 5), 25),
        ("Asia/Kathmandu", (2026, 4, 5), 24),
    ],
)
def test_a_day_across_a_dst_change_is_23_or_25_hours(
    zone: str, day: tuple[int, int, int], hours: int
) -> None:
    cal = Calendar(zone)
    start = cal.floor("1d", datetime(*day, 12, tzinfo=ZoneInfo(zone)).timestamp())
    assert cal.following("1d", start) - start == hours * 3600
    hourly = cal.starts("1h", start, cal.following("1d", start))
    assert len(hourly) == hours
    assert all(b - a == 3600 for a, b in itertools.pairwise(hourly))


def test_new_york_repeats_1am_as_two_hours_and_kathmandu_hours_start_at_quarter_past() -> None:
    ny = Calendar("America/New_York")
    tz = ZoneInfo("America/New_York")
    day = ny.floor("1d", datetime(2026, 11, 1, 12, tzinfo=tz).timestamp())
    labels = [
        datetime.fromtimestamp(s, tz).isoformat() for s in ny.starts("1h", day, day + 4 * 3600)
    ]
    assert labels[:4] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    ktm = Calendar("Asia/Kathmandu")
    assert all(s % 3600 == 15 * 60 for s in ktm.starts("1h", 1_767_000_000, 1_767_100_000))


def test_lord_howe_half_hour_change_makes_a_90_minute_hour() -> None:
    """+11 -> +10:30 at 02:00 on 2026-04-05: the clock shows 01:30 again, and the next minute
    0 is 02:00 at +10:30, 90 minutes after 01:00 at +11."""
    cal, tz = Calendar("Australia/Lord_Howe"), ZoneInfo("Australia/Lord_Howe")
    day = cal.floor("1d", datetime(2026, 4, 5, 12, tzinfo=tz).timestamp())
    hours = cal.starts("1h", day, cal.following("1d", day))
    lengths = [b - a for a, b in zip(hours, [*hours[1:], cal.following("1d", day)], strict=True)]
    assert sorted(set(lengths)) == [3600, 5400] and sum(lengths) == 24.5 * 3600


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    cal, tz = Calendar("Pacific/Chatham"), ZoneInfo("Pacific/Chatham")
    t = datetime(2021, 1, 2, 15, tzinfo=tz).timestamp()  # Saturday of 2020-W53
    assert datetime.fromtimestamp(cal.floor("1w", t), tz).isoformat() == "2020-12-28T00:00:00+13:45"
    assert (
        datetime.fromtimestamp(cal.floor("1mo", t), tz).isoformat() == "2021-01-01T00:00:00+13:45"
    )
    assert cal.following("1mo", cal.floor("1mo", t)) - cal.floor("1mo", t) == 31 * 86400


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("values", "parameter", "words"),
    [
        ({"to": "2026-11-02", "step": "1d"}, "from", "'from' is required"),
        ({"from": "2026-11-01", "step": "1d"}, "to", "'to' is required"),
        ({"from": "2026-11-01", "to": "2026-11-02"}, "step", "'step' is required"),
        ({"from": "2026-11-02", "to": "2026-11-01", "step": "1d"}, "from", "must be before 'to'"),
        ({"from": "2026-11-01", "to": "2026-11-01", "step": "1d"}, "from", "must be before"),
        ({"from": "2026-11-01", "to": "2026-11-02", "step": "2d"}, "step", "unknown step '2d'"),
        (
            {"from": "2026-11-01", "to": "2026-11-02", "step": "1M"},
            "step",
            "1m 5m 15m 1h 1d 1w 1mo",
        ),
        ({"from": "2026-13-01", "to": "2026-11-02", "step": "1d"}, "from", "not an ISO 8601"),
        ({"from": "yesterday", "to": "2026-11-02", "step": "1d"}, "from", "not an ISO 8601"),
        (
            {"from": "2026-11-01", "to": "2026-11-02T00:00+25:00", "step": "1d"},
            "to",
            "bad UTC offset",
        ),
        (
            {"from": "2026-11-01[Mars/Olympus]", "to": "2026-11-02", "step": "1d"},
            "from",
            "unknown time zone",
        ),
        ({"from": "1969-12-31", "to": "2026-11-02", "step": "1d"}, "from", "from 1970-01-01"),
        ({"from": "2026-11-01", "to": "9999-06-01", "step": "1mo"}, "to", "before 9999-01-01"),
        (
            {"from": "2026-11-01", "to": "2026-11-05", "step": "1m"},
            "step",
            "more than 5,000 points",
        ),
        (
            {"from": "2000-01-01", "to": "9000-01-01", "step": "1m"},
            "step",
            "more than 5,000 points",
        ),
        ({"from": 20261101, "to": "2026-11-02", "step": "1d"}, "from", "must be a string"),
        ({"from": "2026-11-01", "to": "2026-11-02", "step": ["1d"]}, "step", "unknown step"),
    ],
)
def test_bad_requests_name_the_parameter(values: dict, parameter: str, words: str) -> None:
    with pytest.raises(RangeError) as err:
        Calendar("Europe/Paris").parse(values)
    assert err.value.parameter == parameter
    assert words in err.value.message


def test_format_is_checked_on_http_only() -> None:
    cal = Calendar("UTC")
    good = {"from": "2026-11-01", "to": "2026-11-02", "step": "1h"}
    assert cal.parse({**good, "format": "csv"}, http=True).fmt == "csv"
    assert cal.parse({**good, "format": "xml"}).fmt == "json"  # the socket has no format
    with pytest.raises(RangeError) as err:
        cal.parse({**good, "format": "xml"}, http=True)
    assert err.value.parameter == "format"


def test_times_without_an_offset_are_read_in_the_zone() -> None:
    cal, tz = Calendar("Europe/Paris"), ZoneInfo("Europe/Paris")
    q = cal.parse({"from": "2026-10-25", "to": "2026-10-26T00:00", "step": "1h"})
    assert q.start == datetime(2026, 10, 25, tzinfo=tz).timestamp()
    assert len(q.starts) == 25  # the day Paris falls back
    q = cal.parse(
        {"from": "2026-10-25T00:00:00Z", "to": "2026-10-25T12:00[Asia/Tokyo]", "step": "1h"}
    )
    assert q.start == datetime(2026, 10, 25, tzinfo=UTC).timestamp()
    assert q.end == datetime(2026, 10, 25, 3, tzinfo=UTC).timestamp()
    # A time in the spring-forward gap is read with the offset before the change.
    q = cal.parse({"from": "2026-03-29T02:30", "to": "2026-03-29T05:00", "step": "1h"})
    assert q.start == datetime(2026, 3, 29, 1, 30, tzinfo=UTC).timestamp()


def test_buckets_start_at_the_boundary_at_or_before_from_and_to_is_exclusive() -> None:
    cal = Calendar("UTC")
    q = cal.parse({"from": "2026-11-01T10:07", "to": "2026-11-01T11:00", "step": "15m"})
    assert [datetime.fromtimestamp(s, UTC).strftime("%H:%M") for s in q.starts] == [
        "10:00",
        "10:15",
        "10:30",
        "10:45",
    ]
    q = cal.parse({"from": "2026-11-01T10:07", "to": "2026-11-01T11:00:01", "step": "15m"})
    assert len(q.starts) == 5
    assert (
        len(cal.parse({"from": "2026-01-01", "to": "2026-01-04T11:20", "step": "1m"}).starts)
        == 5000
    )


def test_query_values_keep_an_unencoded_plus_and_refuse_repeats() -> None:
    assert query_values("from=2026-11-01T00:00+01:00&to=x%2B1&token=t")["from"] == (
        "2026-11-01T00:00+01:00"
    )
    assert query_values("to=x%2B1")["to"] == "x+1"
    with pytest.raises(RangeError) as err:
        query_values("step=1d&step=1h")
    assert err.value.parameter == "step"


# --------------------------------------------------------------------------- the wire shapes


def test_range_round_trips_through_json_and_csv() -> None:
    tz = ZoneInfo("Asia/Kathmandu")
    pts = (
        wire.RangePoint(
            datetime(2026, 11, 2, tzinfo=tz), Decimal("1234.50"), 12, 1, 14, 3400, 211, 57
        ),
        wire.RangePoint(datetime(2026, 11, 3, tzinfo=tz), Decimal("0.00"), 0, 0, 0, 0, 0, None),
    )
    r = wire.Range(pts[0].start, datetime(2026, 11, 4, tzinfo=tz), "1d", "Asia/Kathmandu", pts)
    text = wire.encode_range(r, id="q1")
    assert text.startswith('{"type":"range","id":"q1","from":"2026-11-02T00:00:00+05:45"')
    assert '"revenue":1234.50,' in text and '"revenue":0.00,' in text
    assert '"peakCurrent":null' in text and "approx" not in text
    assert wire.decode_range(wire.loads(text)) == r
    csv_text = wire.range_csv(r)
    assert csv_text.splitlines() == [
        "start,revenue,completed,failed,started,views,activeUsers,peakCurrent",
        "2026-11-02T00:00:00+05:45,1234.50,12,1,14,3400,211,57",
        "2026-11-03T00:00:00+05:45,0.00,0,0,0,0,0,",
    ]
    assert wire.range_filename(r) == "metrics_2026-11-02_2026-11-04_1d.csv"


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu"])
def test_a_user_counts_once_per_bucket_whatever_order_the_minutes_come_in(
    stores: Stores, zone: str
) -> None:
    """One user seen in the last minute of a 15-minute bucket, the first, a middle one and the
    last of the next, and the first of the one after, in every order: one batch each with the
    memory of recent minutes dropped (so every pair goes through the stored neighbours), or
    split into two batches (several new minutes of the user in one write). A user of their own
    per order, in one store: after n orders every bucket holds n times one user's count."""
    tz = ZoneInfo(zone)
    calendar = Calendar(tz)
    q = calendar.floor("1d", datetime(2026, 5, 4, 12, tzinfo=tz).timestamp())  # a midnight
    minutes = [q - 60, q, q + 420, q + 840, q + 900]
    want = {}
    for step in wire.RANGE_STEPS:
        starts = calendar.starts(step, q - 3600, q + 3600)
        after = calendar.following(step, starts[-1])
        events = [UserActivity("u", float(t)) for t in minutes]
        want[step] = [p["activeUsers"] for p in brute_force(events, {}, starts, after)]
    with range_store(stores) as store:
        store.prepare_ranges(calendar)
        for n, order in enumerate(itertools.permutations(minutes)):
            events = [UserActivity(f"u{n}", float(t)) for t in order]
            split = n // 2 % 4 + 1  # 1 to 4 events in the first of two batches
            batches = [[e] for e in events] if n % 2 else [events[:split], events[split:]]
            for batch in batches:
                store._recent.clear()
                ingest(store, calendar, [[batch]])
            for step in wire.RANGE_STEPS:
                starts = calendar.starts(step, q - 3600, q + 3600)
                rows = store.range_rows(step, starts[0], starts[-1])
                got = calendar.answer(RangeQuery(q - 3600, q + 3600, step, tuple(starts)), rows)
                assert [p.active_users for p in got.points] == [(n + 1) * w for w in want[step]], (
                    step,
                    order,
                )

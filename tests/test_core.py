"""The metric definitions, checked against a brute-force recomputation over random event streams,
and at the period boundaries where off-by-one errors live."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_server.core import Rollups, TxnRecord, plan_batch, txn_ids
from metrics_server.events import (
    ContentView,
    Event,
    EventError,
    TransactionEvent,
    UserActivity,
    parse_batch,
)

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Adelaide",  # +09:30 / +10:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Kiritimati",  # +14:00
]


class FakeStore:
    """The transaction table, as the store would answer get_transactions."""

    def __init__(self) -> None:
        self.txns: dict[str, TxnRecord] = {}

    def ingest(self, rollups: Rollups, events: list[Event], now: float) -> bool:
        known = {i: self.txns[i] for i in txn_ids(events) if i in self.txns}
        try:
            plan = plan_batch(events, known)
        except EventError:
            return False
        self.txns.update(plan.txns)
        rollups.apply(plan, now)
        return True


def brute_force(accepted: list[Event], now: float, tz: ZoneInfo) -> dict[str, object]:
    """Recompute every figure from the full list of accepted events, the obvious way."""
    status: dict[str, str] = {}
    amount: dict[str, int] = {}
    completed_at: dict[str, float] = {}
    for e in accepted:
        if isinstance(e, TransactionEvent):
            if e.txn_id not in status:
                amount[e.txn_id] = e.amount_cents  # type: ignore[assignment]
            status[e.txn_id] = e.status
            if e.status == "completed" and e.txn_id not in completed_at:
                completed_at[e.txn_id] = e.ts
    local = datetime.fromtimestamp(now, tz)
    today = local.date()

    def in_period(ts: float, start: datetime, end: datetime) -> bool:
        return start <= datetime.fromtimestamp(ts, tz) < end

    day_start = datetime(today.year, today.month, today.day, tzinfo=tz)
    week_start = day_start - timedelta(days=today.weekday())
    week_start = datetime(week_start.year, week_start.month, week_start.day, tzinfo=tz)
    month_start = datetime(today.year, today.month, 1, tzinfo=tz)
    next_month = datetime(today.year + (today.month == 12), today.month % 12 + 1, 1, tzinfo=tz)

    def revenue(start: datetime, end: datetime) -> Decimal:
        cents = sum(
            amount[t]
            for t, s in status.items()
            if s == "completed" and in_period(completed_at[t], start, end)
        )
        return Decimal(cents) / 100

    far = datetime(9999, 1, 1, tzinfo=tz)
    users_at = [(e.user_id, e.ts) for e in accepted if e.user_id is not None]
    views = sum(isinstance(e, ContentView) for e in accepted)
    completed = sum(s == "completed" for s in status.values())
    midnight = day_start.timestamp()
    return {
        "total": Decimal(sum(amount[t] for t, s in status.items() if s == "completed")) / 100,
        "today": revenue(day_start, far),
        "week": revenue(week_start, far),
        "month": revenue(month_start, next_month),
        "current": len({u for u, ts in users_at if ts > now - 300}),
        "users_today": len({u for u, ts in users_at if ts >= midnight}),
        "txn_total": len(status),
        "pending": sum(s == "pending" for s in status.values()),
        "completed": completed,
        "failed": sum(s == "failed" for s in status.values()),
        "views": views,
        "rate": (
            (Decimal(completed) * 100 / views).quantize(Decimal("0.01")) if views else Decimal("0")
        ),
    }


def figures(rollups: Rollups, now: float) -> dict[str, object]:
    m = rollups.snapshot(now)
    assert m.revenue and m.active_users and m.transactions and m.content
    return {
        "total": m.revenue.total,
        "today": m.revenue.today,
        "week": m.revenue.this_week,
        "month": m.revenue.this_month,
        "current": m.active_users.current,
        "users_today": m.active_users.today,
        "txn_total": m.transactions.total,
        "pending": m.transactions.pending,
        "completed": m.transactions.completed,
        "failed": m.transactions.failed,
        "views": m.content.total_views,
        "rate": m.content.conversion_rate,
    }


# An event stream: times are offsets back from "now", weighted towards the last minutes so that
# the 5-minute window and today's boundary both see traffic.
offsets = st.one_of(
    st.floats(0, 600),
    st.floats(0, 3 * 86400),
    st.floats(0, 40 * 86400),
)
event_specs = st.tuples(
    st.sampled_from(["user", "view", "txn"]),
    st.integers(0, 15),  # user
    st.integers(0, 5),  # content / txn id
    st.sampled_from(["pending", "completed", "failed"]),
    st.sampled_from([None, 0, 1, 999, 1250, 10**6]),  # amount in cents
    offsets,
    st.booleans(),  # has a user
)


def make_event(spec: tuple, now: float) -> Event:
    kind, user, ident, status, cents, back, has_user = spec
    ts = now - back
    uid = f"u{user}" if has_user else None
    if kind == "user":
        return UserActivity(f"u{user}", ts)
    if kind == "view":
        return ContentView(f"c{ident}", uid, ts)
    return TransactionEvent(f"t{ident}", status, cents, uid, None, ts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.lists(event_specs, min_size=1, max_size=8), min_size=1, max_size=12),
    zone=st.sampled_from(ZONES),
    now=st.floats(1.7e9, 1.8e9),
)
def test_every_figure_matches_brute_force(batches: list, zone: str, now: float) -> None:
    tz = ZoneInfo(zone)
    rollups = Rollups(tz)
    store = FakeStore()
    accepted: list[Event] = []
    for specs in batches:
        events = [make_event(s, now) for s in specs]
        if store.ingest(rollups, events, now):
            accepted.extend(events)
    assert figures(rollups, now) == brute_force(accepted, now, tz)


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(event_specs, min_size=1, max_size=8), min_size=1, max_size=8),
    zone=st.sampled_from(ZONES),
    later=st.floats(0, 3 * 86400),
)
def test_figures_follow_the_clock(batches: list, zone: str, later: float) -> None:
    """Windows slide and days roll over as time passes, with no new events."""
    tz = ZoneInfo(zone)
    now = 1_767_000_000.0
    rollups, store, accepted = Rollups(tz), FakeStore(), []
    for specs in batches:
        events = [make_event(s, now) for s in specs]
        if store.ingest(rollups, events, now):
            accepted.extend(events)
    rollups.snapshot(now)
    assert figures(rollups, now + later) == brute_force(accepted, now + later, tz)


def test_rebuilt_rollups_equal_live_ones() -> None:
    """What a store keeps (counters, buckets, users' last-seen, peaks) rebuilds the same figures."""
    tz = ZoneInfo("Asia/Kathmandu")
    now = 1_767_000_000.0
    live, store = Rollups(tz), FakeStore()
    buckets: dict[int, int] = {}
    users: dict[str, float] = {}
    counters: dict[str, int] = {}
    for i in range(200):
        batch = [
            UserActivity(f"u{i % 37}", now - (i * 997) % 90000),
            ContentView(f"c{i % 5}", f"u{i % 11}", now - i * 3.0),
            TransactionEvent(f"t{i}", "pending", 100 + i, f"u{i % 7}", None, now - i * 301.0),
            TransactionEvent(
                f"t{i}", ("completed", "failed")[i % 4 == 0], None, None, None, now - i * 300.0
            ),
        ]
        known = {t: store.txns[t] for t in txn_ids(batch) if t in store.txns}
        plan = plan_batch(batch, known)
        store.txns.update(plan.txns)
        live.apply(plan, now)
        for b, c in plan.revenue_buckets.items():
            buckets[b] = buckets.get(b, 0) + c
        for u, ts in plan.users.items():
            users[u] = max(ts, users.get(u, ts))
        for k, v in plan.counters.as_dict().items():
            counters[k] = counters.get(k, 0) + v
    live.sample_peak(now - 60)
    rebuilt = Rollups(tz)
    rebuilt.load(counters, buckets.items(), users.items(), live.peaks.items(), now)
    assert rebuilt.snapshot(now) == live.snapshot(now)


# ---------------------------------------------------------------- transactions


def txn(tid: str, status: str, cents: int | None = None, ts: float = 1e9) -> TransactionEvent:
    return TransactionEvent(tid, status, cents, None, None, ts)


def test_transitions() -> None:
    known = {"p": TxnRecord("pending", 500), "c": TxnRecord("completed", 500)}
    plan = plan_batch([txn("p", "completed")], known)
    assert plan.txns["p"] == TxnRecord("completed", 500)
    assert (plan.counters.pending, plan.counters.completed, plan.counters.revenue_cents) == (
        -1,
        1,
        500,
    )
    plan = plan_batch([txn("p", "failed", 500)], known)
    assert (plan.counters.pending, plan.counters.failed, plan.counters.revenue_cents) == (-1, 1, 0)
    # Repeating the current status is a no-op, for retries.
    plan = plan_batch([txn("c", "completed"), txn("c", "completed", 500)], known)
    assert plan.txns == {} and plan.counters.as_dict() == dict.fromkeys(plan.counters.as_dict(), 0)
    # Within one batch: new, then completed.
    plan = plan_batch([txn("n", "pending", 250), txn("n", "completed")], {})
    assert plan.counters.txn_total == 1 and plan.counters.completed == 1
    assert plan.counters.pending == 0 and plan.counters.revenue_cents == 250


@pytest.mark.parametrize(
    ("events", "index", "words"),
    [
        ([txn("c", "failed")], 0, "cannot move from completed to failed"),
        ([txn("c", "pending")], 0, "cannot move from completed to pending"),
        ([txn("p", "completed"), txn("p", "pending")], 1, "from completed to pending"),
        ([txn("p", "completed", 501)], 0, "has amount 5.00, not 5.01"),
        ([txn("x", "pending"), txn("new", "pending")], 0, "'amount' is required"),
        ([txn("ok", "pending", 1), txn("c", "failed")], 1, "cannot move"),
    ],
)
def test_bad_transitions(events: list[Event], index: int, words: str) -> None:
    known = {"p": TxnRecord("pending", 500), "c": TxnRecord("completed", 500)}
    with pytest.raises(EventError) as err:
        plan_batch(events, known)
    assert err.value.index == index
    assert words in err.value.message


# ---------------------------------------------------------------- period boundaries


def at(tz: str, *args: int) -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


def revenue_at(tz: str, sales: list[tuple[float, int]], now: float) -> tuple[Decimal, ...]:
    rollups = Rollups(tz)
    events: list[Event] = []
    for i, (ts, cents) in enumerate(sales):
        events.append(txn(f"t{i}", "completed", cents, ts))
    rollups.apply(plan_batch(events, {}), now)
    m = rollups.snapshot(now)
    assert m.revenue is not None
    return m.revenue.today, m.revenue.this_week, m.revenue.this_month, m.revenue.total


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_midnight(tz: str) -> None:
    # Wednesday 2025-01-15: a sale one second before local midnight is yesterday's.
    sales = [(at(tz, 2025, 1, 14, 23, 59, 59), 100), (at(tz, 2025, 1, 15, 0, 0, 0), 200)]
    today, week, month, total = revenue_at(tz, sales, at(tz, 2025, 1, 15, 12))
    assert (today, week, month, total) == (
        Decimal("2.00"),
        Decimal("3.00"),
        Decimal("3.00"),
        Decimal("3.00"),
    )


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Pacific/Chatham"])
def test_iso_week_starts_monday(tz: str) -> None:
    # 2025-01-12 is a Sunday, 2025-01-13 a Monday.
    sales = [(at(tz, 2025, 1, 12, 23, 59, 59), 100), (at(tz, 2025, 1, 13, 0, 0), 200)]
    _, week, _, _ = revenue_at(tz, sales, at(tz, 2025, 1, 19, 23, 59))  # the Sunday after
    assert week == Decimal("2.00")
    _, week, _, _ = revenue_at(tz, sales, at(tz, 2025, 1, 20, 0, 0))  # next Monday
    assert week == Decimal("0.00")


def test_week_spanning_months() -> None:
    # Week of Monday 2025-03-31: the sale on 2025-03-31 is in this week but last month.
    sales = [(at("UTC", 2025, 3, 31, 10), 700), (at("UTC", 2025, 4, 1, 10), 300)]
    today, week, month, total = revenue_at("UTC", sales, at("UTC", 2025, 4, 2, 9))
    assert (today, week, month, total) == (
        Decimal("0.00"),
        Decimal("10.00"),
        Decimal("3.00"),
        Decimal("10.00"),
    )


@pytest.mark.parametrize("tz", ["UTC", "America/Los_Angeles", "Australia/Adelaide"])
def test_month_end_and_leap_day(tz: str) -> None:
    sales = [
        (at(tz, 2024, 1, 31, 23, 59, 59), 1),
        (at(tz, 2024, 2, 1, 0, 0), 10),
        (at(tz, 2024, 2, 29, 23, 59, 59), 100),
        (at(tz, 2024, 3, 1, 0, 0), 1000),
    ]
    _, _, feb, _ = revenue_at(tz, sales, at(tz, 2024, 2, 29, 23, 59, 59))
    assert feb == Decimal("1.10")
    _, _, mar, total = revenue_at(tz, sales, at(tz, 2024, 3, 1, 0, 0, 1))
    assert (mar, total) == (Decimal("10.00"), Decimal("11.11"))


def test_dst_day_in_new_york() -> None:
    # 2025-03-09 has 23 hours in New York; midnight is 05:00 UTC, the next one 04:00 UTC.
    tz = "America/New_York"
    sales = [
        (at(tz, 2025, 3, 9, 0, 0), 100),
        (at(tz, 2025, 3, 9, 23, 30), 200),
        (at(tz, 2025, 3, 10, 0, 0), 400),
    ]
    assert revenue_at(tz, sales, at(tz, 2025, 3, 9, 23, 59))[0] == Decimal("3.00")
    assert revenue_at(tz, sales, at(tz, 2025, 3, 10, 0, 1))[0] == Decimal("4.00")


def test_users_today_resets_at_local_midnight() -> None:
    tz = "Asia/Kolkata"
    rollups = Rollups(tz)
    before = at(tz, 2025, 6, 1, 23, 58)
    events: list[Event] = [UserActivity("a", before), UserActivity("b", before + 30)]
    rollups.apply(plan_batch(events, {}), before + 30)
    m = rollups.snapshot(before + 60)
    assert m.active_users and (m.active_users.current, m.active_users.today) == (2, 2)
    midnight = at(tz, 2025, 6, 2, 0, 0)
    after = midnight + 60
    rollups.apply(plan_batch([UserActivity("c", after), UserActivity("d", midnight)], {}), after)
    m = rollups.snapshot(after)
    # a and b are still active (seen < 5 min ago) but not "today" any more; d, seen at
    # midnight exactly, is.
    assert m.active_users and (m.active_users.current, m.active_users.today) == (4, 2)


# ---------------------------------------------------------------- active users and peak


def test_active_window_is_five_minutes() -> None:
    rollups = Rollups("UTC")
    now = 1_700_000_000.0
    rollups.apply(plan_batch([UserActivity("a", now), UserActivity("b", now - 200)], {}), now)
    assert rollups.active_now(now) == 2
    assert rollups.active_now(now + 100) == 1  # b was last seen 300 s ago: out
    assert rollups.active_now(now + 299) == 1
    assert rollups.active_now(now + 300) == 0
    # Seen again: back in, counted once.
    rollups.apply(
        plan_batch([UserActivity("a", now + 400), UserActivity("a", now + 401)], {}), now + 401
    )
    assert rollups.active_now(now + 401) == 1


def test_peak_is_sampled_over_24_hours_and_never_below_current() -> None:
    rollups = Rollups("UTC")
    now = 1_700_000_000.0
    crowd = [UserActivity(f"u{i}", now) for i in range(9)]
    rollups.apply(plan_batch(crowd, {}), now)
    rollups.sample_peak(now)
    later = now + 3600
    rollups.apply(plan_batch([UserActivity("x", later)], {}), later)
    m = rollups.snapshot(later)
    assert m.active_users and (m.active_users.current, m.active_users.peak24h) == (1, 9)
    m = rollups.snapshot(now + 86400 + 60)  # the sample of 9 has left the window
    assert m.active_users and m.active_users.peak24h == 0
    # Never below current even before any sample.
    fresh = Rollups("UTC")
    fresh.apply(plan_batch(crowd[:3], {}), now)
    m = fresh.snapshot(now)
    assert m.active_users and m.active_users.peak24h == 3


def test_conversion_rate_rounding() -> None:
    """The figure table's Rate: purchases per 100 views, to the cent, half up."""
    from metrics_protocol.schema import percent_of

    assert percent_of(0, 0) == Decimal("0.00")
    assert percent_of(1, 3) == Decimal("33.33")
    assert percent_of(2, 3) == Decimal("66.67")
    assert percent_of(1, 8) == Decimal("12.50")
    assert percent_of(5380, 125000) == Decimal("4.30")


def test_parse_batch_feeds_plan() -> None:
    now = 1_700_000_000.0
    events = parse_batch(
        [
            {"type": "transaction", "id": "t", "status": "pending", "amount": "0.10"},
            {"type": "transaction", "id": "t", "status": "completed"},
            {"type": "transaction", "id": "u", "status": "completed", "amount": 0.2},
        ],
        now,
    )
    plan = plan_batch(events, {})
    assert plan.counters.revenue_cents == 30  # exact: never 0.30000000000000004


# ---------------------------------------------------------------- limits and stored rows


def test_a_batch_that_would_take_revenue_past_64_bits_is_refused() -> None:
    from metrics_server.core import MAX_SUM

    top = 10**11  # the largest amount a transaction may have
    base = MAX_SUM - 2 * top
    plan = plan_batch([txn("a", "completed", top), txn("b", "completed", top)], {}, base)
    assert base + plan.counters.revenue_cents == MAX_SUM  # exactly at the limit: accepted
    events = [txn("a", "completed", top), txn("p", "pending", top), txn("b", "completed", top + 1)]
    with pytest.raises(EventError) as err:
        plan_batch(events, {}, base)
    assert (err.value.index, err.value.code) == (2, "amount_too_large")
    assert "$92,233,720,368,547,758.07" in err.value.message
    # A pending transaction completing later counts then.
    known = {"p": TxnRecord("pending", 1)}
    with pytest.raises(EventError) as err:
        plan_batch([txn("q", "failed", 5), txn("p", "completed")], known, MAX_SUM)
    assert err.value.index == 1


@pytest.mark.parametrize("ts", [-62135596800.0, 0.0, 1e300, float("nan"), float("-inf")])
def test_plan_refuses_times_no_zone_can_date(ts: float) -> None:
    """Events made without parse_ts (the demo, embedding code) are checked before the commit,
    since the rollups turn each time into a calendar day after it."""
    with pytest.raises(EventError) as err:
        plan_batch([txn("ok", "completed", 5), txn("x", "completed", 5, ts)], {})
    assert err.value.index == 1


def test_load_skips_rows_that_cannot_count_and_names_them() -> None:
    tz = "America/New_York"
    now = 1_767_000_000.0
    rollups = Rollups(tz)
    skipped = rollups.load(
        {"views": 2, "completed": 3, "revenue_cents": 1500, "txn_total": 3, "bogus": 1},
        [
            (int(now // 900), 1000),
            (-69039552, 500),  # Go's zero time: 0001-01-01T00:00Z, year 0 in New York
            (-69039553, 1),  # year 1 at +00:01: no day even in UTC
            (10**15, 1),  # far past year 9999
            ("x", 1),
            (int(now // 900) - 1, 2.5),
        ],
        [("u1", now - 10), ("u2", "soon"), (3, now), ("u4", float("nan"))],
        [(int(now // 60), 4), ("m", 1), (int(now // 60) - 1, None)],
        now,
    )
    m = rollups.snapshot(now)
    assert m.revenue is not None and m.active_users is not None
    assert (m.revenue.total, m.revenue.today) == (Decimal("15.00"), Decimal("10.00"))
    assert (m.active_users.current, m.active_users.peak24h) == (1, 4)
    assert len(skipped) == 11, skipped
    text = "\n".join(skipped)
    for words in ("'bogus'", "-69039552", "-69039553", "1000000000000000", "'x'", "2.5", "'soon'"):
        assert words in text
    assert "no calendar day in America/New_York" in text


@pytest.mark.parametrize("value", [9.223372036854776e18, "12", None, -1, 2**63, True])
def test_load_refuses_a_counter_that_is_not_a_whole_64_bit_number(value: object) -> None:
    from metrics_server.core import StoredStateError

    with pytest.raises(StoredStateError, match="'revenue_cents' holds"):
        Rollups("UTC").load({"revenue_cents": value}, [], [], [], 1_767_000_000.0)  # type: ignore[dict-item]


# ---------------------------------------------------------------- the range rollups' rows

_T0 = 1_000_000_020.0  # 20 s into a UTC minute


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["view", "activity", "new", "completed", "failed"]),
            st.integers(0, 3),  # user u0..u2, or none (where the event may have none)
            st.sampled_from([0.0, 0.5, 39.9, 40.0, 41.0, 130.0, -30.0]),  # back and forth
        ),
        max_size=40,
    )
)
def test_minute_rows_and_presence_are_each_events_own(specs: list) -> None:
    """plan_batch works a minute out when ts changes (a batch mostly shares one ts): its rows
    and presence are still those of each event taken on its own, however the times jump."""
    known = {f"k{j}": TxnRecord("pending", 500 + j) for j in range(len(specs))}
    events: list[Event] = []
    rows: dict[int, list[int]] = {}
    presence: dict[int, set[str]] = {}
    for i, (kind, u, offset) in enumerate(specs):
        ts, user = _T0 + offset, (f"u{u}" if u < 3 else None)
        minute = int(ts) // 60
        row = rows.setdefault(minute, [0, 0, 0, 0, 0])
        if kind == "view":
            events.append(ContentView("c", user, ts))
            row[4] += 1
        elif kind == "activity":
            user = user or "u0"
            events.append(UserActivity(user, ts))
        elif kind == "new":
            events.append(TransactionEvent(f"n{i}", "pending", 100 + i, user, None, ts))
            row[3] += 1
        else:
            events.append(TransactionEvent(f"k{i}", kind, None, user, None, ts))
            row[1 if kind == "completed" else 2] += 1
            row[0] += 500 + i if kind == "completed" else 0
        if user is not None:
            presence.setdefault(minute, set()).add(user)
    plan = plan_batch(events, known)
    assert plan.minutes == {m: r for m, r in rows.items() if any(r)}
    assert plan.presence == presence


def test_a_batch_that_shares_one_ts_works_its_minute_out_once() -> None:
    """Events without a time get the server's, one for the batch: 500 minutes worked out for
    one were 7% of ingest CPU (docs/PERFORMANCE.md, figure 4)."""

    class Ts(float):
        minutes = 0

        def __int__(self) -> int:
            Ts.minutes += 1
            return float.__int__(self)

    ts = Ts(_T0)
    events: list[Event] = [UserActivity(f"u{i}", ts) for i in range(250)]
    events += [ContentView("c", f"u{i}", ts) for i in range(250)]
    plan = plan_batch(events, {})
    assert plan.minutes == {int(_T0) // 60: [0, 0, 0, 0, 250]}
    assert len(plan.presence[int(_T0) // 60]) == 250
    assert Ts.minutes <= 2, Ts.minutes

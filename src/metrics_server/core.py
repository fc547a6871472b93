"""The metrics, as plain code: events -> batch plan -> rollups -> snapshot.

No I/O and no clock reads: every function takes the time it needs. The store persists exactly
what a :class:`Plan` says, in one transaction, so that :class:`Rollups` rebuilt from the store
after a restart equal the ones kept in memory.

Definitions (see docs/protocol.md):

* revenue: completed amounts; today / week / month by the completing event's time in the zone.
* active users now: distinct users with an event dated within the last 5 minutes; today:
  distinct users with an event dated at or after local midnight; peak over 24 h: the largest
  "now" sampled over the trailing 24 hours (never below "now").
* transactions: counts by current status; conversion rate = completed / views x 100, 2 decimals.

:meth:`Rollups.quantities` names these figures; ``metrics_protocol.figures`` says which figure
of a snapshot each quantity is.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from metrics_protocol.figures import SCHEMA, Metrics
from metrics_protocol.schema import Schema
from metrics_protocol.wire import ERR_AMOUNT_TOO_LARGE

from .events import MIN_TS, ContentView, Event, EventError, TransactionEvent, UserActivity

#: Revenue is kept in UTC buckets of 15 minutes: every zone in use today has an offset that is a
#: multiple of 15 minutes, so a bucket never straddles a local midnight in any --tz, and the
#: store stays independent of the zone the server happens to run with.
BUCKET_SECONDS = 900
ACTIVE_WINDOW = 300.0
PEAK_WINDOW_MINUTES = 24 * 60
#: How far back the per-user last-seen map must reach: a local midnight is at most 25 h ago
#: (a DST day), so 48 h is ample and bounds memory.
USER_HORIZON = 48 * 3600.0
#: The largest stored sum: SQLite's integers are signed 64-bit, and a sum past them silently
#: becomes a REAL (a float), which loses cents. Revenue is the only sum that can get there
#: (every bucket, day, week and month is a part of it); the counts grow by at most 1,000 a
#: batch, so at a million events a second they would need 290,000 years.
MAX_SUM = 2**63 - 1
MAX_SUM_TEXT = "$92,233,720,368,547,758.07"
#: The last instant plan_batch lets through: it has a calendar day in every zone (+14:00 at
#: most). parse_ts allows far less (5 minutes ahead); this guards events made by other code.
LAST_TS = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


class StoredStateError(ValueError):
    """A stored row without which every figure would be wrong: start-up refuses."""


@dataclass(frozen=True, slots=True)
class TxnRecord:
    status: str
    amount_cents: int


@dataclass(slots=True)
class Counters:
    views: int = 0
    txn_total: int = 0
    pending: int = 0
    completed: int = 0
    failed: int = 0
    revenue_cents: int = 0

    def add(self, other: Counters) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class RangeDelta:
    """A batch's share of the range rollups, in the server's zone (``ranges.Calendar.delta``)."""

    #: (step, bucket start) -> [revenue_cents, completed, failed, started, views] to add.
    sums: dict[tuple[str, int], list[int]]
    #: UTC minute -> users with an event dated in it (the store counts the new ones).
    presence: dict[int, set[str]]
    #: UTC minute -> (step, bucket start, next bucket start) for every step.
    spans: dict[int, tuple[tuple[str, int, int], ...]]


def new_users(
    probes: Iterable[tuple[str, int, int | None, int | None]],
    spans: Mapping[int, tuple[tuple[str, int, int], ...]],
) -> dict[tuple[str, int], int]:
    """How many users each bucket gains from one write of (user, UTC minute) pairs.

    ``probes``: each pair the store does not hold yet, with the user's nearest stored minutes
    before and after it (None where there is none), all read before the write. A user is new
    in a bucket when no stored minute of theirs falls inside it: the nearest ones either side
    are outside; several new minutes of a user in one bucket count once.
    """
    counts: dict[tuple[str, int], int] = {}
    seen: set[tuple[str, str, int]] = set()
    for user, minute, before, after in probes:
        for step, first, end in spans[minute]:
            stored = (before is not None and before * 60 >= first) or (
                after is not None and after * 60 < end
            )
            if not stored and (user, step, first) not in seen:
                seen.add((user, step, first))
                counts[(step, first)] = counts.get((step, first), 0) + 1
    return counts


@dataclass(slots=True)
class Plan:
    """What one accepted batch changes. The store writes it in a single transaction."""

    events: list[Event]
    txns: dict[str, TxnRecord] = field(default_factory=dict)  # new or changed, final state
    txn_meta: dict[str, tuple[str | None, str | None, float]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    revenue_buckets: dict[int, int] = field(default_factory=dict)  # bucket -> cents added
    users: dict[str, float] = field(default_factory=dict)  # user -> latest event time in batch
    #: UTC minute (``int(ts) // 60``) -> [revenue_cents, completed, failed, started, views]:
    #: what the batch adds to the range rollups, by the time of the event that did it.
    minutes: dict[int, list[int]] = field(default_factory=dict)
    #: UTC minute -> users with an event dated in it.
    presence: dict[int, set[str]] = field(default_factory=dict)
    #: The range rows in the server's zone, set by the service before the commit.
    ranges: RangeDelta | None = None


_COUNTER_NAMES = frozenset(Counters.__slots__)  # type: ignore[attr-defined]


def _show(value: object) -> str:
    """A stored value for a log line, cut short (a row can hold megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def txn_ids(events: Iterable[Event]) -> set[str]:
    return {e.txn_id for e in events if isinstance(e, TransactionEvent)}


def plan_batch(events: list[Event], known: Mapping[str, TxnRecord], revenue: int = 0) -> Plan:
    """Validate transaction transitions against ``known`` (the stored state) and compute deltas.

    ``revenue`` is the total before this batch: a batch that would take it past MAX_SUM is
    refused. Everything that could fail on an event's values is checked here, before the commit,
    so that applying the plan to the rollups afterwards cannot fail.

    Raises EventError (with the event's index) and then nothing of the batch may be stored.
    """
    plan = Plan(events=list(events))
    c = plan.counters
    minutes, presence = plan.minutes, plan.presence
    state: dict[str, TxnRecord] = {}
    # The events of a batch mostly share one ts (the server's clock, when they give none): the
    # check, the minute and its presence set and row are worked out when ts changes (they cost
    # 0.45 us an event, 7% of ingest CPU, when worked out for each).
    last_ts: float | None = None
    minute = -1
    seen: set[str] | None = None  # presence[minute], once a user is in it
    row: list[int] | None = None  # minutes[minute], once something is counted in it
    for i, e in enumerate(events):
        ts = e.ts
        if ts != last_ts:
            if not MIN_TS <= ts <= LAST_TS:  # also NaN
                raise EventError(f"'ts' {ts!r} is outside the valid window", i)
            last_ts = ts
            # Exact: floor(ts) // 60 is floor(ts / 60), as ts // 900 is for the revenue buckets.
            if int(ts) // 60 != minute:
                minute = int(ts) // 60
                seen, row = presence.get(minute), minutes.get(minute)
        user = e.user_id
        if user is not None:
            if ts > plan.users.get(user, float("-inf")):
                plan.users[user] = ts
            if seen is None:
                seen = presence[minute] = {user}
            else:
                seen.add(user)
        if isinstance(e, ContentView):
            c.views += 1
            if row is None:
                row = minutes[minute] = [0, 0, 0, 0, 0]
            row[4] += 1
        elif isinstance(e, TransactionEvent):
            prev = state.get(e.txn_id) or known.get(e.txn_id)
            if prev is None:
                if e.amount_cents is None:
                    raise EventError(f"transaction {e.txn_id!r} is new: 'amount' is required", i)
                rec = TxnRecord(e.status, e.amount_cents)
                c.txn_total += 1
                setattr(c, e.status, getattr(c, e.status) + 1)
                plan.txn_meta[e.txn_id] = (e.user_id, e.content_id, e.ts)
                if row is None:
                    row = minutes[minute] = [0, 0, 0, 0, 0]
                row[3] += 1
            else:
                if e.amount_cents is not None and e.amount_cents != prev.amount_cents:
                    raise EventError(
                        f"transaction {e.txn_id!r} has amount {prev.amount_cents / 100:.2f}, "
                        f"not {e.amount_cents / 100:.2f}",
                        i,
                    )
                if e.status == prev.status:
                    continue  # a producer's retry: idempotent
                if prev.status != "pending" or e.status == "pending":
                    raise EventError(
                        f"transaction {e.txn_id!r} cannot move from {prev.status} to {e.status}",
                        i,
                    )
                rec = TxnRecord(e.status, prev.amount_cents)
                setattr(c, prev.status, getattr(c, prev.status) - 1)
                setattr(c, e.status, getattr(c, e.status) + 1)
            state[e.txn_id] = rec
            plan.txns[e.txn_id] = rec
            if rec.status != "pending":
                if row is None:
                    row = minutes[minute] = [0, 0, 0, 0, 0]
                if rec.status == "failed":
                    row[2] += 1
                else:
                    row[1] += 1
                    row[0] += rec.amount_cents
            if rec.status == "completed":
                c.revenue_cents += rec.amount_cents
                if revenue + c.revenue_cents > MAX_SUM:
                    raise EventError(
                        f"transaction {e.txn_id!r} would take total revenue past {MAX_SUM_TEXT},"
                        " the most the server can count",
                        i,
                        ERR_AMOUNT_TOO_LARGE,
                    )
                b = int(e.ts // BUCKET_SECONDS)
                plan.revenue_buckets[b] = plan.revenue_buckets.get(b, 0) + rec.amount_cents
        elif not isinstance(e, UserActivity):  # pragma: no cover - the union is closed
            raise TypeError(type(e).__name__)
    return plan


def period_starts(now: float, tz: ZoneInfo) -> tuple[date, date, date]:
    """Local today, the Monday of this ISO week, and the first of this month."""
    today = datetime.fromtimestamp(now, tz).date()
    return today, today - timedelta(days=today.weekday()), today.replace(day=1)


def local_midnight(day: date, tz: ZoneInfo) -> float:
    """The first instant of ``day`` in ``tz`` (midnight, or the first hour if DST skips it)."""
    naive = datetime(day.year, day.month, day.day)
    # fold=0 picks the earlier of two midnights; a skipped midnight maps past the gap.
    ts = naive.replace(tzinfo=tz).timestamp()
    if datetime.fromtimestamp(ts, tz).date() != day:  # pragma: no cover - zones skipping 00:00
        ts = naive.replace(tzinfo=tz, fold=1).timestamp()
    return ts


class Rollups:
    """Everything a snapshot needs, kept current batch by batch; a snapshot never scans history.

    Costs per snapshot: O(1) counters, at most 31 + 7 day lookups, the expiry of users who went
    quiet (amortised O(log n) each), and a max over at most 1,440 per-minute peak samples.
    """

    def __init__(self, tz: ZoneInfo | str = "UTC") -> None:
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.counters = Counters()
        self._day_cents: dict[date, int] = {}
        self._last_seen: dict[str, float] = {}  # users seen within USER_HORIZON
        self._active: dict[str, float] = {}  # users seen within ACTIVE_WINDOW (or later)
        self._active_heap: list[tuple[float, str]] = []
        self._today: date | None = None
        self._today_start = 0.0
        self._today_users: set[str] = set()
        self.peaks: dict[int, int] = {}  # minute -> largest sampled current
        self.unsaved_peaks: set[int] = set()  # minutes whose sample the store has not kept

    # ---- loading and applying

    def load(
        self,
        counters: Mapping[str, int],
        revenue_buckets: Iterable[tuple[int, int]],
        users: Iterable[tuple[str, float]],
        peaks: Iterable[tuple[int, int]],
        now: float,
    ) -> list[str]:
        """Rebuild from what the store kept (users: those seen within USER_HORIZON of now).

        A stored row that cannot count (a revenue bucket with no calendar day in this zone, a
        user or peak that is not a number) is skipped and named in the list returned: it can
        only make a day's revenue or a user figure short, never take the server down. A counter
        that is not a whole number from 0 to MAX_SUM raises StoredStateError: every total would
        be wrong without it.
        """
        skipped: list[str] = []
        values: dict[str, int] = {}
        for name, value in counters.items():
            if name not in _COUNTER_NAMES:
                skipped.append(f"counter {_show(name)}: not a counter this version knows")
            elif type(value) is not int or not 0 <= value <= MAX_SUM:
                raise StoredStateError(
                    f"the stored counter {name!r} holds {_show(value)}, not a whole number from"
                    " 0 to 2^63-1, so no figure can be trusted (see docs/SECURITY.md)"
                )
            else:
                values[name] = value
        self.counters = Counters(**values)
        for bucket, cents in revenue_buckets:
            what = f"revenue bucket {_show(bucket)} ({_show(cents)} cents)"
            if type(bucket) is not int or type(cents) is not int or not 0 <= cents <= MAX_SUM:
                skipped.append(f"{what}: not whole numbers of cents")
                continue
            try:
                self._add_bucket(bucket, cents)
            except (OverflowError, ValueError, OSError):  # datetime's ways of saying "no day"
                skipped.append(f"{what}: its time has no calendar day in {self.tz}")
        self._roll_day(now)
        for user, ts in users:
            if type(user) is not str or type(ts) not in (int, float) or not math.isfinite(ts):
                skipped.append(f"user {_show(user)} last seen at {_show(ts)}: not a time")
                continue
            self._see(user, ts, now)
        self.peaks = {}
        for minute, value in peaks:
            if type(minute) is not int or type(value) is not int or value < 0:
                skipped.append(f"peak sample {_show(minute)} = {_show(value)}: not whole numbers")
            elif minute > now // 60 - PEAK_WINDOW_MINUTES:
                self.peaks[minute] = value
        return skipped

    def apply(self, plan: Plan, now: float) -> None:
        self.counters.add(plan.counters)
        for bucket, cents in plan.revenue_buckets.items():
            self._add_bucket(bucket, cents)
        self._roll_day(now)  # once per batch, not per user: it reads the clock into a date
        for user, ts in plan.users.items():
            self._see(user, ts, now)

    def _add_bucket(self, bucket: int, cents: int) -> None:
        day = datetime.fromtimestamp(bucket * BUCKET_SECONDS, self.tz).date()
        self._day_cents[day] = self._day_cents.get(day, 0) + cents

    def _see(self, user: str, ts: float, now: float) -> None:
        """Callers run ``_roll_day(now)`` first."""
        if ts < now - USER_HORIZON or ts <= self._last_seen.get(user, float("-inf")):
            return
        self._last_seen[user] = ts
        if ts > now - ACTIVE_WINDOW:
            # One heap entry per active user, not per event: at 1000 events/s an entry per
            # event held 300,000 of them for the 5-minute window. A stale entry is refreshed
            # when it comes up for expiry.
            if user not in self._active:
                heapq.heappush(self._active_heap, (ts, user))
            self._active[user] = ts
        if ts >= self._today_start:
            self._today_users.add(user)

    def _roll_day(self, now: float) -> None:
        today = datetime.fromtimestamp(now, self.tz).date()
        if today == self._today:
            return
        self._today = today
        self._today_start = local_midnight(today, self.tz)
        horizon = now - USER_HORIZON
        self._last_seen = {u: t for u, t in self._last_seen.items() if t >= horizon}
        self._today_users = {u for u, t in self._last_seen.items() if t >= self._today_start}

    def _expire_active(self, now: float) -> None:
        cutoff = now - ACTIVE_WINDOW
        heap, active = self._active_heap, self._active
        while heap and heap[0][0] <= cutoff:
            _, user = heapq.heappop(heap)
            latest = active.get(user)
            if latest is None:
                continue
            if latest <= cutoff:
                del active[user]
            else:  # seen again since this entry was pushed
                heapq.heappush(heap, (latest, user))

    # ---- reading

    def active_now(self, now: float) -> int:
        self._expire_active(now)
        return len(self._active)

    def sample_peak(self, now: float) -> tuple[int, int]:
        """Record ``current`` for this minute; returns (minute, value) for the store to keep."""
        minute = int(now // 60)
        value = self.active_now(now)
        if value > self.peaks.get(minute, -1):
            self.peaks[minute] = value
            self.unsaved_peaks.add(minute)
        return minute, self.peaks[minute]

    def take_unsaved_peaks(self) -> list[tuple[int, int]]:
        """The samples to hand to the store; they count as saved from now on."""
        out = [(m, self.peaks[m]) for m in self.unsaved_peaks if m in self.peaks]
        self.unsaved_peaks.clear()
        return out

    def peak24h(self, now: float) -> int:
        oldest = int(now // 60) - PEAK_WINDOW_MINUTES
        stale = (
            [m for m in self.peaks if m <= oldest] if len(self.peaks) > PEAK_WINDOW_MINUTES else []
        )
        for m in stale:
            del self.peaks[m]
            self.unsaved_peaks.discard(m)
        window = (v for m, v in self.peaks.items() if m > oldest)
        return max(max(window, default=0), self.active_now(now))

    def quantities(self, now: float) -> dict[str, int]:
        """Every quantity a figure of a snapshot can be (``metrics_protocol.figures`` says
        which figure is which): integers, money in cents."""
        self._roll_day(now)
        today, week, month = period_starts(now, self.tz)
        days = self._day_cents
        week_cents = sum(days.get(week + timedelta(days=i), 0) for i in range(7))
        month_cents = 0
        d = month
        while d.month == month.month:
            month_cents += days.get(d, 0)
            d += timedelta(days=1)
        c = self.counters
        return {
            "revenue_cents": c.revenue_cents,
            "revenue_today_cents": days.get(today, 0),
            "revenue_week_cents": week_cents,
            "revenue_month_cents": month_cents,
            "users_active": self.active_now(now),
            "users_today": len(self._today_users),
            "users_peak_24h": self.peak24h(now),
            "txn_total": c.txn_total,
            "txn_pending": c.pending,
            "txn_completed": c.completed,
            "txn_failed": c.failed,
            "views": c.views,
        }

    def snapshot(self, now: float, schema: Schema = SCHEMA) -> Metrics:
        """The figures of ``schema`` (by default the one both programs use) at ``now``."""
        stamp = datetime.fromtimestamp(now, UTC)
        # Milliseconds, as the wire carries them: a snapshot read back equals the original.
        return schema.snapshot(
            self.quantities(now), stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)
        )

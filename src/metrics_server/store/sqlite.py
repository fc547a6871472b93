"""Embedded SQLite store: one file, WAL, a full fsync per commit (batches that queue behind a
commit in flight share the next one: group commit).

The raw events are kept (nothing accepted is ever lost; ``--retention`` prunes old ones) next to
the rollups that make a snapshot cheap: counters, completed revenue per 15-minute UTC bucket,
each user's latest event time, per-minute peak samples, the last interval snapshots for
``history``, and the batches' idempotency keys (24 h); and those that answer a date range: a
row per bucket of every step (``range_buckets``) and the (user, UTC minute) pairs behind its
distinct user counts (``user_minutes``), written in the batch's own transaction and kept when
events are pruned.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import Plan, RangeDelta, TxnRecord, new_users
from ..events import ContentView, TransactionEvent, UserActivity
from .base import BatchKey, StoreError, read_state, remember_recent
from .lock import DatabaseLock

if TYPE_CHECKING:
    from ..ranges import Calendar
    from .base import LoadedState, Peaks, RangeSamples

#: 2 added the range rollups (range_buckets, user_minutes); a version 1 file is upgraded in
#: place, and the service builds its range rollups from its events once (prepare_ranges).
SCHEMA_VERSION = "2"
_UPGRADES = {"1": "2"}
#: The recent minutes whose users are known to be stored, kept in memory so that a user seen
#: again in the same minute costs no statement (live traffic repeats users within a minute).
_RECENT_MINUTES = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    user_id TEXT,
    content_id TEXT,
    txn_id TEXT,
    status TEXT,
    amount_cents INTEGER
);
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    user_id TEXT,
    content_id TEXT,
    created_ts REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revenue_buckets (bucket INTEGER PRIMARY KEY, cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, last_seen REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS users_by_last_seen ON users (last_seen);
CREATE TABLE IF NOT EXISTS peaks (minute INTEGER PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_keys (
    key TEXT PRIMARY KEY,
    accepted INTEGER NOT NULL,
    digest BLOB NOT NULL,
    ts REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_keys_by_ts ON batch_keys (ts);
CREATE TABLE IF NOT EXISTS range_buckets (
    step TEXT NOT NULL,
    start INTEGER NOT NULL,
    revenue_cents INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    started INTEGER NOT NULL DEFAULT 0,
    views INTEGER NOT NULL DEFAULT 0,
    users INTEGER NOT NULL DEFAULT 0,
    peak INTEGER,
    PRIMARY KEY (step, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_minutes (
    user_id TEXT NOT NULL,
    minute INTEGER NOT NULL,
    PRIMARY KEY (user_id, minute)
) WITHOUT ROWID;
"""

_RANGE_COLUMNS = "start, revenue_cents, completed, failed, started, views, users, peak"
_ADD_RANGE = (
    "INSERT INTO range_buckets (step, start, revenue_cents, completed, failed, started, views,"
    " users) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (step, start) DO UPDATE SET"
    " revenue_cents = revenue_cents + excluded.revenue_cents,"
    " completed = completed + excluded.completed, failed = failed + excluded.failed,"
    " started = started + excluded.started, views = views + excluded.views,"
    " users = users + excluded.users"
)
_PEAK_RANGE = (
    "INSERT INTO range_buckets (step, start, peak) VALUES (?, ?, ?) ON CONFLICT (step, start)"
    " DO UPDATE SET peak = CASE WHEN peak IS NULL OR excluded.peak > peak"
    " THEN excluded.peak ELSE peak END"
)
#: A user's nearest stored minutes at or before one (itself when stored) and after it: the
#: user is new in a bucket exactly when neither falls inside it (two index probes answer every
#: step at once).
_NEIGHBOURS = (
    "SELECT (SELECT max(minute) FROM user_minutes WHERE user_id = ?1 AND minute <= ?2),"
    " (SELECT min(minute) FROM user_minutes WHERE user_id = ?1 AND minute > ?2)"
)
#: Per-minute sums from the raw log, for a database from before the range rollups. A
#: transaction starts at its first event (created_ts) and completes or fails at the first
#: stored event with its final status (SQLite gives the bare columns of the min(seq) row).
_MINUTES_FROM_EVENTS = """
INSERT INTO user_minutes
SELECT DISTINCT user_id, CAST(ts AS INTEGER) / 60 FROM events WHERE user_id IS NOT NULL
ORDER BY 1, 2;
CREATE TEMP TABLE minute_parts (
    minute INTEGER, revenue INTEGER, completed INTEGER, failed INTEGER, started INTEGER,
    views INTEGER, users INTEGER, peak INTEGER
);
INSERT INTO minute_parts
SELECT CAST(ts AS INTEGER) / 60, 0, 0, 0, 0, count(*), 0, NULL FROM events
WHERE type = 'content_view' GROUP BY 1;
INSERT INTO minute_parts
SELECT CAST(created_ts AS INTEGER) / 60, 0, 0, 0, count(*), 0, 0, NULL FROM transactions GROUP BY 1;
INSERT INTO minute_parts
SELECT CAST(f.ts AS INTEGER) / 60,
       sum(CASE WHEN t.status = 'completed' THEN t.amount_cents ELSE 0 END),
       sum(t.status = 'completed'), sum(t.status = 'failed'), 0, 0, 0, NULL
FROM (SELECT txn_id, ts, min(seq) FROM events
      WHERE type = 'transaction' AND status IN ('completed', 'failed') GROUP BY txn_id) AS f
JOIN transactions AS t ON t.id = f.txn_id GROUP BY 1;
INSERT INTO minute_parts SELECT minute, 0, 0, 0, 0, 0, count(*), NULL FROM user_minutes GROUP BY 1;
INSERT INTO minute_parts SELECT minute, 0, 0, 0, 0, 0, 0, value FROM peaks;
INSERT INTO range_buckets
SELECT '1m', minute * 60, sum(revenue), sum(completed), sum(failed), sum(started), sum(views),
       sum(users), max(peak)
FROM minute_parts GROUP BY minute;
DROP TABLE minute_parts;
"""

_COUNTERS = ("views", "txn_total", "pending", "completed", "failed", "revenue_cents")


def _event_row(e: object) -> tuple:
    if isinstance(e, UserActivity):
        return (e.ts, "user_activity", e.user_id, None, None, None, None)
    if isinstance(e, ContentView):
        return (e.ts, "content_view", e.user_id, e.content_id, None, None, None)
    assert isinstance(e, TransactionEvent)
    return (e.ts, "transaction", e.user_id, e.content_id, e.txn_id, e.status, e.amount_cents)


class SQLiteStore:
    def __init__(self, path: str | Path, busy_timeout_ms: int = 2000) -> None:
        self.path = str(path)
        self._lock: DatabaseLock | None = None
        self._scoped = False
        try:
            if self.path not in (":memory:", ""):
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                if Path(self.path).is_dir():  # before a stray '<dir>.lock' is made beside it
                    raise IsADirectoryError(errno.EISDIR, "is a directory")
                self._lock = DatabaseLock(self.path)  # StoreError: another server holds it
            # Used from one worker thread at a time, but not always the thread that opened it.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a batch is acknowledged only once its commit is on disk.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._db.executescript(_SCHEMA)
            with self._tx():
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                for old, new in _UPGRADES.items():  # the tables are there: CREATE IF NOT EXISTS
                    self._db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'schema_version' AND value = ?",
                        (new, old),
                    )
                self._db.executemany(
                    "INSERT OR IGNORE INTO counters VALUES (?, 0)", [(n,) for n in _COUNTERS]
                )
            version = self._db.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            self._release()
            raise StoreError(f"cannot open database {self.path!r}: {exc}") from None
        except StoreError:
            self._release()
            raise
        if version != SCHEMA_VERSION:
            self._release()
            raise StoreError(f"database {self.path!r} has schema {version}, need {SCHEMA_VERSION}")
        #: UTC minute -> users known to be in user_minutes (committed), for the newest minutes.
        self._recent: dict[int, set[str]] = {}

    def _tx(self) -> contextlib.AbstractContextManager[None]:
        # Inside atomic() the scope's transaction is the one: no nested BEGIN.
        return contextlib.nullcontext() if self._scoped else _Transaction(self._db)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: SQLite's write lock is taken at the start, so the
        reads inside see the state the writes apply to (one server per file anyway)."""
        if self._scoped:
            raise RuntimeError("atomic() scopes do not nest")
        try:
            with _Transaction(self._db):
                self._scoped = True
                try:
                    yield
                finally:
                    self._scoped = False
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from None

    def load(self, now: float, user_horizon: float, history: int) -> LoadedState:
        try:
            return read_state(self._db.execute, "?", now, user_horizon, history)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read database: {exc}") from None

    def get_transactions(self, ids: Iterable[str]) -> dict[str, TxnRecord]:
        rows = self._select_in("SELECT id, status, amount_cents FROM transactions WHERE id", ids)
        return {txn_id: TxnRecord(status, cents) for txn_id, status, cents in rows}

    def revenue_total(self) -> int:
        try:
            row = self._db.execute(
                "SELECT value FROM counters WHERE name = 'revenue_cents'"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read database: {exc}") from None
        return row[0] if row and type(row[0]) is int else 0

    def commit_many(
        self, plans: Sequence[Plan], keys: Mapping[str, BatchKey] | None = None
    ) -> None:
        """All the plans in one transaction: one fsync however many batches (group commit)."""
        added: dict[int, set[str]] = {}  # user_minutes written by this transaction
        try:
            with self._tx():
                for plan in plans:
                    self._write(plan)
                    if plan.ranges is not None:
                        self._write_ranges(plan.ranges, added)
                if keys:  # a key already stored is an IntegrityError: nothing is written
                    self._db.executemany(
                        "INSERT INTO batch_keys VALUES (?, ?, ?, ?)",
                        [(k, b.accepted, b.digest, b.ts) for k, b in keys.items()],
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from None
        self._remember(added)

    def get_keys(self, keys: Iterable[str]) -> dict[str, BatchKey]:
        rows = self._select_in("SELECT key, accepted, digest, ts FROM batch_keys WHERE key", keys)
        return {key: BatchKey(accepted, bytes(digest), ts) for key, accepted, digest, ts in rows}

    def _select_in(self, query: str, values: Iterable[str]) -> list[tuple[Any, ...]]:
        """The rows of ``query IN (values)``, asked 500 at a time (SQLite versions before 3.32
        allow 999 parameters a statement)."""
        values = list(values)
        rows: list[tuple[Any, ...]] = []
        try:
            for start in range(0, len(values), 500):
                chunk = values[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(f"{query} IN ({marks})", chunk)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read database: {exc}") from None
        return rows

    def forget_keys(self, before: float) -> int:
        try:
            with self._tx():
                return self._db.execute("DELETE FROM batch_keys WHERE ts < ?", (before,)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from None

    def _write(self, plan: Plan) -> None:
        db = self._db
        db.executemany(
            "INSERT INTO events (ts, type, user_id, content_id, txn_id, status,"
            " amount_cents) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [_event_row(e) for e in plan.events],
        )
        if plan.txns:
            db.executemany(
                "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET status = excluded.status",
                [
                    (
                        tid,
                        r.status,
                        r.amount_cents,
                        *plan.txn_meta.get(tid, (None, None, 0)),
                    )
                    for tid, r in plan.txns.items()
                ],
            )
        deltas = [(v, k) for k, v in plan.counters.as_dict().items() if v]
        if deltas:
            db.executemany("UPDATE counters SET value = value + ? WHERE name = ?", deltas)
        if plan.revenue_buckets:
            db.executemany(
                "INSERT INTO revenue_buckets VALUES (?, ?)"
                " ON CONFLICT(bucket) DO UPDATE SET cents = cents + excluded.cents",
                plan.revenue_buckets.items(),
            )
        if plan.users:
            db.executemany(
                "INSERT INTO users VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE"
                " SET last_seen = max(last_seen, excluded.last_seen)",
                plan.users.items(),
            )

    def _write_ranges(self, delta: RangeDelta, added: dict[int, set[str]]) -> None:
        """The batch's range sums, and its users counted once per bucket of every step
        (core.new_users, from each new pair's nearest stored minutes either side)."""
        db = self._db
        probes = []
        for minute, present in delta.presence.items():
            known = self._recent.get(minute)
            fresh = present - known if known else present
            done = added.get(minute)
            if done:
                fresh = fresh - done
            if not fresh:
                continue
            for user in fresh:
                before, after = db.execute(_NEIGHBOURS, (user, minute)).fetchone()
                if before != minute:  # not stored yet
                    probes.append((user, minute, before, after))
            if done is None:
                added[minute] = set(fresh)
            else:
                done.update(fresh)
        users = new_users(probes, delta.spans)
        db.executemany("INSERT INTO user_minutes VALUES (?, ?)", [(u, m) for u, m, _, _ in probes])
        zero = (0, 0, 0, 0, 0)
        db.executemany(
            _ADD_RANGE,
            [
                (step, first, *delta.sums.get((step, first), zero), users.get((step, first), 0))
                for step, first in delta.sums.keys() | users.keys()
            ],
        )

    def _remember(self, added: dict[int, set[str]]) -> None:
        """After a commit: its users are stored; keep the newest minutes' in memory."""
        if not added:
            return
        remember_recent(self._recent, added, _RECENT_MINUTES)

    def range_rows(self, step: str, first: int, last: int) -> list[tuple]:
        try:
            return self._db.execute(
                f"SELECT {_RANGE_COLUMNS} FROM range_buckets"
                " WHERE step = ? AND start >= ? AND start <= ? ORDER BY start",
                (step, first, last),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read database: {exc}") from None

    def prepare_ranges(self, calendar: Calendar) -> str | None:
        from ..ranges import UTC_STEPS, ZONE_STEPS

        db = self._db
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'ranges_tz'").fetchone()
            zone = row[0] if row else None
            if zone == calendar.name:
                return None
            with self._tx():
                if zone is None:
                    events = self.event_count()
                    db.execute("DELETE FROM range_buckets")
                    db.execute("DELETE FROM user_minutes")
                    for statement in _MINUTES_FROM_EVENTS.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    steps = (*list(UTC_STEPS)[1:], *ZONE_STEPS)
                    what = (  # a new file has nothing to say
                        f"built the range rollups from {events:,} stored events" if events else None
                    )
                else:
                    steps = ZONE_STEPS
                    what = f"rebuilt the hour, day, week and month rollups for {calendar.name}"
                    what += f" (they were for {zone})"
                skipped = self._rebuild_ranges(calendar, steps)
                if skipped:
                    what = f"{what or 'built the range rollups'}; skipped {skipped:,} rows dated"
                    what += f" where {calendar.name} has no calendar day"
                db.execute("INSERT OR REPLACE INTO meta VALUES ('ranges_tz', ?)", (calendar.name,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot build the range rollups: {exc}") from None
        self._recent.clear()
        return what

    def _rebuild_ranges(self, calendar: Calendar, steps: Sequence[str]) -> int:
        """The rows of ``steps`` from the per-minute rows and user_minutes (one pass each).
        Returns how many rows were skipped: dated where the zone has no calendar day (events
        stored by versions that let such times through; see core.Rollups.load)."""
        db = self._db
        db.executemany("DELETE FROM range_buckets WHERE step = ?", [(s,) for s in steps])
        rows, skipped = calendar.regroup(
            steps,
            db.execute(
                "SELECT start, revenue_cents, completed, failed, started, views, peak"
                " FROM range_buckets WHERE step = '1m'"
            ),
            db.execute("SELECT user_id, minute FROM user_minutes"),  # key order
        )
        db.executemany(
            "INSERT INTO range_buckets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(step, first, *acc) for (step, first), acc in rows.items()],
        )
        return skipped

    def prune_events(self, before: float, after: int, limit: int) -> tuple[int, int]:
        """Delete the events dated before ``before`` among the ``limit`` that follow seq
        ``after``; returns (deleted, the last seq looked at, or 0 at the end of the log)."""
        db = self._db
        try:
            with self._tx():
                last = db.execute(
                    "SELECT max(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq"
                    " LIMIT ?)",
                    (after, limit),
                ).fetchone()[0]
                if last is None:
                    return 0, 0
                deleted = db.execute(
                    "DELETE FROM events WHERE seq > ? AND seq <= ? AND ts < ?",
                    (after, last, before),
                ).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from None
        return deleted, last

    def save_sample(
        self, peaks: Peaks, ts: float | None, data: str | None, keep: int, ranges: RangeSamples = ()
    ) -> None:
        db = self._db
        try:
            with self._tx():
                db.executemany(
                    "INSERT INTO peaks VALUES (?, ?)"
                    " ON CONFLICT(minute) DO UPDATE SET value = max(value, excluded.value)",
                    peaks,
                )
                db.executemany(_PEAK_RANGE, ranges)
                if peaks:
                    newest = max(m for m, _ in peaks)
                    db.execute("DELETE FROM peaks WHERE minute <= ?", (newest - 24 * 60,))
                if data is not None:
                    seq = db.execute(
                        "INSERT INTO history (ts, data) VALUES (?, ?)", (ts, data)
                    ).lastrowid
                    db.execute("DELETE FROM history WHERE seq <= ?", (seq - keep,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from None

    def register(self, broker: str | None) -> None:
        """One server per file (the flock): no registry, and no broker to agree on."""

    def heartbeat(self) -> None:
        pass

    def event_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        # Another connection may hold the WAL; the data is committed either way.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        self._release()  # only once the file is closed may another server open it

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

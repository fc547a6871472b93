"""Embedded SQLite store: one file, WAL, a full fsync per commit (batches that queue behind a
commit in flight share the next one: group commit).

The raw events are kept (nothing accepted is ever lost) next to the rollups that make a
snapshot cheap: counters, completed revenue per 15-minute UTC bucket, each user's latest event
time, per-minute peak samples, the last interval snapshots for ``history``, and the batches'
idempotency keys (24 h).
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import Plan, TxnRecord
from ..events import ContentView, TransactionEvent, UserActivity
from .base import BatchKey, LoadedState, StoreError
from .lock import DatabaseLock

SCHEMA_VERSION = "1"

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

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def load(self, now: float, user_horizon: float, history: int) -> LoadedState:
        db = self._db
        try:
            return LoadedState(
                counters=dict(db.execute("SELECT name, value FROM counters").fetchall()),
                revenue_buckets=db.execute("SELECT bucket, cents FROM revenue_buckets").fetchall(),
                users=db.execute(
                    "SELECT user_id, last_seen FROM users WHERE last_seen >= ?",
                    (now - user_horizon,),
                ).fetchall(),
                peaks=db.execute(
                    "SELECT minute, value FROM peaks WHERE minute > ?", (now // 60 - 24 * 60,)
                ).fetchall(),
                history=[
                    r[0]
                    for r in db.execute(
                        "SELECT data FROM (SELECT seq, data FROM history ORDER BY seq DESC LIMIT ?)"
                        " ORDER BY seq",
                        (history,),
                    )
                ],
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read database: {exc}") from None

    def get_transactions(self, ids: Iterable[str]) -> dict[str, TxnRecord]:
        rows = self._select_in("SELECT id, status, amount_cents FROM transactions WHERE id", ids)
        return {txn_id: TxnRecord(status, cents) for txn_id, status, cents in rows}

    def commit_many(
        self, plans: Sequence[Plan], keys: Mapping[str, BatchKey] | None = None
    ) -> None:
        """All the plans in one transaction: one fsync however many batches (group commit)."""
        try:
            with self._tx():
                for plan in plans:
                    self._write(plan)
                if keys:  # a key already stored is an IntegrityError: nothing is written
                    self._db.executemany(
                        "INSERT INTO batch_keys VALUES (?, ?, ?, ?)",
                        [(k, b.accepted, b.digest, b.ts) for k, b in keys.items()],
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write database: {exc}") from None

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

    def save_sample(
        self, peaks: list[tuple[int, int]], ts: float | None, data: str | None, keep: int
    ) -> None:
        db = self._db
        try:
            with self._tx():
                db.executemany(
                    "INSERT INTO peaks VALUES (?, ?)"
                    " ON CONFLICT(minute) DO UPDATE SET value = max(value, excluded.value)",
                    peaks,
                )
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

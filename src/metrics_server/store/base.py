"""The interface every store implements: SQLite (one server) and PostgreSQL (any number).

Methods are blocking; the service calls them from one worker thread, one at a time. Every
method raises StoreError, and only that, when the store cannot answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..core import Plan, TxnRecord

if TYPE_CHECKING:
    from ..ranges import Calendar


class StoreError(RuntimeError):
    """The store cannot be opened or written (unwritable path, disk full, locked, unreachable)."""


#: Seconds between an instance's heartbeats in a shared store's registry (see register()).
HEARTBEAT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class BatchKey:
    """What is remembered of a producer's idempotency key: the ack its batch got, a digest of
    the batch's events (to tell a retry from a reused key), and when it was committed."""

    accepted: int
    digest: bytes
    ts: float  # epoch seconds


@dataclass(slots=True)
class LoadedState:
    counters: dict[str, int] = field(default_factory=dict)
    revenue_buckets: list[tuple[int, int]] = field(default_factory=list)
    users: list[tuple[str, float]] = field(default_factory=list)
    peaks: list[tuple[int, int]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # encoded data objects, oldest first


#: Per-minute peak samples, (minute, value); and range samples, (step, bucket start, value).
Peaks = list[tuple[int, int]]
RangeSamples = Sequence[tuple[str, int, int]]


def read_state(
    execute: Callable[[str, tuple], Any], mark: str, now: float, user_horizon: float, history: int
) -> LoadedState:
    """What a server starts from (see Store.load), read with the adapter's ``execute(sql,
    params)``, ``mark`` being its driver's placeholder ("?" or "%s")."""
    return LoadedState(
        counters=dict(execute("SELECT name, value FROM counters", ()).fetchall()),
        revenue_buckets=execute("SELECT bucket, cents FROM revenue_buckets", ()).fetchall(),
        users=execute(
            f"SELECT user_id, last_seen FROM users WHERE last_seen >= {mark}",
            (now - user_horizon,),
        ).fetchall(),
        peaks=execute(
            f"SELECT minute, value FROM peaks WHERE minute > {mark}", (int(now // 60) - 24 * 60,)
        ).fetchall(),
        history=[
            r[0]
            for r in execute(
                "SELECT data FROM (SELECT seq, data FROM history"
                f" ORDER BY seq DESC LIMIT {mark}) AS h ORDER BY seq",
                (history,),
            )
        ],
    )


class Store(Protocol):
    def load(self, now: float, user_horizon: float, history: int) -> LoadedState: ...

    def atomic(self) -> AbstractContextManager[None]:
        """A write scope: ``with store.atomic(): ...`` reads (get_transactions, get_keys,
        revenue_total) and commit_many inside it form one transaction that no other writer,
        in this process or another, interleaves with; it commits at the end of the block and
        writes nothing if the block raises. Planning a batch against stored states and
        committing it is exact only inside one such scope. Raises StoreError."""

    def get_transactions(self, ids: Iterable[str]) -> Mapping[str, TxnRecord]: ...

    def revenue_total(self) -> int:
        """The stored revenue counter, in cents (the overflow guard reads it in a scope)."""

    def commit_many(
        self, plans: Sequence[Plan], keys: Mapping[str, BatchKey] | None = None
    ) -> None:
        """Write several batches' plans, in order, and the idempotency keys of those that have
        one, in one atomic and durable transaction (group commit: one fsync for all), or raise
        StoreError and write none of them (also when a key is already stored)."""

    def get_keys(self, keys: Iterable[str]) -> Mapping[str, BatchKey]:
        """The idempotency keys among ``keys`` that are remembered. Raises StoreError."""

    def forget_keys(self, before: float) -> int:
        """Forget the keys committed before ``before`` (epoch seconds); returns how many.
        Raises StoreError."""

    def save_sample(
        self, peaks: Peaks, ts: float | None, data: str | None, keep: int, ranges: RangeSamples = ()
    ) -> None:
        """Keep per-minute peak samples and, when ``data`` is given, one interval snapshot;
        ``ranges`` are the same samples as (step, bucket start, value) for the range rows,
        whose peak only grows."""

    def range_rows(self, step: str, first: int, last: int) -> list[tuple]:
        """The range rows of ``step`` whose start is from ``first`` to ``last`` (both
        included), by start: (start, revenue_cents, completed, failed, started, views, users,
        peak or None). Raises StoreError."""

    def prepare_ranges(self, calendar: Calendar) -> str | None:
        """Make the range rows true for ``calendar``'s zone before serving: build them all
        from the raw events once (a database from before them), or rebuild the zone's steps
        (1h and longer) when the zone changed. Returns what was done, for the log, or None.
        Raises StoreError (nothing changed)."""

    def prune_events(self, before: float, after: int, limit: int) -> tuple[int, int]:
        """Delete raw events dated before ``before`` among the ``limit`` that follow seq
        ``after`` (rollups stay); returns (how many, the last seq looked at, 0 past the
        end). Raises StoreError."""

    def register(self, broker: str | None) -> None:
        """Enter this server in the store's instance registry, or raise StoreError when
        another live instance uses the store without a broker or with another one. A store
        only one server can open (SQLite) has nothing to check."""

    def heartbeat(self) -> None:
        """Keep this server's registry entry live (every HEARTBEAT_SECONDS)."""

    def event_count(self) -> int: ...

    def close(self) -> None:
        """Flush, leave the registry, and let go of the store."""


def remember_recent(recent: dict[int, set[str]], added: Mapping[int, set[str]], keep: int) -> None:
    """After a commit: merge its users per minute into ``recent`` and keep only the newest
    ``keep`` minutes there (the adapters' in-memory view of the stored users)."""
    for minute, users in added.items():
        if minute in recent:
            recent[minute].update(users)
        else:
            recent[minute] = users
    if len(recent) > keep:
        newest = max(recent)
        for minute in [m for m in recent if m <= newest - keep]:
            del recent[minute]

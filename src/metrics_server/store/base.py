"""The interface every store implements (SQLite now; PostgreSQL plugs in here later).

Methods are blocking; the service calls them from one worker thread, one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..core import Plan, TxnRecord

if TYPE_CHECKING:
    from ..ranges import Calendar


class StoreError(RuntimeError):
    """The store cannot be opened or written (unwritable path, disk full, locked)."""


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


class Store(Protocol):
    def load(self, now: float, user_horizon: float, history: int) -> LoadedState: ...

    def get_transactions(self, ids: Iterable[str]) -> Mapping[str, TxnRecord]: ...

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
        self,
        peaks: list[tuple[int, int]],
        ts: float | None,
        data: str | None,
        keep: int,
        ranges: Sequence[tuple[str, int, int]] = (),
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

    def event_count(self) -> int: ...

    def close(self) -> None: ...

"""The interface every store implements (SQLite now; PostgreSQL plugs in here later).

Methods are blocking; the service calls them from one worker thread, one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..core import Plan, TxnRecord


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
        self, peaks: list[tuple[int, int]], ts: float | None, data: str | None, keep: int
    ) -> None:
        """Keep per-minute peak samples and, when ``data`` is given, one interval snapshot."""

    def event_count(self) -> int: ...

    def close(self) -> None: ...

"""MetricsService: ingest -> store -> rollups -> publish. No sockets here.

Blocking store calls run on one worker thread, one at a time, so the event loop never waits on
disk and SQLite sees a single writer. Batches are serialised by a lock: a batch is validated
against the stored transaction states, committed, and only then applied to the in-memory
rollups, so memory never runs ahead of disk.

Group commit: batches that arrive while a commit is in flight wait together and are then
committed in one store transaction (one fsync for all of them), each still validated on its own,
in arrival order, against the stored states plus those of the batches before it in the group. A
batch with a bad event is refused alone; a store failure refuses the whole group, none of which
is then stored.

Idempotency keys: a batch may carry a producer-chosen key, stored in the batch's own transaction
and remembered for ``KEY_TTL``. A batch whose key is remembered is not applied again: it gets
its first ack back, marked as a duplicate, so that a producer's retry counts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from metrics_protocol import wire
from metrics_protocol.wire import Kind, Metrics

from .core import USER_HORIZON, Plan, Rollups, StoredStateError, TxnRecord, plan_batch, txn_ids
from .events import Event, EventError, parse_batch
from .store import BatchKey, Store, StoreError

log = logging.getLogger("metrics_server")

T = TypeVar("T")
Listener = Callable[[Metrics, Kind], None]

#: Longest idempotency key, in characters (a UUID is 36; room for a producer's own prefix).
KEY_MAX = 200
#: How long a key is remembered: a retry within a day of the first try counts once.
KEY_TTL = 24 * 3600.0


class KeyReused(ValueError):
    """A batch's key is remembered for a batch with other events: refused, nothing stored."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A batch's ack: how many events it holds, and whether its key had already been seen."""

    accepted: int
    duplicate: bool = False


@dataclass(slots=True)
class _Batch:
    events: list[Event]
    key: str | None
    digest: bytes
    done: asyncio.Future[Receipt]


def _digest(raw_events: Any) -> bytes:
    """A fingerprint of a batch's events as sent (key order aside), to tell a retry of the
    same batch from a key reused for another one."""
    text = json.dumps(raw_events, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class MetricsService:
    """The server's state. Method names follow the seed's MetricsService."""

    def __init__(
        self,
        store: Store,
        *,
        tz: str = "UTC",
        interval: float = 5.0,
        history: int = 20,
        push_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.interval = interval
        self.push_interval = push_interval
        self.clock = clock
        self.rollups = Rollups(tz)
        self.history: deque[Metrics] = deque(maxlen=history)
        self._listeners: list[Listener] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="metrics-store")
        self._lock = asyncio.Lock()
        self._pending: list[_Batch] = []
        self._ticker: asyncio.Task[None] | None = None
        self._push_handle: asyncio.TimerHandle | None = None
        self._last_push = float("-inf")
        self._last_figures: tuple[Any, ...] | None = None
        self.store_error: str | None = None  # the last store failure, until a write succeeds

    # ---- lifecycle

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        """Rebuild the rollups and history from the store."""
        now = self.clock()
        state = await self._run(self.store.load, now, USER_HORIZON, self.history.maxlen)
        try:
            skipped = self.rollups.load(
                state.counters, state.revenue_buckets, state.users, state.peaks, now
            )
        except StoredStateError as exc:  # one line and exit 1 (cli), not a traceback
            where = getattr(self.store, "path", "the store")
            raise StoreError(f"cannot start from {where}: {exc}") from None
        for n, data in enumerate(state.history, 1):
            try:
                self.history.append(wire.decode_data(wire.loads(data)))
            except (ValueError, TypeError, ArithmeticError):  # any shape a bad row can take
                skipped.append(f"history row {n} of {len(state.history)}: not a snapshot")
        for row in skipped[:20]:
            log.warning("skipping a stored row that cannot count: %s", row)
        if len(skipped) > 20:
            log.warning("skipping %d more such rows", len(skipped) - 20)

    async def close(self) -> None:
        await self.stop_metrics_updates()
        if self._push_handle is not None:
            self._push_handle.cancel()
            self._push_handle = None
        async with self._lock:  # let an in-flight batch finish committing
            peaks = self.rollups.take_unsaved_peaks()
            if peaks:
                try:
                    await self._run(self.store.save_sample, peaks, None, None, 0)
                except StoreError as exc:
                    log.warning("%s", exc)
            await self._run(self.store.close)
        self._executor.shutdown(wait=True)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # ---- ingest

    async def ingest(self, raw_events: Any) -> int:
        """Validate, durably commit and apply one batch (all or nothing); returns its size.

        Raises EventError for bad input and StoreError when the store cannot take it; in both
        cases nothing of the batch is stored or counted.
        """
        return (await self.submit(raw_events)).accepted

    async def submit(self, raw_events: Any, key: str | None = None) -> Receipt:
        """:meth:`ingest`, with an optional idempotency key: a batch whose key is remembered
        changes nothing and gets the first one's count back with ``duplicate`` set.

        Raises EventError (also for a bad key), KeyReused, or StoreError; then nothing of the
        batch is stored or counted.
        """
        if key is not None and not (isinstance(key, str) and 1 <= len(key) <= KEY_MAX):
            raise EventError(f"'key' must be a string of 1 to {KEY_MAX} characters")
        events = parse_batch(raw_events, self.clock())
        done: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        entry = _Batch(events, key, _digest(raw_events) if key is not None else b"", done)
        self._pending.append(entry)
        try:
            async with self._lock:
                if not done.done():  # nobody took it into a group yet: commit all that waits
                    group, self._pending = self._pending, []
                    await asyncio.shield(self._commit_group(group))
        except asyncio.CancelledError:
            if any(e is entry for e in self._pending):
                self._pending = [e for e in self._pending if e is not entry]
            raise
        return done.result()

    async def _commit_group(self, group: list[_Batch]) -> None:
        try:
            results = await self._run(self._plan_and_commit, group)
        except BaseException as exc:  # pragma: no cover - the worker itself failed
            for batch in group:
                if not batch.done.done():
                    batch.done.set_exception(exc)
            raise
        now = self.clock()
        applied = False
        for batch, result in zip(group, results, strict=True):
            if isinstance(result, Plan):
                try:
                    self.rollups.apply(result, now)
                except Exception:  # plan_batch checked what could fail here; defence in depth
                    # Committed, so it must be acknowledged (a retry would count it twice); the
                    # live figures may be off until a restart rebuilds them from the store.
                    log.exception("a stored batch could not be added to the live figures")
                batch.done.set_result(Receipt(len(batch.events)))
                applied = True
            elif isinstance(result, Receipt):
                batch.done.set_result(result)
            else:
                batch.done.set_exception(result)
        if applied:
            self.store_error = None
            self._changed()

    def _plan_and_commit(self, batches: list[_Batch]) -> list[Plan | Receipt | Exception]:
        """Plan each batch in order (each sees the ones before it), then commit the valid ones
        and their keys in one transaction. Returns, per batch, its plan, the receipt of the
        batch whose key it repeats, or the exception that refuses it."""
        results: list[Plan | Receipt | Exception] = []
        plans: list[Plan] = []
        planned: dict[str, TxnRecord] = {}  # states written by earlier batches of this group
        # Read here, on the store's thread, while the loop holds the lock: nothing applies now.
        revenue = self.rollups.counters.revenue_cents
        keys: dict[str, BatchKey] = {}  # keys of this group's planned batches
        repeats: set[int] = set()  # results that repeat a key of this group: its commit decides
        now = self.clock()
        for batch in batches:
            events, key = batch.events, batch.key
            try:
                if key is not None:
                    seen = keys.get(key)
                    if seen is not None:
                        repeats.add(len(results))
                    else:
                        seen = self.store.get_keys((key,)).get(key)
                    if seen is not None:
                        if seen.digest != batch.digest:
                            raise KeyReused(
                                f"key {key!r} was used for a batch with other events; "
                                "nothing of this one was stored"
                            )
                        results.append(Receipt(seen.accepted, duplicate=True))
                        continue
                ids = txn_ids(events)
                known = dict(self.store.get_transactions(ids.difference(planned)))
                known.update((i, planned[i]) for i in ids if i in planned)
                plan = plan_batch(events, known, revenue)
            except (EventError, StoreError, KeyReused) as exc:
                repeats.discard(len(results))
                results.append(exc)
                continue
            revenue += plan.counters.revenue_cents
            planned.update(plan.txns)
            plans.append(plan)
            results.append(plan)
            if key is not None:
                keys[key] = BatchKey(len(events), batch.digest, now)
        if plans:
            try:
                self.store.commit_many(plans, keys)
            except StoreError as exc:
                self.store_error = str(exc)
                return [
                    StoreError(str(exc)) if isinstance(r, Plan) or i in repeats else r
                    for i, r in enumerate(results)
                ]
        return results

    async def track_user_activity(self, user_id: str, ts: Any = None) -> None:
        await self.ingest([_event("user_activity", userId=user_id, ts=ts)])

    async def track_content_view(
        self, content_id: str, user_id: str | None = None, ts: Any = None
    ) -> None:
        await self.ingest([_event("content_view", contentId=content_id, userId=user_id, ts=ts)])

    async def record_transaction(
        self,
        id: str,
        status: str,
        amount: Any = None,
        user_id: str | None = None,
        content_id: str | None = None,
        ts: Any = None,
    ) -> None:
        await self.ingest(
            [
                _event(
                    "transaction",
                    id=id,
                    status=status,
                    amount=amount,
                    userId=user_id,
                    contentId=content_id,
                    ts=ts,
                )
            ]
        )

    # ---- snapshots and publishing

    def get_metrics(self) -> Metrics:
        """The current figures (each call is also a peak sample)."""
        now = self.clock()
        self.rollups.sample_peak(now)
        return self.rollups.snapshot(now)

    def _publish(self, metrics: Metrics, kind: Kind) -> None:
        for listener in list(self._listeners):
            try:
                listener(metrics, kind)
            except Exception:  # a broken listener must not stop the others
                log.exception("metrics listener failed")

    def _changed(self) -> None:
        """Push a change snapshot: at once after a quiet spell, then at most every push_interval."""
        if self._push_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_push + self.push_interval - loop.time()
        if wait <= 0:
            self._push_change()
        else:
            self._push_handle = loop.call_later(wait, self._push_change)

    def _push_change(self) -> None:
        self._push_handle = None
        self._last_push = asyncio.get_running_loop().time()
        metrics = self.get_metrics()
        figures = (metrics.revenue, metrics.active_users, metrics.transactions, metrics.content)
        if figures != self._last_figures:
            self._last_figures = figures
            self._publish(metrics, "change")

    async def tick(self) -> Metrics:
        """One interval sample: kept in history (memory and store) and published."""
        metrics = self.get_metrics()
        self.history.append(metrics)
        self._last_figures = (
            metrics.revenue,
            metrics.active_users,
            metrics.transactions,
            metrics.content,
        )
        peaks = self.rollups.take_unsaved_peaks()
        try:
            await self._run(
                self.store.save_sample,
                peaks,
                metrics.timestamp.timestamp(),
                wire.encode_data(metrics),
                self.history.maxlen,
            )
        except StoreError as exc:  # the figures are still right; only the sample is not kept
            self.rollups.unsaved_peaks.update(m for m, _ in peaks)
            log.warning("%s", exc)
        try:  # an indexed delete once an interval: keys older than KEY_TTL are let go
            await self._run(self.store.forget_keys, metrics.timestamp.timestamp() - KEY_TTL)
        except StoreError as exc:
            log.warning("%s", exc)
        self._publish(metrics, "interval")
        return metrics

    def start_metrics_updates(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_loop(), name="metrics-ticker")

    async def stop_metrics_updates(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() - next_at > self.interval:  # we were suspended: skip, don't burst
                next_at = loop.time()
            try:
                await self.tick()
            except Exception:
                log.exception("metrics tick failed")


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **{k: v for k, v in fields.items() if v is not None}}

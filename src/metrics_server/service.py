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
from logging import ERROR, WARNING
from typing import Any, TypeVar

from metrics_protocol import wire
from metrics_protocol.wire import Kind, Metrics

from .core import USER_HORIZON, Plan, Rollups, StoredStateError, TxnRecord, plan_batch, txn_ids
from .events import ContentView, Event, EventError, TransactionEvent, UserActivity, parse_batch
from .logs import event
from .ranges import Calendar, RangeQuery
from .store import HEARTBEAT_SECONDS, BatchKey, Store, StoreError
from .telemetry import Telemetry

log = logging.getLogger("metrics_server")

T = TypeVar("T")
Listener = Callable[[Metrics, Kind], None]

#: Longest idempotency key, in characters (a UUID is 36; room for a producer's own prefix).
KEY_MAX = 200
#: How long a key is remembered: a retry within a day of the first try counts once.
KEY_TTL = 24 * 3600.0
#: Retention: raw events looked at per chunk, and chunks per interval sample. Each chunk is its
#: own short transaction on the store's thread, between batches (about 5 ms for 5,000 rows), so
#: pruning a large backlog never holds ingest up for long; the log is walked in seq order and
#: the walk starts over at its end.
PRUNE_CHUNK = 5000
PRUNE_CHUNKS = 4
#: The wire names of the event classes, for events_ingested_total{type}.
EVENT_NAMES = {
    UserActivity: "user_activity",
    ContentView: "content_view",
    TransactionEvent: "transaction",
}


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
        retention: float | None = None,
    ) -> None:
        self.store = store
        #: Days of raw events to keep (None: all); the rollups are kept whatever it is.
        self.retention = retention
        self._prune_after = 0  # the seq the retention walk goes on from
        self.calendar = Calendar(tz)
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
        self._heartbeat: asyncio.Task[None] | None = None
        self._push_handle: asyncio.TimerHandle | None = None
        self._last_push = float("-inf")
        self._last_figures: tuple[Any, ...] | None = None
        self.store_error: str | None = None  # the last store failure, until a write succeeds
        self.telemetry = Telemetry(event_names=EVENT_NAMES)
        #: When the oldest commit not yet pushed to subscribers was applied (perf_counter).
        self._unpushed_since: float | None = None
        # After a failed commit, whose outcome a lost connection leaves unknown, the rollups
        # are rebuilt from the store before the next group (which the worker hands over here).
        self._resync = False
        self._fresh: Rollups | None = None
        self._commit_started: float | None = None

    # ---- lifecycle

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        """Rebuild the rollups and history from the store."""
        now = self.clock()
        built = await self._run(self.store.prepare_ranges, self.calendar)
        if built:
            log.info("%s", built)
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
            event(WARNING, "row_skipped", "skipping a stored row that cannot count: %s", row)
        if len(skipped) > 20:
            event(WARNING, "row_skipped", "skipping %d more such rows", len(skipped) - 20)

    async def close(self) -> None:
        await self.stop_metrics_updates()
        if self._push_handle is not None:
            self._push_handle.cancel()
            self._push_handle = None
        async with self._lock:  # let an in-flight batch finish committing
            peaks = self.rollups.take_unsaved_peaks()
            if peaks:
                try:
                    ranges = self.calendar.peaks(peaks)
                    await self._run(self.store.save_sample, peaks, None, None, 0, ranges)
                except StoreError as exc:
                    self._store_failed("save_peaks", exc)
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
        if self._fresh is not None:  # what the store holds, and this server's unsaved peaks
            fresh, old = self._fresh, self.rollups
            for minute in old.unsaved_peaks:
                fresh.peaks[minute] = max(fresh.peaks.get(minute, 0), old.peaks.get(minute, 0))
            fresh.unsaved_peaks = old.unsaved_peaks
            self.rollups, self._fresh = fresh, None
        now = self.clock()
        applied = False
        for batch, result in zip(group, results, strict=True):
            if isinstance(result, Plan):
                self.telemetry.events.update(map(type, batch.events))  # C-speed, per batch
                try:
                    self.rollups.apply(result, now)
                except Exception:  # plan_batch checked what could fail here; defence in depth
                    # Committed, so it must be acknowledged (a retry would count it twice); the
                    # live figures may be off until a restart rebuilds them from the store.
                    msg = "a stored batch could not be added to the live figures"
                    event(ERROR, "apply_failed", msg, exc_info=True)
                batch.done.set_result(Receipt(len(batch.events)))
                applied = True
            elif isinstance(result, Receipt):
                batch.done.set_result(result)
            else:
                batch.done.set_exception(result)
        if applied:
            self.store_error = None
            if self._unpushed_since is None:
                self._unpushed_since = time.perf_counter()
            self._changed()

    def _plan_and_commit(self, batches: list[_Batch]) -> list[Plan | Receipt | Exception]:
        """Plan each batch in order (each sees the ones before it), then commit the valid ones
        and their keys in one transaction. Returns, per batch, its plan, the receipt of the
        batch whose key it repeats, or the exception that refuses it.

        Reads and commit share one ``store.atomic()`` scope: on a store shared by several
        servers, none can change a transaction, a key or the revenue total in between."""
        results: list[Plan | Receipt | Exception] = []
        repeats: set[int] = set()  # results that repeat a key of this group: its commit decides
        try:
            if self._resync:
                now = self.clock()
                state = self.store.load(now, USER_HORIZON, 0)
                fresh = Rollups(self.rollups.tz)
                try:
                    fresh.load(state.counters, state.revenue_buckets, state.users, state.peaks, now)
                except StoredStateError as exc:
                    raise StoreError(f"cannot reload the figures: {exc}") from None
                self._fresh, self._resync = fresh, False
            self._commit_started = None
            with self.store.atomic():
                self._plan_group(batches, results, repeats)
        except StoreError as exc:
            self.store_error = str(exc)
            self._resync = True
            self._store_failed("commit", exc, batches=len(batches))
            results += [exc] * (len(batches) - len(results))  # those not planned yet
            return [
                StoreError(str(exc)) if isinstance(r, Plan) or i in repeats else r
                for i, r in enumerate(results)
            ]
        if self._commit_started is not None:  # the writes and the COMMIT that ends the scope
            self.telemetry.commit_seconds.observe(time.perf_counter() - self._commit_started)
        return results

    def _plan_group(
        self, batches: list[_Batch], results: list[Plan | Receipt | Exception], repeats: set[int]
    ) -> None:
        plans: list[Plan] = []
        planned: dict[str, TxnRecord] = {}  # states written by earlier batches of this group
        # The stored total, not this server's: another one may have added to it.
        revenue = self.store.revenue_total()
        keys: dict[str, BatchKey] = {}  # keys of this group's planned batches
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
                plan.ranges = self.calendar.delta(plan)
            except (EventError, KeyReused) as exc:
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
            self._commit_started = time.perf_counter()
            self.store.commit_many(plans, keys)

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

    def _store_failed(self, op: str, exc: StoreError, **context: Any) -> None:
        """One line and one count per failed store operation (a commit of a whole group too);
        a commit's batches are refused, a sample's figures stay right in memory."""
        self.telemetry.store_errors += 1
        level = ERROR if op == "commit" else WARNING
        event(
            level, "store_error", "store %s failed: %s", op, exc, op=op, error=str(exc), **context
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
                event(ERROR, "listener_failed", "metrics listener failed", exc_info=True)

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

    def _pushed(self, since: float | None) -> None:
        """A snapshot taken when ``_unpushed_since`` was ``since`` went out: how long its
        oldest commit waited for it (push_lag_seconds). A commit applied since then waits on."""
        if since is not None:
            self.telemetry.push_lag_seconds.observe(time.perf_counter() - since)
        if self._unpushed_since is since:
            self._unpushed_since = None

    def _push_change(self) -> None:
        self._push_handle = None
        self._last_push = asyncio.get_running_loop().time()
        metrics = self.get_metrics()
        figures = (metrics.revenue, metrics.active_users, metrics.transactions, metrics.content)
        if figures != self._last_figures:
            self._last_figures = figures
            self._publish(metrics, "change")
            self._pushed(self._unpushed_since)
        self._unpushed_since = None  # pushed, or no figure moved: nothing is waiting

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
        # Published before the writes below: they queue behind any commit in flight on the
        # store's thread, and that commit's change push would otherwise go out first, leaving
        # subscribers with this older sample as the last word until the next update.
        self._publish(metrics, "interval")
        self._pushed(self._unpushed_since)
        peaks = self.rollups.take_unsaved_peaks()
        try:
            await self._run(
                self.store.save_sample,
                peaks,
                metrics.timestamp.timestamp(),
                wire.encode_data(metrics),
                self.history.maxlen,
                self.calendar.peaks(peaks),
            )
        except StoreError as exc:  # the figures are still right; only the sample is not kept
            self.rollups.unsaved_peaks.update(m for m, _ in peaks)
            self._store_failed("save_sample", exc)
        try:  # an indexed delete once an interval: keys older than KEY_TTL are let go
            await self._run(self.store.forget_keys, metrics.timestamp.timestamp() - KEY_TTL)
        except StoreError as exc:
            self._store_failed("forget_keys", exc)
        if self.retention is not None:
            await self.prune(metrics.timestamp.timestamp() - self.retention * 86400)
        return metrics

    async def prune(self, before: float, chunks: int = PRUNE_CHUNKS) -> int:
        """Delete up to ``chunks`` chunks' worth of raw events dated before ``before``, going
        on along the log from where the last call stopped; returns how many went."""
        deleted = 0
        for _ in range(chunks):
            try:
                n, self._prune_after = await self._run(
                    self.store.prune_events, before, self._prune_after, PRUNE_CHUNK
                )
            except StoreError as exc:
                self._store_failed("prune_events", exc)
                break
            deleted += n
            if self._prune_after == 0:  # the end of the log: start over next time
                break
        return deleted

    async def range(self, query: RangeQuery) -> wire.Range:
        """The figures per step over a validated range (``calendar.parse``), from the range
        rollups: never a scan of raw events. Raises StoreError (logged and counted here)."""
        try:
            rows = await self._run(
                self.store.range_rows, query.step, query.starts[0], query.starts[-1]
            )
        except StoreError as exc:
            self._store_failed("range_rows", exc)
            raise
        peaks = self.rollups.peaks  # samples the store may not have yet
        live = [(m, peaks[m]) for m in self.rollups.unsaved_peaks if m in peaks]
        return self.calendar.answer(query, rows, live)

    def start_metrics_updates(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_loop(), name="metrics-ticker")
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="metrics-heartbeat")

    async def stop_metrics_updates(self) -> None:
        for task in (self._ticker, self._heartbeat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._heartbeat = None

    async def _heartbeat_loop(self) -> None:
        """Keep this server's entry in a shared store's registry live (not on the interval:
        at --interval 3600 it would lapse)."""
        failing = False
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._run(self.store.heartbeat)
            except StoreError as exc:
                if not failing:  # once per outage, not every 2 s
                    log.warning("%s", exc)
                failing = True
            else:
                failing = False

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
                event(ERROR, "tick_failed", "metrics tick failed", exc_info=True)


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **{k: v for k, v in fields.items() if v is not None}}

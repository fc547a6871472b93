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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from metrics_protocol import wire
from metrics_protocol.wire import Kind, Metrics

from .core import USER_HORIZON, Plan, Rollups, TxnRecord, plan_batch, txn_ids
from .events import Event, EventError, parse_batch
from .store import Store, StoreError

log = logging.getLogger("metrics_server")

T = TypeVar("T")
Listener = Callable[[Metrics, Kind], None]


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
        self._pending: list[tuple[list[Event], asyncio.Future[int]]] = []
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
        self.rollups.load(state.counters, state.revenue_buckets, state.users, state.peaks, now)
        for data in state.history:
            try:
                self.history.append(wire.decode_data(wire.loads(data)))
            except wire.ProtocolError:
                log.warning("skipping an unreadable history row")

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
        events = parse_batch(raw_events, self.clock())
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (events, done)
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

    async def _commit_group(self, group: list[tuple[list[Event], asyncio.Future[int]]]) -> None:
        try:
            results = await self._run(self._plan_and_commit, [events for events, _ in group])
        except BaseException as exc:  # pragma: no cover - the worker itself failed
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
            raise
        now = self.clock()
        applied = False
        for (events, done), result in zip(group, results, strict=True):
            if isinstance(result, Plan):
                self.rollups.apply(result, now)
                done.set_result(len(events))
                applied = True
            else:
                done.set_exception(result)
        if applied:
            self.store_error = None
            self._changed()

    def _plan_and_commit(self, batches: list[list[Event]]) -> list[Plan | Exception]:
        """Plan each batch in order (each sees the ones before it), then commit the valid ones
        in one transaction. Returns, per batch, its plan or the exception that refuses it."""
        results: list[Plan | Exception] = []
        plans: list[Plan] = []
        planned: dict[str, TxnRecord] = {}  # states written by earlier batches of this group
        for events in batches:
            ids = txn_ids(events)
            try:
                known = dict(self.store.get_transactions(ids.difference(planned)))
                known.update((i, planned[i]) for i in ids if i in planned)
                plan = plan_batch(events, known)
            except (EventError, StoreError) as exc:
                results.append(exc)
                continue
            planned.update(plan.txns)
            plans.append(plan)
            results.append(plan)
        if plans:
            try:
                self.store.commit_many(plans)
            except StoreError as exc:
                self.store_error = str(exc)
                return [StoreError(str(exc)) if isinstance(r, Plan) else r for r in results]
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

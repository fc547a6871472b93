"""Several servers behind one address, on one PostgreSQL store and one Redis (``--broker``).

One server at a time computes the snapshots: the leader, the holder of a session-level
advisory lock in PostgreSQL (store.try_lead). The lock lives as long as the leader's session:
PostgreSQL releases it the moment a killed leader's socket closes, and it needs no Redis, so a
Redis outage never elects a second leader. Each takeover draws a new term from a sequence;
the leader's epoch starts with it (``<term>.<random>``), so that a relay can tell a deposed
leader's late publications from the new one's and ignore them.

The leader's figures stay exact without reading the tables again: at takeover it loads them
with the id of the last entry of the ``deltas`` log (one snapshot of the database), then
applies every later entry in id order. Every server writes an entry in the transaction of each
commit, under the write lock, so ids commit in order. A commit notice on Redis wakes the
leader at once; it also reads the log every TAIL_POLL seconds, should a notice be lost.

Each snapshot the leader publishes goes, in one Redis transaction, into the cache (the latest,
and the history of interval samples, TTL 10 s) and onto the channel. The other servers relay
it to their subscribers as it is, byte for byte, after checking its place: a seq that skips
(Redis pub/sub is at most once) or a new epoch makes them read the history again from the
cache; a heartbeat every second, carrying the latest (epoch, seq), makes a lost last message
noticed too. Greetings and REST answers come from the relayed copy of the cache while the
subscription is live, else from the cache itself, else (Redis down, or a cold cache) from the
store: computed here, in an epoch of this server's own (docs/SCALING.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from metrics_protocol import wire
from metrics_protocol.wire import Metrics

from .broker import BrokerError, RedisBroker
from .core import USER_HORIZON, Rollups, StoredStateError
from .service import MetricsService, Publication, new_epoch
from .store import StoreError

log = logging.getLogger("metrics_server")

T = TypeVar("T")

#: Seconds between a relay's tries at the leader's lock, and between the leader's checks that
#: it still holds it. A killed leader is replaced within this (plus a takeover, ~0.1 s).
LEAD_POLL = 0.5
#: The leader reads the deltas log at least this often, notices or not.
TAIL_POLL = 0.25
#: Deltas read at once; more wait for the next read, at once.
TAIL_BATCH = 1000
#: Seconds between the leader's heartbeats (and cache refreshes).
HEARTBEAT = 1.0
#: A snapshot computed from the store (the fallback) is reused for this long.
FALLBACK_TTL = 1.0
#: Seconds between deletions of the deltas the leader has applied.
PRUNE_EVERY = 10.0


def term_of(epoch: str) -> int:
    """The leader's term an epoch starts with; -1 for any other epoch."""
    head, dot, _ = epoch.partition(".")
    return int(head) if dot and head.isdigit() else -1


class Cluster:
    """The broker mode of one server: leader or relay, switching as the lock decides."""

    def __init__(self, service: MetricsService, store: Any, broker: RedisBroker) -> None:
        self.service = service
        self.store = store
        self.broker = broker
        self.leading = False
        self.term = -1  # the highest leader's term seen
        self.applied = 0  # the last delta applied (leader)
        #: Whether service.latest is the leader's latest, as relayed by a live subscription.
        self.mirror = False
        self.local_epoch = new_epoch("local.")
        self.local_seq = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="metrics-cluster")
        self._wake = asyncio.Event()
        self._notice = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, Publication | None, list[str] | None]] = (
            asyncio.Queue()
        )
        self._cache_dirty = True
        self._broker_failing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._fallback: tuple[float, list[Metrics], Publication] | None = None
        self._fallback_lock = asyncio.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- lifecycle

    async def start(self) -> None:
        svc = self.service
        svc.apply_inline = False
        svc.computing = False
        svc.source = self.greeting
        svc.on_commit = self._on_commit
        svc.add_publication_listener(self._published)
        # Looked up at each message, so that a test can put a lossy link in between.
        self.broker.start(lambda channel, data: self._on_message(channel, data), self._on_link)
        with contextlib.suppress(StoreError):  # a lone server leads from its first answer
            await self._try_lead()
        if not self.leading and self.broker.answering:
            await self._reload()  # a relay greets from the cache from its first answer
        self._tasks = [
            asyncio.create_task(self._lead_loop(), name="metrics-lead"),
            asyncio.create_task(self._notice_loop(), name="metrics-notices"),
            asyncio.create_task(self._publisher(), name="metrics-publisher"),
        ]

    async def stop(self) -> None:
        """Stop leading at once (another server takes over within LEAD_POLL) and relaying."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.leading:
            await self._step_down()
        self.service.remove_publication_listener(self._published)
        await self.broker.close()
        self._executor.shutdown(wait=True)

    # ---- leadership

    async def _lead_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(LEAD_POLL)
            try:
                if not self.leading:
                    await self._try_lead()
                elif not await self._run(self.store.still_leading):
                    log.warning("lost the leader's lock (its PostgreSQL session ended)")
                    await self._step_down()
                failing = False
            except StoreError as exc:
                if not failing:
                    log.warning("%s", exc)
                failing = True
                if self.leading:
                    await self._step_down()
            except Exception:  # a leader that cannot lead must not keep the lock
                log.exception("leadership check failed")
                if self.leading:
                    await self._step_down()

    async def _try_lead(self) -> None:
        term = await self._run(self.store.try_lead)
        if term is None:
            return
        try:
            await self._take_over(term)
        except (StoreError, StoredStateError) as exc:
            log.error("could not take over computing the snapshots: %s", exc)
            await self._give_up()
        except Exception:  # whatever it was, another server may do better: let go of the lock
            log.exception("could not take over computing the snapshots")
            await self._give_up()

    async def _give_up(self) -> None:
        if self.leading:
            await self._step_down()
        else:
            await self._run(self.store.resign)

    async def _take_over(self, term: int) -> None:
        svc = self.service
        now = svc.clock()
        history_len = svc.history.maxlen or 0
        state, last = await self._run(self.store.load_at, now, USER_HORIZON, history_len)
        rollups = Rollups(svc.rollups.tz)
        skipped = rollups.load(state.counters, state.revenue_buckets, state.users, state.peaks, now)
        for row in skipped[:20]:
            log.warning("skipping a stored row that cannot count: %s", row)
        history = []
        for data in state.history:
            with contextlib.suppress(ValueError, TypeError, ArithmeticError):
                history.append(wire.decode_data(wire.loads(data)))
        svc.cancel_push()
        svc.rollups = rollups
        svc.history.clear()
        svc.history.extend(history)
        self.applied = last
        self.term = max(self.term, term)
        svc.begin_epoch(new_epoch(f"{term}."))
        self.leading = svc.computing = True
        self.mirror = False
        self._cache_dirty = True  # the history is written anew with the first publication
        log.info("computing the snapshots now (term %d, epoch %s)", term, svc.epoch)
        svc._publish(svc.get_metrics(), "change")
        self._leader_tasks = [
            asyncio.create_task(self._tail_loop(), name="metrics-tail"),
            asyncio.create_task(self._heartbeat_loop(), name="metrics-beat"),
        ]

    async def _step_down(self) -> None:
        svc = self.service
        self.leading = svc.computing = False
        svc.cancel_push()
        current = asyncio.current_task()
        for task in self._leader_tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._leader_tasks = []
        await self._run(self.store.resign)
        log.info("relaying the snapshots of another server now")

    # ---- the leader: deltas, heartbeats, publishing

    def _on_commit(self) -> None:
        if self.leading:
            self._wake.set()
        else:
            self._notice.set()

    async def _notice_loop(self) -> None:
        while True:
            await self._notice.wait()
            self._notice.clear()  # commits made meanwhile share the next notice
            with contextlib.suppress(BrokerError):  # the leader reads the log anyway
                await self.broker.notify_committed()

    async def _tail_loop(self) -> None:
        svc = self.service
        loop = asyncio.get_running_loop()
        pruned = loop.time()
        failing = False
        while self.leading:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TAIL_POLL):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while True:
                    rows = await self._run(self.store.deltas_after, self.applied, TAIL_BATCH)
                    if not self.leading:
                        return
                    now = svc.clock()
                    for delta_id, plan in rows:
                        svc.rollups.apply(plan, now)
                        self.applied = delta_id
                    if rows:
                        svc._changed()
                    if len(rows) < TAIL_BATCH:
                        break
                if loop.time() - pruned > PRUNE_EVERY:
                    pruned = loop.time()
                    await self._run(self.store.prune_deltas, self.applied)
                failing = False
            except StoreError as exc:
                if not failing:
                    log.warning("%s", exc)
                failing = True
            except Exception:
                # Figures that may have missed a delta must not be published: let go of the
                # lock, so that a server (maybe this one) loads them afresh from the store.
                log.exception("applying the deltas log failed; stepping down")
                task = asyncio.create_task(self._give_up(), name="metrics-give-up")
                self._tasks.append(task)  # held (and cancelled by stop()) like the others
                return

    async def _heartbeat_loop(self) -> None:
        while self.leading:
            await asyncio.sleep(HEARTBEAT)
            self._queue.put_nowait(("beat", None, None))

    def _published(self, pub: Publication) -> None:
        """Every publication of this server, while it leads, goes to Redis in order."""
        if not self.leading or pub.epoch != self.service.epoch:
            return
        history = None
        if self._cache_dirty:  # as it is now: it already holds this interval sample
            history = [wire.encode_data(m) for m in self.service.history]
            self._cache_dirty = False
        self._queue.put_nowait(("pub", pub, history))

    async def _publisher(self) -> None:
        svc = self.service
        while True:
            what, pub, history = await self._queue.get()
            try:
                if what == "pub" and pub is not None:
                    interval = wire.encode_data(pub.metrics) if pub.kind == "interval" else None
                    await self.broker.publish(pub.text, interval_data=interval, history=history)
                elif what == "beat" and self.leading and svc.latest is not None:
                    beat = json.dumps(
                        {"type": "heartbeat", "epoch": svc.latest.epoch, "seq": svc.latest.seq},
                        separators=(",", ":"),
                    )
                    if not await self.broker.heartbeat(beat) or self._cache_dirty:
                        # Redis lost the cache (it restarted): write it anew.
                        self._cache_dirty = False
                        whole = [wire.encode_data(m) for m in svc.history]
                        await self.broker.publish(svc.latest.text, history=whole)
                if self._broker_failing:
                    log.info("broker %s: publishing again", self.broker.shown)
                self._broker_failing = False
            except Exception as exc:  # BrokerError, or anything else: the loop must go on
                if not isinstance(exc, BrokerError):
                    log.exception("publishing to the broker failed")
                elif not self._broker_failing:
                    log.warning("%s; local subscribers still get the snapshots", exc)
                self._broker_failing = True
                self._cache_dirty = True  # rewritten whole once Redis answers again
                while not self._queue.empty():  # stale by then: the cache is rewritten
                    self._queue.get_nowait()

    # ---- a relay: the subscription

    async def _on_link(self, up: bool) -> None:
        if up:
            await self._reload()
        else:
            self.mirror = False

    async def _on_message(self, channel: str, data: str) -> None:
        if channel == self.broker.committed:
            if self.leading:
                self._wake.set()
            return
        if self.leading:  # this server's own publications, or a deposed leader's
            return
        try:
            msg = wire.loads(data)
            pos = wire.position(msg)
        except wire.ProtocolError as exc:
            log.warning("broker: not a publication (%s)", exc)
            return
        if pos is None:
            return
        epoch, seq = pos
        term = term_of(epoch)
        if term < self.term:  # a deposed leader's late word
            return
        latest = self.service.latest
        same = self.mirror and latest is not None and latest.epoch == epoch
        kind = msg.get("type")
        if kind == "heartbeat":
            if not same or (latest is not None and seq > latest.seq):
                await self._reload()  # the last publication was lost on the way
            return
        if kind != "metrics" or msg.get("kind") not in ("change", "interval"):
            return
        if same and latest is not None and seq <= latest.seq:
            return
        try:
            pub = Publication(wire.decode_data(msg["data"]), msg["kind"], epoch, seq, data)
        except (wire.ProtocolError, KeyError, TypeError) as exc:
            log.warning("broker: not a publication (%s)", exc)
            return
        gap = not same or latest is None or seq != latest.seq + 1
        self.term = max(self.term, term)
        if pub.kind == "interval":
            self.service.history.append(pub.metrics)
        self.mirror = True
        self.service.relay(pub)
        if gap:  # an interval sample may be missing: the cache has the history
            await self._reload(history_only=True)

    async def _reload(self, history_only: bool = False) -> None:
        """Adopt the cache's latest publication (if newer) and its history."""
        try:
            text, history = await self.broker.load()
        except BrokerError as exc:
            log.warning("%s", exc)
            return
        if text is None or self.leading:
            return  # cold: the leader's next heartbeat writes it
        pub = _publication(text)
        if pub is None or term_of(pub.epoch) < self.term:
            return
        self.term = max(self.term, term_of(pub.epoch))
        svc = self.service
        decoded = [m for m in map(_snapshot, history) if m is not None]
        svc.history.clear()
        svc.history.extend(decoded)
        latest = svc.latest
        newer = (
            not self.mirror or latest is None or latest.epoch != pub.epoch or pub.seq > latest.seq
        )
        self.mirror = True
        if newer and not history_only:
            svc.relay(pub)

    # ---- greetings and REST

    async def greeting(self) -> tuple[list[Metrics], Publication]:
        svc = self.service
        if svc.latest is not None and (self.leading or (self.mirror and self.broker.link_up)):
            return list(svc.history), svc.latest
        if self.broker.link_up or self.broker.answering:
            try:
                text, history = await self.broker.load()
            except BrokerError:
                text = None
            pub = _publication(text) if text is not None else None
            if pub is not None:
                return [m for m in map(_snapshot, history) if m is not None], pub
        try:
            return await self._from_store()
        except (StoreError, StoredStateError) as exc:
            log.warning("%s", exc)
            if svc.latest is None:
                raise
            return list(svc.history), svc.latest  # exact as of its time: stale, not wrong

    async def _from_store(self) -> tuple[list[Metrics], Publication]:
        """The figures computed here from the store, in this server's own epoch."""
        loop = asyncio.get_running_loop()
        async with self._fallback_lock:
            cached = self._fallback
            if cached is not None and loop.time() - cached[0] < FALLBACK_TTL:
                return cached[1], cached[2]
            svc = self.service
            now = svc.clock()
            state = await self._run(self.store.load, now, USER_HORIZON, svc.history.maxlen or 0)
            rollups = Rollups(svc.rollups.tz)
            rollups.load(state.counters, state.revenue_buckets, state.users, state.peaks, now)
            self.local_seq += 1
            snapshot = rollups.snapshot(now)
            pub = Publication.make(snapshot, "change", self.local_epoch, self.local_seq)
            history = [m for m in map(_snapshot, state.history) if m is not None]
            self._fallback = (loop.time(), history, pub)
            return history, pub


def _publication(text: str) -> Publication | None:
    try:
        msg = wire.loads(text)
        pos = wire.position(msg)
        if pos is None or msg.get("kind") not in ("change", "interval"):
            return None
        return Publication(wire.decode_data(msg["data"]), msg["kind"], pos[0], pos[1], text)
    except (wire.ProtocolError, KeyError, TypeError, AttributeError):
        return None


def _snapshot(data: str) -> Metrics | None:
    try:
        return wire.decode_data(wire.loads(data))
    except (ValueError, TypeError, ArithmeticError):
        return None

"""Synthetic traffic through the real ingest path, so that every figure moves.

Visitors arrive (a Poisson process), stay a few minutes, browse a catalogue with a few popular
items, and now and then buy: a purchase goes pending, then usually completes and sometimes
fails. On an empty store, a month of past sales is backfilled first so that today, this week and
this month differ as they would on a real platform.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any

from metrics_protocol.wire import MAX_BATCH

from .events import EventError
from .logs import event
from .service import MetricsService
from .store import StoreError

log = logging.getLogger("metrics_server")

PRICES = ("4.99", "9.99", "14.99", "19.00", "29.00", "49.99", "99.00")
CATALOGUE = [f"c{i:03d}" for i in range(1, 121)]
#: Zipf-like weights: a few titles draw most views.
WEIGHTS = [1 / (rank**0.9) for rank in range(1, len(CATALOGUE) + 1)]


@dataclass
class _Visitor:
    user_id: str
    leaves_at: float
    next_action: float


@dataclass
class DemoTraffic:
    """A deterministic generator given its seed; ``step(now, dt)`` returns the events of dt."""

    seed: int | None = None
    arrivals_per_second: float = 1.5
    mean_stay: float = 180.0
    rng: random.Random = field(init=False)
    visitors: list[_Visitor] = field(default_factory=list)
    pending: list[tuple[float, str, str]] = field(default_factory=list)  # due, txn id, outcome
    _txn_seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _new_txn_id(self) -> str:
        self._txn_seq += 1
        return f"demo-{self.rng.getrandbits(32):08x}-{self._txn_seq}"

    def arrive(self, now: float, count: int) -> list[dict[str, Any]]:
        """Visitors already on the site when the demo starts, last seen in the past 5 minutes."""
        events = []
        for _ in range(count):
            user = f"u{self.rng.randrange(1, 20_000):05d}"
            seen = now - self.rng.uniform(0, 290)
            self.visitors.append(
                _Visitor(
                    user,
                    now + self.rng.expovariate(1 / self.mean_stay),
                    now + self.rng.uniform(0, 8),
                )
            )
            events.append({"type": "user_activity", "userId": user, "ts": seen})
        return events

    def step(self, now: float, dt: float) -> list[dict[str, Any]]:
        rng, events = self.rng, []
        # Arrivals vary through a slow wave so the active-users chart has a shape.
        rate = self.arrivals_per_second * (1.0 + 0.6 * _wave(now, 240.0))
        for _ in range(_poisson(rng, rate * dt)):
            user = f"u{rng.randrange(1, 20_000):05d}"
            stay = rng.expovariate(1 / self.mean_stay)
            self.visitors.append(_Visitor(user, now + stay, now))
            events.append({"type": "user_activity", "userId": user, "ts": now})
        still_here = []
        for v in self.visitors:
            if v.leaves_at <= now:
                continue
            still_here.append(v)
            if v.next_action > now:
                continue
            v.next_action = now + rng.expovariate(1 / 8.0)
            content = rng.choices(CATALOGUE, WEIGHTS)[0]
            events.append(
                {"type": "content_view", "contentId": content, "userId": v.user_id, "ts": now}
            )
            if rng.random() < 0.045:
                txn_id = self._new_txn_id()
                events.append(
                    {
                        "type": "transaction",
                        "id": txn_id,
                        "status": "pending",
                        "amount": rng.choice(PRICES),
                        "userId": v.user_id,
                        "contentId": content,
                        "ts": now,
                    }
                )
                outcome = "failed" if rng.random() < 0.08 else "completed"
                self.pending.append((now + rng.uniform(1.0, 8.0), txn_id, outcome))
            elif rng.random() < 0.3:
                events.append({"type": "user_activity", "userId": v.user_id, "ts": now})
        self.visitors = still_here
        due = [t for t in self.pending if t[0] <= now]
        self.pending = [t for t in self.pending if t[0] > now]
        for _, txn_id, outcome in due:
            events.append({"type": "transaction", "id": txn_id, "status": outcome, "ts": now})
        return events

    def backfill(self, now: float, days: int = 35, per_day: int = 60) -> list[dict[str, Any]]:
        """Completed sales over the past ``days`` days (old timestamps are allowed)."""
        rng, events = self.rng, []
        start = now - days * 86400
        for _ in range(days * per_day):
            ts = rng.uniform(start, now - 60)
            events.append(
                {
                    "type": "transaction",
                    "id": self._new_txn_id(),
                    "status": "completed",
                    "amount": rng.choice(PRICES),
                    "userId": f"u{rng.randrange(1, 20_000):05d}",
                    "contentId": rng.choices(CATALOGUE, WEIGHTS)[0],
                    "ts": ts,
                }
            )
            for _ in range(rng.randrange(10, 30)):
                events.append(
                    {
                        "type": "content_view",
                        "contentId": rng.choices(CATALOGUE)[0],
                        "ts": rng.uniform(start, now - 60),
                    }
                )
        return events


def _wave(now: float, period: float) -> float:
    return math.sin(2 * math.pi * (now % period) / period)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method; mean is small here (a fraction of a second of arrivals).
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


async def prepare_demo(service: MetricsService, traffic: DemoTraffic) -> None:
    """Backfill an empty store and seat the first visitors, before the first snapshot is taken,
    so that a new viewer's first chart point is not a half-loaded store."""
    now = service.clock()
    events = traffic.arrive(now, 40)
    if service.rollups.counters.txn_total == 0:
        events = traffic.backfill(now) + events
    for i in range(0, len(events), MAX_BATCH):
        await service.ingest(events[i : i + MAX_BATCH])
    event(logging.INFO, "demo_backfill", "demo: %d events to start with", len(events))


async def run_demo(service: MetricsService, traffic: DemoTraffic, step: float = 0.25) -> None:
    """Feed the service until cancelled, through ``service.ingest`` like any producer."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        next_at += step
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        events = traffic.step(service.clock(), step)
        for i in range(0, len(events), MAX_BATCH):
            try:
                await service.ingest(events[i : i + MAX_BATCH])
            except (EventError, StoreError) as exc:  # keep the demo going; say why once
                event(logging.WARNING, "demo_batch_refused", "demo batch refused: %s", exc)

"""Demo traffic: valid through the real ingest path, and every figure moves."""

from __future__ import annotations

import asyncio
from pathlib import Path

from metrics_server.app import MetricsServer, ServerConfig
from metrics_server.core import Rollups, plan_batch, txn_ids
from metrics_server.demo import DemoTraffic
from metrics_server.events import TransactionEvent, parse_batch


def test_simulated_half_hour_is_valid_and_moves_every_figure() -> None:
    """Half an hour of simulated demo traffic passes validation and touches every figure."""
    traffic = DemoTraffic(seed=7)
    now = 1_767_000_000.0
    rollups = Rollups("Europe/Berlin")
    known: dict = {}
    statuses: set[str] = set()
    first = None
    events = traffic.backfill(now) + traffic.arrive(now, 40)
    t = now
    for _ in range(4 * 1800):
        for i in range(0, len(events), 1000):
            batch = parse_batch(events[i : i + 1000], t)
            plan = plan_batch(batch, {k: known[k] for k in txn_ids(batch) if k in known})
            known.update(plan.txns)
            rollups.apply(plan, t)
            statuses |= {e.status for e in batch if isinstance(e, TransactionEvent)}
        if first is None:
            first = rollups.snapshot(t)
        t += 0.25
        events = traffic.step(t, 0.25)
    last = rollups.snapshot(t)
    assert statuses == {"pending", "completed", "failed"}
    assert first is not None and first.active_users and first.active_users.current >= 30
    assert last.revenue and first.revenue and last.revenue.today > first.revenue.today
    assert first.revenue.this_month > first.revenue.this_week > 0  # the backfill spans a month
    assert last.active_users and last.active_users.peak24h >= last.active_users.current > 0
    assert last.transactions and last.transactions.failed > 0 and last.transactions.pending >= 0
    assert last.content and first.content
    assert last.content.total_views > first.content.total_views


async def test_demo_server_figures_move(tmp_path: Path) -> None:
    config = ServerConfig(port=0, db=str(tmp_path / "m.db"), interval=3600, demo=True)
    async with MetricsServer(config) as srv:
        assert srv.service is not None
        first = srv.service.get_metrics()
        assert first.active_users and first.active_users.current >= 30  # seated at start
        assert first.transactions and first.transactions.completed > 0  # backfilled
        async with asyncio.timeout(20):
            while True:
                now = srv.service.get_metrics()
                assert now.content and first.content
                if now.content.total_views > first.content.total_views:
                    break
                await asyncio.sleep(0.05)  # polling a condition under a deadline
    # A restart on the same store does not backfill again.
    async with MetricsServer(config) as srv:
        assert srv.service is not None
        again = srv.service.get_metrics()
        assert again.transactions and again.transactions.total < first.transactions.total * 1.5

"""Snapshots reach listeners in the order they were taken.

An interval sample is written to the store before it is published; a change push whose timer
fired during that write used to go out first, so a subscriber saw the newer figures replaced by
the older sample until the next update.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from metrics_server.service import MetricsService
from metrics_server.store import SQLiteStore


class SlowCommitStore(SQLiteStore):
    """Holds a batch's commit until the test lets it go."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def commit_many(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.release.wait(10)
        return super().commit_many(*args, **kwargs)


async def test_an_interval_sample_is_never_published_after_a_newer_change(tmp_path: Path) -> None:
    store = SlowCommitStore(tmp_path / "m.db")
    now = [1_800_000_000.0]
    service = MetricsService(store, push_interval=0, clock=lambda: now[0])
    await service.start()
    seen: list[tuple[float, str, int]] = []

    def listener(metrics, kind) -> None:  # type: ignore[no-untyped-def]
        seen.append((metrics.timestamp.timestamp(), kind, metrics.content.total_views))

    service.add_listener(listener)
    try:
        # A batch is being committed when the interval sample is taken: the sample's own write
        # queues behind the commit on the store's thread, and the commit's change push comes
        # first out of it.
        ingest = asyncio.create_task(service.track_content_view("c1"))
        assert await asyncio.to_thread(store.entered.wait, 5)
        now[0] += 0.01
        tick = asyncio.create_task(service.tick())
        await asyncio.sleep(0)  # the tick takes its sample and queues its write
        now[0] += 0.01
        store.release.set()
        await asyncio.wait_for(asyncio.gather(ingest, tick), 10)
    finally:
        store.release.set()
        await service.close()
    assert [kind for _, kind, _ in seen] == ["interval", "change"], seen
    stamps = [ts for ts, _, _ in seen]
    assert stamps == sorted(stamps), seen
    assert seen[-1][2] == 1  # the last word is the newest figure

"""The store contract: the service over each store (a real SQLite file, a PostgreSQL schema),
restarts keep every figure, a blocked or failing store refuses and loses nothing. Tests taking
``stores`` run once per store; the others are about one store's own faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics_server.events import EventError
from metrics_server.service import KEY_TTL, KeyReused, MetricsService, Receipt
from metrics_server.store import SQLiteStore, StoreError
from pg_service import Stores


def figures(service: MetricsService) -> tuple:
    m = service.get_metrics()
    return (m.revenue, m.active_users, m.transactions, m.content)


async def open_service(db: Path | Stores, name: str = "m", **kw: object) -> MetricsService:
    """A started service over the SQLite file ``db``, or over the store ``name`` of a kit."""
    store = db.open(name) if isinstance(db, Stores) else SQLiteStore(db, busy_timeout_ms=50)
    service = MetricsService(store, **kw)  # type: ignore[arg-type]
    await service.start()
    return service


def batch(i: int, now: float) -> list[dict]:
    return [
        {"type": "user_activity", "userId": f"u{i % 13}", "ts": now - i},
        {"type": "content_view", "contentId": f"c{i % 4}", "userId": f"u{i % 5}"},
        {
            "type": "transaction",
            "id": f"t{i}",
            "status": "pending",
            "amount": f"{i}.{i % 100:02d}",
            "ts": now - 86400 * (i % 40),
        },
        {
            "type": "transaction",
            "id": f"t{i}",
            "status": ("completed", "failed")[i % 5 == 0],
            "ts": now - 86400 * (i % 40) + 1,
        },
    ]


async def test_figures_identical_across_restart(stores: Stores) -> None:
    db = stores
    service = await open_service(db, tz="Europe/Berlin", history=5)
    now = time.time()
    for i in range(60):
        await service.ingest(batch(i, now))
    for _ in range(7):
        await service.tick()
    before = figures(service)
    history = list(service.history)
    peak = before[1].peak24h
    await service.close()

    again = await open_service(db, tz="Europe/Berlin", history=5)
    assert figures(again) == before
    assert list(again.history) == history and len(history) == 5
    assert again.get_metrics().active_users.peak24h == peak  # type: ignore[union-attr]
    # And the raw events are all there.
    assert again.store.event_count() == 60 * 4
    await again.close()


async def test_other_zone_after_restart_regroups_days(stores: Stores) -> None:
    """Buckets are stored in UTC, so restarting with another --tz is still exact."""
    db = stores
    service = await open_service(db, tz="UTC")
    now = time.time()
    for i in range(30):
        await service.ingest(batch(i, now))
    await service.close()
    fresh = await open_service(db, "other", tz="Asia/Kathmandu")
    for i in range(30):
        await fresh.ingest(batch(i, now))
    reopened = await open_service(db, tz="Asia/Kathmandu")
    assert figures(reopened)[0] == figures(fresh)[0]
    await fresh.close()
    await reopened.close()


async def test_bad_batch_changes_nothing(stores: Stores) -> None:
    service = await open_service(stores)
    await service.ingest(
        [{"type": "transaction", "id": "t", "status": "completed", "amount": "5.00"}]
    )
    before, count = figures(service), service.store.event_count()
    with pytest.raises(EventError) as err:
        await service.ingest(
            [
                {"type": "user_activity", "userId": "new"},
                {"type": "content_view", "contentId": "c"},
                {"type": "transaction", "id": "t", "status": "failed"},
            ]
        )
    assert err.value.index == 2
    assert figures(service) == before and service.store.event_count() == count
    await service.close()


async def test_locked_store_refuses_then_recovers(stores: Stores) -> None:
    service = await open_service(stores)
    await service.ingest([{"type": "user_activity", "userId": "a"}])
    before = figures(service)

    with stores.writes_blocked():  # another process holding the store
        with pytest.raises(StoreError):
            await service.ingest(
                [{"type": "transaction", "id": "t", "status": "completed", "amount": "1.00"}]
            )
        assert figures(service) == before  # nothing counted that was not stored
        assert service.store_error is not None
        assert service.get_metrics() is not None  # still serving the last figures

    await service.ingest(
        [{"type": "transaction", "id": "t", "status": "completed", "amount": "1.00"}]
    )
    assert service.store_error is None
    assert figures(service)[2].completed == 1  # type: ignore[union-attr]
    await service.close()


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open database"):
        SQLiteStore(blocker / "m.db")
    with pytest.raises(StoreError, match="cannot open database"):
        SQLiteStore(tmp_path)  # a directory


async def test_seed_api_names(stores: Stores) -> None:
    service = await open_service(stores, push_interval=0)
    seen: list[str] = []
    ticked = asyncio.Event()

    def listen(_m: object, kind: str) -> None:
        seen.append(kind)
        if kind == "interval":
            ticked.set()

    service.add_listener(listen)  # type: ignore[arg-type]
    await service.track_user_activity("u1")
    await service.track_content_view("c1", user_id="u2")
    await service.record_transaction("t1", "pending", "9.99", user_id="u1", content_id="c1")
    await service.record_transaction("t1", "completed")
    m = service.get_metrics()
    assert m.revenue.total == m.revenue.today and str(m.revenue.total) == "9.99"  # type: ignore[union-attr]
    assert (m.active_users.current, m.content.total_views) == (2, 1)  # type: ignore[union-attr]
    assert seen.count("change") == 4
    service.interval = 0.01
    service.start_metrics_updates()
    await asyncio.wait_for(ticked.wait(), 5)
    await service.stop_metrics_updates()
    await service.close()


async def _grouped(service: MetricsService, batches: list[list[dict]]) -> list[object]:
    """Ingest concurrently while a commit is in flight, so the batches form one group."""
    async with service._lock:  # what an in-flight commit holds
        tasks = [asyncio.create_task(service.ingest(b)) for b in batches]
        await asyncio.sleep(0)  # all of them queue behind the lock
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_group_commit_validates_each_batch_in_order(stores: Stores) -> None:
    db = stores
    service = await open_service(db)
    results = await _grouped(
        service,
        [
            [{"type": "transaction", "id": "g", "status": "pending", "amount": "5.00"}],
            # needs the batch before it:
            [{"type": "transaction", "id": "g", "status": "completed"}],
            # completed -> failed: refused
            [{"type": "transaction", "id": "g", "status": "failed"}],
            [{"type": "user_activity", "userId": "u"}],
        ],
    )
    assert results[:2] == [1, 1] and results[3] == 1
    assert isinstance(results[2], EventError) and results[2].index == 0
    after = figures(service)
    assert after[2].completed == 1 and str(after[0].total) == "5.00"  # type: ignore[union-attr]
    assert service.store.event_count() == 3
    await service.close()
    service = await open_service(db)  # what was acknowledged is on disk, and only that
    assert figures(service)[0] == after[0] and figures(service)[2] == after[2]
    await service.close()


async def test_group_commit_store_failure_refuses_the_whole_group(stores: Stores) -> None:
    service = await open_service(stores)
    before = figures(service)
    with stores.writes_blocked():
        results = await _grouped(
            service,
            [
                [{"type": "user_activity", "userId": "a"}],
                [{"type": "transaction", "id": "x", "status": "pending", "amount": "1.00"}],
            ],
        )
    assert all(isinstance(r, StoreError) for r in results)
    assert figures(service) == before and service.store_error is not None
    assert service.store.event_count() == 0
    await service.close()


@pytest.mark.parametrize(
    ("fault", "clear", "words"),
    [
        # The database cannot grow, as on a full disk.
        ("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1073741823", "full"),
        # Writes refused, as for a file made read-only (permissions do not bind root, so the
        # connection is made read-only instead; SQLite reports the same error).
        ("PRAGMA query_only = ON", "PRAGMA query_only = OFF", "readonly"),
    ],
)
async def test_store_fault_refuses_then_recovers(
    tmp_path: Path, fault: str, clear: str, words: str
) -> None:
    """A store that cannot write refuses the batch, changes nothing, and recovers by itself."""
    service = await open_service(tmp_path / "m.db")
    await service.ingest([{"type": "user_activity", "userId": "a"}])
    before, count = figures(service), service.store.event_count()
    db = service.store._db  # type: ignore[attr-defined]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(fault.format(pages=pages))
    big = [{"type": "content_view", "contentId": f"c{i:0>150}"} for i in range(1000)]
    with pytest.raises(StoreError, match=words):
        await service.ingest(big)
    assert figures(service) == before and service.store.event_count() == count
    db.execute(clear)
    assert await service.ingest(big) == 1000
    assert figures(service)[3].total_views == 1000  # type: ignore[union-attr]
    await service.close()


async def test_one_server_per_database_file(tmp_path: Path) -> None:
    """The in-process server is refused like the CLI; the lock goes with the store's close."""
    from metrics_server.app import MetricsServer, ServerConfig

    config = ServerConfig(port=0, db=str(tmp_path / "m.db"), interval=3600)
    async with MetricsServer(config):
        with pytest.raises(StoreError, match=rf"m\.db'.* in use .*pid {os.getpid()}"):
            await MetricsServer(config).start()
        # Another spelling of the same file finds the same lock.
        with pytest.raises(StoreError, match="in use"):
            SQLiteStore(tmp_path / "." / "m.db")
        SQLiteStore(":memory:").close()  # nothing to share: no lock
        SQLiteStore(":memory:").close()
    async with MetricsServer(config):  # released at stop
        pass


# --------------------------------------------------------------------------- idempotency keys

VIEW = [{"type": "content_view", "contentId": "c"}]


async def _grouped_keyed(
    service: MetricsService, batches: list[tuple[list[dict], str | None]]
) -> list[object]:
    """As _grouped, each batch with its key: they are committed as one group."""
    async with service._lock:
        tasks = [asyncio.create_task(service.submit(b, key)) for b, key in batches]
        await asyncio.sleep(0)
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_key_repeated_in_one_group_commits_once(stores: Stores) -> None:
    service = await open_service(stores)
    results = await _grouped_keyed(
        service, [(VIEW, "k"), (VIEW * 2, "other"), (VIEW, "k"), (VIEW * 3, "k")]
    )
    assert results[:3] == [Receipt(1), Receipt(2), Receipt(1, duplicate=True)]
    assert isinstance(results[3], KeyReused)  # same key, other events
    assert figures(service)[3].total_views == 3  # type: ignore[union-attr]
    assert service.store.event_count() == 3
    await service.close()


async def test_a_failed_group_forgets_its_keys(stores: Stores) -> None:
    """A repeat of a batch whose commit fails fails too; the next try counts once."""
    service = await open_service(stores)
    with stores.writes_blocked():
        results = await _grouped_keyed(service, [(VIEW, "k"), (VIEW, "k")])
    assert all(isinstance(r, StoreError) for r in results), results
    assert await service.submit(VIEW, "k") == Receipt(1)
    assert await service.submit(VIEW, "k") == Receipt(1, duplicate=True)
    assert figures(service)[3].total_views == 1  # type: ignore[union-attr]
    await service.close()


async def test_keys_survive_a_restart(stores: Stores) -> None:
    db = stores
    service = await open_service(db)
    assert await service.submit(VIEW * 4, "batch-1") == Receipt(4)
    await service.close()
    service = await open_service(db)
    assert await service.submit(VIEW * 4, "batch-1") == Receipt(4, duplicate=True)
    assert figures(service)[3].total_views == 4  # type: ignore[union-attr]
    await service.close()


async def test_keys_are_remembered_for_a_day_then_forgotten(stores: Stores) -> None:
    now = [time.time()]
    service = await open_service(stores, clock=lambda: now[0])
    await service.submit(VIEW, "k")
    now[0] += KEY_TTL - 1
    await service.tick()  # pruning runs with the interval sample
    assert (await service.submit(VIEW, "k")).duplicate
    now[0] += 2
    await service.tick()
    assert await service.submit(VIEW, "k") == Receipt(1)  # a new batch now
    assert figures(service)[3].total_views == 2  # type: ignore[union-attr]
    await service.close()


async def test_a_database_from_before_keys_opens_and_takes_them(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    service = await open_service(db)
    await service.ingest(VIEW)
    await service.close()
    with sqlite3.connect(db) as conn:  # the file as the previous release left it
        conn.execute("DROP TABLE batch_keys")
    service = await open_service(db)
    assert figures(service)[3].total_views == 1  # type: ignore[union-attr]
    await service.submit(VIEW, "k")
    assert (await service.submit(VIEW, "k")).duplicate
    await service.close()


async def test_a_commit_whose_answer_was_lost_counts_once(stores: Stores) -> None:
    """The link to the store died after its COMMIT took effect: the batch is refused (its fate
    is unknown), the producer's retry with the same key is a duplicate, and the live figures,
    rebuilt from the store, count it once."""
    service = await open_service(stores)
    atomic = service.store.atomic

    @contextlib.contextmanager
    def atomic_losing_the_answer() -> Iterator[None]:
        with atomic():
            yield
        raise StoreError("server closed the connection unexpectedly")

    service.store.atomic = atomic_losing_the_answer  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await service.submit(VIEW * 2, "k")
    service.store.atomic = atomic  # type: ignore[method-assign]
    assert await service.submit(VIEW * 2, "k") == Receipt(2, duplicate=True)
    assert figures(service)[3].total_views == 2  # type: ignore[union-attr]
    await service.ingest(VIEW)
    assert figures(service)[3].total_views == 3  # type: ignore[union-attr]
    await service.close()

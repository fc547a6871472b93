"""The range rollups on a store shared by several servers (PostgreSQL), and pruning on both
stores: distinct users per bucket stay exact when two instances store pairs of one user and
one bucket at the same moment (the write lock is what makes it so: without it the count is
wrong, which a test shows), a server whose --tz differs from the store's is refused while
another is live, an older server still running keeps a schema from being migrated, and
pruning raw events leaves every range row as it was."""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bench._common import block_until
from metrics_protocol import wire
from metrics_server.core import plan_batch
from metrics_server.events import ContentView, Event, TransactionEvent, UserActivity
from metrics_server.ranges import Calendar
from metrics_server.store import StoreError
from pg_service import Postgres, Stores

T0 = int(datetime(2026, 11, 2, 9, tzinfo=ZoneInfo("UTC")).timestamp())  # a Monday, 09:00 UTC


def commit(store, calendar: Calendar, events: list[Event]) -> None:
    """Plan and commit one batch in one atomic() scope, as the service does."""
    with store.atomic():
        plan = plan_batch(events, {})
        plan.ranges = calendar.delta(plan)
        store.commit_many([plan])


def rows(store, step: str, first: int, last: int) -> dict[int, tuple]:
    return {r[0]: tuple(r[1:]) for r in store.range_rows(step, first, last)}


def expected(calendar: Calendar, events: list[Event], step: str) -> dict[int, tuple[int, int]]:
    """Views and distinct users per bucket of ``step``, the obvious way."""
    views: dict[int, int] = {}
    users: dict[int, set[str]] = {}
    for e in events:
        b = calendar.floor(step, e.ts)
        views[b] = views.get(b, 0) + isinstance(e, ContentView)
        if e.user_id is not None:
            users.setdefault(b, set()).add(e.user_id)
    return {b: (views[b], len(users.get(b, ()))) for b in views}


@pytest.fixture
def two(postgres: Postgres, pg_url: str) -> Iterator[tuple]:
    """Two stores (two instances' connections) on one schema, and each one's application
    name, by which a test finds its sessions in pg_stat_activity."""
    from metrics_server.store.postgres import PostgresStore

    names = [f"mt-{secrets.token_hex(4)}" for _ in range(2)]
    stores = [PostgresStore(f"{pg_url}&application_name={n}") for n in names]
    yield stores, names
    for store in stores:
        store.close()


def waiting_on_a_lock(postgres: Postgres, application: str) -> bool:
    return bool(
        postgres.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'",
            (application,),
        )
    )


@pytest.mark.parametrize(("locked", "users"), [(True, 1), (False, 2)])
def test_one_user_new_in_a_bucket_on_two_instances_at_once_counts_once(
    postgres: Postgres, two: tuple, locked: bool, users: int
) -> None:
    """Instance A stores user u at 09:01 and has not committed yet; instance B stores u at
    09:02 meanwhile. With the write lock B's neighbour read waits for A's commit and sees
    09:01: u is in the 15-minute bucket once. Without it (B given another lock key, as if
    there were none) B reads before A commits and counts u again: the lock is what makes it
    exact."""
    (a, b), (_, b_name) = two
    calendar = Calendar("UTC")
    a.prepare_ranges(calendar)
    b.prepare_ranges(calendar)
    if not locked:
        b._key = a._key + 1
    failures: list[BaseException] = []

    def b_commits() -> None:
        try:
            commit(b, calendar, [UserActivity("u", T0 + 120.0)])
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    other = threading.Thread(target=b_commits)
    with a.atomic():
        plan = plan_batch([UserActivity("u", T0 + 60.0)], {})
        plan.ranges = calendar.delta(plan)
        a.commit_many([plan])
        other.start()
        # B waits: on the write lock, or (without it) at the bucket row A has upserted,
        # after its own neighbour read.
        block_until(lambda: waiting_on_a_lock(postgres, b_name), 10, "B waiting on A")
    other.join(10)
    assert not other.is_alive() and not failures, failures
    assert rows(a, "15m", T0, T0)[T0][5] == users
    assert rows(a, "1d", T0 - 9 * 3600, T0)[T0 - 9 * 3600][5] == users


def test_two_instances_ingesting_at_once_stay_exact(two: tuple) -> None:
    """Two instances commit, round after round at the same moment (a barrier), batches of the
    same few users in the same few minutes (so their new pairs meet in one bucket all the
    time), with their in-memory memory of stored minutes dropped now and then; every
    bucket's views and distinct users, for every step, equal a recount of the events."""
    (a, b), _ = two
    calendar = Calendar("Asia/Kathmandu")
    a.prepare_ranges(calendar)
    b.prepare_ranges(calendar)
    rounds = 40
    barrier = threading.Barrier(2, timeout=10)
    sent: list[list[Event]] = [[], []]
    failures: list[BaseException] = []

    def run(n: int, store) -> None:
        rng = random.Random(n)
        try:
            for r in range(rounds):
                events: list[Event] = []
                for _ in range(rng.randint(1, 12)):
                    ts = T0 + rng.choice([0, 60, 61, 840, 899, 900, 3540, 3600]) + rng.random()
                    user = f"u{rng.randint(0, 5)}"
                    if rng.random() < 0.5:
                        events.append(UserActivity(user, ts))
                    else:
                        events.append(ContentView("c", user, ts))
                if r % 7 == 3:
                    store._recent.clear()
                barrier.wait()
                commit(store, calendar, events)
                sent[n] += events
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    events = sent[0] + sent[1]
    for step in wire.RANGE_STEPS:
        want = expected(calendar, events, step)
        got = rows(a, step, min(want), max(want))
        assert {s: (r[4], r[5]) for s, r in got.items()} == want, step


def test_a_server_with_another_zone_is_refused_while_one_is_live(
    postgres: Postgres, pg_url: str
) -> None:
    """The hours, days, weeks and months are kept for one zone: another --tz rebuilds them only
    when no other instance is live (then a restart with the new zone works as on SQLite)."""
    from metrics_server.store.postgres import PostgresStore

    paris, kathmandu = Calendar("Europe/Paris"), Calendar("Asia/Kathmandu")
    broker = "redis://127.0.0.1:6379/0"  # only recorded: instances on one store share one
    first = PostgresStore(pg_url)
    first.register(broker)
    first.prepare_ranges(paris)
    commit(first, paris, [ContentView("c", "u1", T0 + 30.0)])
    other = PostgresStore(pg_url)
    other.register(broker)
    with pytest.raises(StoreError) as err:
        other.prepare_ranges(kathmandu)
    assert "keeps its date ranges for --tz Europe/Paris" in str(err.value)
    assert "start this one with --tz Europe/Paris, not Asia/Kathmandu" in str(err.value)
    assert rows(first, "1d", T0 - 86400, T0)  # Paris' rows are still there
    other.close()
    first.close()  # leaves the registry: nobody is live
    again = PostgresStore(pg_url)
    try:
        assert "rebuilt" in (again.prepare_ranges(kathmandu) or "")
        day = kathmandu.floor("1d", T0)
        assert rows(again, "1d", day, day)[day][4:6] == (1, 1)
    finally:
        again.close()


def test_an_instance_whose_zone_was_rebuilt_under_it_refuses_to_commit(pg_url: str) -> None:
    """An instance that missed its heartbeats while another rebuilt the rows for its own zone
    would add its batches to the other zone's buckets: its commits are refused (and roll
    back) instead, naming both zones."""
    from metrics_server.store.postgres import PostgresStore

    paris, kathmandu = Calendar("Europe/Paris"), Calendar("Asia/Kathmandu")
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)  # neither registered: b sees no one
    try:
        a.prepare_ranges(paris)
        assert "rebuilt" in (b.prepare_ranges(kathmandu) or "")
        with pytest.raises(StoreError) as err:
            commit(a, paris, [UserActivity("u", T0 + 1.0)])
        assert "--tz Asia/Kathmandu, and this server runs with --tz Europe/Paris" in str(err.value)
        assert a.event_count() == 0
        commit(b, kathmandu, [UserActivity("u", T0 + 1.0)])
        assert b.event_count() == 1
    finally:
        a.close()
        b.close()


def test_a_live_older_server_keeps_the_schema_from_being_migrated(
    postgres: Postgres, pg_url: str, pg_schema: str
) -> None:
    """A schema at version 2 (before the range rollups) with a live instance: that server
    stores batches without range rows, so the migration waits until it is stopped."""
    from metrics_server.store.postgres import PostgresStore

    PostgresStore(pg_url).close()
    postgres.query(
        "DROP TABLE range_buckets, user_minutes, meta; DELETE FROM schema_version WHERE"
        " version = 3; INSERT INTO instances (id, broker, host, pid, expires_at)"
        " VALUES ('old', NULL, 'h', 7, now() + interval '1 hour')",
        schema=pg_schema,
    )
    with pytest.raises(StoreError) as err:
        PostgresStore(pg_url)
    assert "(host h, pid 7) of a version without date ranges" in str(err.value)
    assert postgres.query("SELECT max(version) FROM schema_version", schema=pg_schema) == [(2,)]
    postgres.query("DELETE FROM instances", schema=pg_schema)  # it stopped
    store = PostgresStore(pg_url)
    assert store.schema_version() == 3
    store.close()


def test_pruning_keeps_every_range_row(stores: Stores) -> None:
    """Raw events before the cut go, in chunks along the log (the last seq looked at, 0 at
    the end); range rows and every other rollup stay as they were."""
    store = stores.open()
    calendar = Calendar("Europe/Paris")
    store.prepare_ranges(calendar)
    for day in range(5):
        ts = T0 - day * 86400.0
        commit(
            store,
            calendar,
            [
                UserActivity(f"u{day}", ts),
                ContentView("c", "u9", ts),
                TransactionEvent(f"t{day}", "completed", 125, "u1", None, ts),
            ],
        )
    before = {s: store.range_rows(s, 0, 2**40) for s in wire.RANGE_STEPS}
    cut, after, deleted, walks = T0 - 2.5 * 86400, 0, 0, 0
    while True:
        n, after = store.prune_events(cut, after, 4)
        deleted, walks = deleted + n, walks + 1
        if after == 0:
            break
    assert (deleted, walks) == (6, 5)  # 15 events, 4 a chunk: 4 chunks, then the end
    assert store.event_count() == 9
    assert {s: store.range_rows(s, 0, 2**40) for s in wire.RANGE_STEPS} == before
    store.close()


def test_a_server_starting_next_to_a_long_backfill_waits_for_it(
    postgres: Postgres, pg_url: str, pg_schema: str
) -> None:
    """Building the rows from a large schema's events holds the write lock for a while (about
    a minute at 10M events); a server starting meanwhile waits past its usual lock timeout,
    then finds them built, rather than failing its start."""
    import psycopg

    from metrics_server.store.postgres import LOCK_WRITE, PostgresStore, lock_key

    name = f"mt-{secrets.token_hex(4)}"
    store = PostgresStore(f"{pg_url}&application_name={name}", lock_timeout=0.2)
    done: list[object] = []
    with psycopg.connect(postgres.store_url(pg_schema), autocommit=True) as builder:
        builder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_WRITE, lock_key(pg_schema)))
        other = threading.Thread(target=lambda: done.append(store.prepare_ranges(Calendar())))
        other.start()
        block_until(
            lambda: postgres.query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type"
                " = 'Lock' AND clock_timestamp() - query_start > interval '1 second'",
                (name,),
            ),
            10,
            "a wait longer than five lock timeouts",
        )
        assert other.is_alive()
    other.join(10)
    assert done == [None]  # an empty schema: nothing to say
    store.close()

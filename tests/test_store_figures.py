"""Every figure through each store equals the brute-force recomputation of test_core, before
and after a restart; PostgreSQL's equal SQLite's for the same events."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_server.events import Event, EventError, parse_batch
from metrics_server.service import MetricsService
from metrics_server.store import SQLiteStore
from pg_service import Stores
from test_core import ZONES, brute_force, event_specs, figures

_names = itertools.count()


def raw_event(spec: tuple, now: float) -> dict[str, Any]:
    """test_core's event spec as a producer would send it (amounts as text, ts in seconds)."""
    kind, user, ident, status, cents, back, has_user = spec
    ts = now - back
    if kind == "user":
        return {"type": "user_activity", "userId": f"u{user}", "ts": ts}
    out: dict[str, Any] = {"ts": ts}
    if has_user:
        out["userId"] = f"u{user}"
    if kind == "view":
        return {"type": "content_view", "contentId": f"c{ident}", **out}
    if cents is not None:
        out["amount"] = f"{cents // 100}.{cents % 100:02d}"
    return {"type": "transaction", "id": f"t{ident}", "status": status, **out}


def chunks(batches: list) -> list[list]:
    """Sizes 1, 4, 1, 4...: a single commit, then a group of three (the first batch sent
    finds no commit in flight and goes alone; the others queue behind it)."""
    out, i = [], 0
    for size in itertools.cycle((1, 4)):
        if i >= len(batches):
            return out
        out.append(batches[i : i + size])
        i += size
    raise AssertionError  # pragma: no cover


async def run_stream(
    open_store: Any, batches: list[list[dict[str, Any]]], zone: str, now: float
) -> tuple[dict, dict, list[Event]]:
    """Ingest the batches in chunks sent at once (committed in groups, in order), then
    restart. Returns the figures before and after, and the events accepted."""
    service = MetricsService(open_store(), tz=zone, clock=lambda: now)
    await service.start()
    results: list[Any] = []
    for chunk in chunks(batches):  # one commit, then the rest of the chunk as one group
        results += await asyncio.gather(*(service.ingest(b) for b in chunk), return_exceptions=True)
    accepted: list[Event] = []
    for raw, result in zip(batches, results, strict=True):
        if isinstance(result, EventError):
            continue
        assert result == len(raw), result  # no other failure is expected
        accepted.extend(parse_batch(raw, now))
    live = figures(service.rollups, now)
    assert service.store.event_count() == len(accepted)
    await service.close()
    again = MetricsService(open_store(), tz=zone, clock=lambda: now)
    await again.start()
    reloaded = figures(again.rollups, now)
    await again.close()
    return live, reloaded, accepted


# test_core's events, with fewer new transactions lacking an amount (which refuse the batch)
# and more times in the last hour, so that commits meet on the same ids, users and buckets.
store_specs = st.tuples(
    st.sampled_from(["user", "view", "txn", "txn"]),
    st.integers(0, 15),
    st.integers(0, 5),
    st.sampled_from(["pending", "pending", "completed", "failed"]),
    st.sampled_from([None, 1, 999, 1250, 10**6, 12_345_678]),
    st.one_of(st.floats(0, 3600), st.floats(0, 40 * 86400)),
    st.booleans(),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    specs=st.lists(
        st.lists(st.one_of(event_specs, store_specs), min_size=1, max_size=5),
        min_size=3,
        max_size=16,
    ),
    zone=st.sampled_from(ZONES),
    now=st.floats(1.7e9, 1.76e9),
)
def test_every_figure_through_the_store_matches_brute_force(
    stores: Stores, tmp_path: Path, specs: list, zone: str, now: float
) -> None:
    batches = [[raw_event(s, now) for s in batch] for batch in specs]
    name = f"s{next(_names)}"
    live, reloaded, accepted = asyncio.run(
        run_stream(lambda: stores.open(name), batches, zone, now)
    )
    expected = brute_force(accepted, now, ZoneInfo(zone))
    assert live == expected
    assert reloaded == expected
    if stores.kind != "sqlite":  # and the same as one SQLite server for the same events
        path = tmp_path / f"{name}.db"
        on_sqlite = asyncio.run(run_stream(lambda: SQLiteStore(path), batches, zone, now))
        assert on_sqlite == (live, reloaded, accepted)

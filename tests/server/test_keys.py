"""Idempotency keys on /ws/ingest: a retried batch counts once.

Issue 8: a batch committed but not acknowledged, then retried as the protocol asks, counted its
content views twice (conversion 50 % instead of 100 %).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

SALE = [
    {"type": "content_view", "contentId": "c1", "userId": "u1"},
    {"type": "transaction", "id": "t1", "status": "completed", "amount": "5.00", "userId": "u1"},
]


def content(server) -> tuple[int, int, Decimal]:
    c = server.service.get_metrics().content
    return c.total_views, c.total_purchases, c.conversion_rate


async def test_a_repeated_key_gets_the_first_ack_and_changes_nothing(server, producer) -> None:
    prod = await producer(server)
    first = await prod.send(SALE, id=1, key="order-1")
    assert first == {"type": "ack", "id": 1, "accepted": 2}
    assert content(server) == (1, 1, Decimal("100.00"))
    count = server.service.store.event_count()

    again = await prod.send(SALE, id="retry", key="order-1")  # a retry may carry a new id
    assert again == {"type": "ack", "id": "retry", "accepted": 2, "duplicate": True}
    assert content(server) == (1, 1, Decimal("100.00"))  # not 2 views, 50 %
    assert server.service.store.event_count() == count

    other = await producer(server)  # keys are not per connection
    assert (await other.send(SALE, key="order-1"))["duplicate"] is True


async def test_without_a_key_a_retry_counts_again(server, producer) -> None:
    """What keys are for (and that a null key is no key)."""
    prod = await producer(server)
    await prod.ok(SALE)
    reply = await prod.send(SALE, key=None)
    assert reply["type"] == "ack" and "duplicate" not in reply
    assert content(server) == (2, 1, Decimal("50.00"))


async def test_a_key_reused_for_other_events_is_refused(server, producer) -> None:
    prod = await producer(server)
    await prod.send(SALE, key="k")
    count, before = server.service.store.event_count(), content(server)
    reply = await prod.send([{"type": "content_view", "contentId": "c2"}], id=7, key="k")
    assert reply["type"] == "error" and reply["id"] == 7
    assert reply["error"]["code"] == "key_reused"
    assert server.service.store.event_count() == count and content(server) == before


@pytest.mark.parametrize(
    "key",
    ["", "k" * 201, 5, ["k"], {"k": 1}, True],
    ids=["empty", "201-chars", "number", "array", "object", "true"],
)
async def test_a_bad_key_is_refused(server, producer, key) -> None:
    prod = await producer(server)
    reply = await prod.send(SALE, id=3, key=key)
    assert reply["type"] == "error" and reply["id"] == 3
    assert reply["error"]["code"] == "invalid_batch"
    assert "'key'" in reply["error"]["message"] and "200" in reply["error"]["message"]
    assert server.service.store.event_count() == 0


async def test_the_longest_key_is_accepted(server, producer) -> None:
    prod = await producer(server)
    key = "é" * 200  # characters, not bytes
    assert "duplicate" not in await prod.send(SALE, key=key)
    assert (await prod.send(SALE, key=key))["duplicate"] is True

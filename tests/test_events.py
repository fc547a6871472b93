"""Event validation: every kind of bad input is refused with a message that says what is wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metrics_protocol.wire import loads
from metrics_server.events import (
    ContentView,
    EventError,
    TransactionEvent,
    UserActivity,
    parse_amount,
    parse_batch,
    parse_event,
)

NOW = 1_764_000_000.0


def test_valid_events() -> None:
    assert parse_event({"type": "user_activity", "userId": "u1"}, NOW) == UserActivity("u1", NOW)
    assert parse_event({"type": "content_view", "contentId": "c9"}, NOW) == ContentView(
        "c9", None, NOW
    )
    e = parse_event(
        {
            "type": "transaction",
            "id": "t1",
            "status": "pending",
            "amount": "12.50",
            "userId": "u1",
            "contentId": "c9",
            "ts": "2025-11-24T15:00:00+01:00",
        },
        NOW,
    )
    assert e == TransactionEvent("t1", "pending", 1250, "u1", "c9", 1_763_992_800.0)
    assert parse_event({"type": "user_activity", "userId": "u", "ts": 1_000}, NOW).ts == 1000.0


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        ("12.50", 1250),
        ("0", 0),
        ("0.01", 1),
        (7, 700),
        (Decimal("19.9"), 1990),
        (" 3.10 ", 310),
        ("1e2", 10000),
        ("12.500", 1250),
    ],
)
def test_amounts(value: object, cents: int) -> None:
    assert parse_amount(value) == cents


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("-1", ">= 0"),
        ("1.234", "more than 2 decimals"),
        ("abc", "not a decimal"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        (True, "must be a number"),
        (None, "must be a number"),
        ([1], "must be a number"),
        ("1e20", "too large"),
    ],
)
def test_bad_amounts(value: object, words: str) -> None:
    with pytest.raises(EventError, match=words):
        parse_amount(value)


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ([], "must be a JSON object"),
        ({"userId": "u"}, "unknown event type"),
        ({"type": "login", "userId": "u"}, "unknown event type"),
        ({"type": "user_activity"}, "'userId' is required"),
        ({"type": "user_activity", "userId": ""}, "non-empty string"),
        ({"type": "user_activity", "userId": 5}, "non-empty string"),
        ({"type": "user_activity", "userId": "u" * 201}, "longer than"),
        ({"type": "user_activity", "userId": "u", "extra": 1}, "unknown field"),
        ({"type": "content_view", "userId": "u"}, "'contentId' is required"),
        ({"type": "transaction", "id": "t", "status": "done", "amount": 1}, "'status' must be"),
        ({"type": "transaction", "status": "pending", "amount": 1}, "'id' is required"),
        ({"type": "user_activity", "userId": "u", "ts": "yesterday"}, "not ISO 8601"),
        ({"type": "user_activity", "userId": "u", "ts": "2025-01-01T00:00:00"}, "UTC offset"),
        ({"type": "user_activity", "userId": "u", "ts": NOW + 301}, "in the future"),
        ({"type": "user_activity", "userId": "u", "ts": -5}, "non-negative"),
        ({"type": "user_activity", "userId": "u", "ts": True}, "ISO 8601 string or epoch"),
    ],
)
def test_bad_events(obj: object, words: str) -> None:
    with pytest.raises(EventError, match=words):
        parse_event(obj, NOW)


def test_future_within_skew_is_accepted() -> None:
    event = parse_event({"type": "user_activity", "userId": "u", "ts": NOW + 299}, NOW)
    assert event.ts == NOW + 299


def test_batch_errors_name_the_event() -> None:
    with pytest.raises(EventError) as err:
        parse_batch([{"type": "user_activity", "userId": "u"}, {"type": "nope"}], NOW)
    assert err.value.index == 1
    for bad in ([], "events", {"a": 1}, [{"type": "user_activity", "userId": "u"}] * 1001):
        with pytest.raises(EventError) as err:
            parse_batch(bad, NOW)
        assert err.value.index is None


def test_json_numbers_are_exact() -> None:
    event = loads('{"type":"transaction","id":"t","status":"completed","amount":0.1}')
    assert parse_event(event, NOW).amount_cents == 10  # type: ignore[union-attr]

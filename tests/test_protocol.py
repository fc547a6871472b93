"""The wire format: exactly the seed's shape, money to the cent, a lossless round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metrics_protocol import wire as p

SEED = (
    '{"type":"metrics","data":{"revenue":{"total":125000.50,"today":5420.00,"thisWeek":32100.00,'
    '"thisMonth":98500.00},"activeUsers":{"current":42,"today":1250,"peak24h":89},'
    '"transactions":{"total":5420,"pending":12,"completed":5380,"failed":28},"content":'
    '{"totalViews":125000,"totalPurchases":5380,"conversionRate":4.30},'
    '"timestamp":"2025-11-04T10:30:00.000Z"}}'
)


def seed_metrics() -> p.Metrics:
    return p.decode_data(p.loads(SEED)["data"])


def test_seed_round_trip_is_byte_exact() -> None:
    data = p.encode_data(seed_metrics())
    assert data == SEED[len('{"type":"metrics","data":') : -1]
    message = json.loads(p.encode_metrics(seed_metrics(), "interval"))
    assert message["type"] == "metrics" and message["kind"] == "interval"
    assert message["data"] == json.loads(SEED)["data"]


def test_money_is_written_with_two_decimals() -> None:
    m = p.Metrics(
        timestamp=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        revenue=p.Revenue(Decimal("0.1"), Decimal("0"), Decimal("1234567890123.45"), Decimal("7")),
    )
    assert p.encode_data(m) == (
        '{"revenue":{"total":0.10,"today":0.00,"thisWeek":1234567890123.45,"thisMonth":7.00},'
        '"timestamp":"2025-01-02T03:04:05.678Z"}'
    )
    assert p.decode_data(p.loads(p.encode_data(m))).revenue == p.Revenue(
        Decimal("0.10"), Decimal("0.00"), Decimal("1234567890123.45"), Decimal("7.00")
    )


def test_channels_select_groups_in_canonical_order() -> None:
    data = json.loads(p.encode_data(seed_metrics(), ("content", "revenue")))
    assert list(data) == ["content", "revenue", "timestamp"]
    decoded = p.decode_data(p.loads(p.encode_data(seed_metrics(), ("activeUsers",))))
    assert decoded.revenue is None and decoded.active_users == p.ActiveUsers(42, 1250, 89)


def test_history_message() -> None:
    text = p.encode_history([seed_metrics(), seed_metrics()])
    message = p.loads(text)
    assert message["type"] == "history" and len(message["data"]) == 2
    assert p.encode_history([]) == '{"type":"history","data":[]}'
    assert p.loads(p.encode_history([], interval=2.5))["interval"] == Decimal("2.5")


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"timestamp": 5},
        {"timestamp": "nope"},
        {"revenue": 1, "timestamp": "2025-01-01T00:00Z"},
        {
            "activeUsers": {"current": -1, "today": 0, "peak24h": 0},
            "timestamp": "2025-01-01T00:00Z",
        },
        {"transactions": {"total": True}, "timestamp": "2025-01-01T00:00Z"},
    ],
)
def test_decode_refuses_bad_shapes(data: object) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode_data(data)


def test_loads_refuses_non_json() -> None:
    for text in ("{", "NaN", "[1,]", ""):
        with pytest.raises(p.ProtocolError):
            p.loads(text)


def test_error_message_shape() -> None:
    assert json.loads(p.encode(p.error_message("invalid_event", "bad", id=7, index=2))) == {
        "type": "error",
        "id": 7,
        "error": {"code": "invalid_event", "message": "bad", "index": 2},
    }


def test_snapshot_bytes_stay_small() -> None:
    """A full metrics message with large figures stays under 600 bytes."""
    m = p.Metrics(
        timestamp=datetime.now(UTC),
        revenue=p.Revenue(*(Decimal("99999999999.99"),) * 4),
        active_users=p.ActiveUsers(10**9, 10**9, 10**9),
        transactions=p.Transactions(10**12, 10**12, 10**12, 10**12),
        content=p.Content(10**12, 10**12, Decimal("100.00")),
    )
    assert len(p.encode_metrics(m, "interval").encode()) <= 600

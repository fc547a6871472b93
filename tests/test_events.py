"""Event validation: every kind of bad input is refused with a message that says what is wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metrics_protocol.wire import ERR_AMOUNT_TOO_LARGE, loads
from metrics_server.events import (
    MAX_AMOUNT_CENTS,
    MIN_TS,
    ContentView,
    EventError,
    TransactionEvent,
    UserActivity,
    parse_amount,
    parse_batch,
    parse_event,
    parse_ts,
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
    assert parse_event({"type": "user_activity", "userId": "u", "ts": MIN_TS}, NOW).ts == MIN_TS


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        ("12.50", 1250),
        ("0", 0),
        ("0.01", 1),
        ("12.5", 1250),
        ("007.50", 750),
        (7, 700),
        (0.1, 10),
        (Decimal("19.9"), 1990),
        # JSON numbers in any JSON form, judged by value.
        (Decimal("1E+2"), 10000),
        (Decimal("12.500"), 1250),
        (Decimal("-0.0"), 0),
        # The largest a transaction may be, in every form.
        ("1000000000.00", MAX_AMOUNT_CENTS),
        (10**9, MAX_AMOUNT_CENTS),
        (Decimal("1E+9"), MAX_AMOUNT_CENTS),
        (999999999.99, MAX_AMOUNT_CENTS - 1),
    ],
)
def test_amounts(value: object, cents: int) -> None:
    assert parse_amount(value) == cents


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (-1, ">= 0"),
        (Decimal("-0.01"), ">= 0"),
        (Decimal("1.234"), "more than 2 decimals"),
        (Decimal("1.000000000000000000000000000001"), "more than 2 decimals"),  # > 28 digits
        (Decimal("1e-999999999"), "more than 2 decimals"),
        (Decimal("NaN"), "finite"),
        (Decimal("sNaN"), "finite"),
        (float("inf"), "finite"),
        (True, "must be a number"),
        (None, "must be a number"),
        ([1], "must be a number"),
        # A string is ASCII digits with at most two decimals, and nothing else.
        ("-1", "ASCII digits"),
        ("1.234", "ASCII digits"),
        ("abc", "ASCII digits"),
        ("NaN", "ASCII digits"),
        ("Infinity", "ASCII digits"),
        ("1_000", "ASCII digits"),
        ("\u0661\u0662", "ASCII digits"),  # Arabic-Indic 12: Decimal() reads it
        ("\uff15", "ASCII digits"),  # fullwidth 5
        ("1,000", "ASCII digits"),
        (" 3.10 ", "ASCII digits"),
        ("3.10\n", "ASCII digits"),  # re's $ would let a final newline through
        ("+5", "ASCII digits"),
        ("5.", "ASCII digits"),
        (".5", "ASCII digits"),
        ("1e2", "ASCII digits"),
        ("12.500", "ASCII digits"),
        ("", "ASCII digits"),
    ],
)
def test_bad_amounts(value: object, words: str) -> None:
    with pytest.raises(EventError, match=words) as err:
        parse_amount(value)
    assert err.value.code is None  # the wire's default, invalid_event


@pytest.mark.parametrize(
    "value",
    [
        "1000000000.01",
        Decimal("1000000000.01"),
        10**9 + 1,
        1e10,
        "1" + "0" * 400,
        10**400,
        Decimal("1e999999999"),
        "100000000000.00",  # the issue's $100,000,000,000.00
    ],
)
def test_amounts_over_the_maximum_have_their_own_code(value: object) -> None:
    with pytest.raises(EventError, match=r"largest a transaction may be, 1000000000\.00") as err:
        parse_amount(value)
    assert err.value.code == ERR_AMOUNT_TOO_LARGE


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
        ({"type": "user_activity", "userId": "u", "ts": -5}, "before 2000-01-01"),
        ({"type": "user_activity", "userId": "u", "ts": True}, "ISO 8601 string or epoch"),
    ],
)
def test_bad_events(obj: object, words: str) -> None:
    with pytest.raises(EventError, match=words):
        parse_event(obj, NOW)


@pytest.mark.parametrize(
    "ts",
    [
        "1969-12-31T23:59:59Z",  # an ISO date before 1970 was accepted while -5 was not
        "0001-01-01T00:00:00+00:01",  # the issue's: no calendar day in UTC at all
        "0001-01-01T00:00:00Z",  # Go's zero time: none in America/New_York
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T05:44:59+05:45",
        -1,
        0,
        MIN_TS - 1,
        MIN_TS - 0.001,
        Decimal("946684799.99999999999999999999"),  # a float would round it onto the bound
        -(10**400),
        -1e308,
        Decimal("-1e999999999"),
    ],
)
def test_times_before_2000_are_refused_in_every_form(ts: object) -> None:
    with pytest.raises(EventError, match="before 2000-01-01T00:00:00Z") as err:
        parse_ts(ts, NOW)
    assert "300 s after the server's clock" in err.value.message  # the window, named


@pytest.mark.parametrize(
    "ts",
    [
        "9999-12-31T23:59:59.999999-12:00",
        "2025-11-24T16:05:01Z",  # NOW + 301
        NOW + 300.001,
        10**400,  # float() of it raises
        1e308,
        Decimal("1e999999999"),
    ],
)
def test_times_beyond_five_minutes_ahead_are_refused_in_every_form(ts: object) -> None:
    with pytest.raises(EventError, match="in the future") as err:
        parse_ts(ts, NOW)
    assert "2000-01-01T00:00:00Z" in err.value.message


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), Decimal("NaN"), Decimal("sNaN")])
def test_times_that_are_not_finite_are_refused(ts: object) -> None:
    with pytest.raises(EventError, match="finite"):
        parse_ts(ts, NOW)


def test_the_window_is_inclusive_at_both_ends() -> None:
    assert parse_ts("2000-01-01T00:00:00Z", NOW) == MIN_TS
    assert parse_ts("2000-01-01T05:45:00+05:45", NOW) == MIN_TS
    assert parse_ts(Decimal(MIN_TS), NOW) == MIN_TS
    assert parse_ts(NOW + 300, NOW) == NOW + 300


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


def test_batch_errors_keep_their_code_and_index() -> None:
    big = {"type": "transaction", "id": "t", "status": "pending", "amount": "1000000000.01"}
    with pytest.raises(EventError) as err:
        parse_batch([{"type": "user_activity", "userId": "u"}, big], NOW)
    assert (err.value.index, err.value.code) == (1, ERR_AMOUNT_TOO_LARGE)

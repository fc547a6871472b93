"""Range views without a screen: the input, the fitted step, presets and paging, checked
against the server's own calendar (metrics_server.ranges, the code that answers ranges)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from metrics_protocol.wire import (
    MAX_RANGE_POINTS,
    Range,
    decode_range,
    encode_range,
    loads,
    range_filename,
)
from metrics_server.ranges import Calendar
from metrics_tui.history import fetch_pages, page_span
from metrics_tui.ranges import PRESETS, RangeInputError, parse_range, stamp_format
from metrics_tui.widgets.range_chart import DOTS, bar_layout, braille_line, group_sums

PARIS = ZoneInfo("Europe/Paris")


def server_answer(zone: str, start: str, end: str, step: str) -> str:
    """The server's answer to a range (its calendar, its encoder), with made-up figures; over
    MAX_RANGE_POINTS it raises the server's own refusal."""
    calendar = Calendar(zone)
    query = calendar.parse({"from": start, "to": end, "step": step})
    rows = [
        (s, (s // 60 * 7919) % 250_000, s % 17, s % 3, s % 19, s % 401, 20 + s % 13, None)
        for s in query.starts
    ]
    return encode_range(calendar.answer(query, rows))


def range_of(zone: str, start: str, end: str, step: str) -> Range:
    """That answer as the monitor reads it."""
    return decode_range(loads(server_answer(zone, start, end, step)))


#: A Sunday in November, 10:00 in Paris.
NOW = datetime(2026, 11, 15, 10, 0, tzinfo=PARIS)


# --------------------------------------------------------------------------- the input


@pytest.mark.parametrize(
    ("text", "start", "end", "step"),
    [
        ("2026-11-01..2026-11-15", "2026-11-01", "2026-11-15", "1d"),
        (" 2026-11-01 .. 2026-11-15 ", "2026-11-01", "2026-11-15", "1d"),
        ("yesterday", "2026-11-14", "2026-11-15", "1h"),
        ("Last Week", "2026-11-02", "2026-11-09", "1d"),
        ("this month", "2026-11-01", "2026-11-15T10:00:00+01:00", "1d"),
        ("last month", "2026-10-01", "2026-11-01", "1d"),
        ("this year", "2026-01-01", "2026-11-15T10:00:00+01:00", "1w"),
        ("today", "2026-11-15", "2026-11-15T10:00:00+01:00", "15m"),
        ("last 6 hours", "2026-11-15T04:00:00+01:00", "2026-11-15T10:00:00+01:00", "15m"),
        ("yesterday 1m", "2026-11-14", "2026-11-15", "1m"),
        (
            "2026-11-14T22:00..2026-11-15T02:00 5m",
            "2026-11-14T22:00:00",
            "2026-11-15T02:00:00",
            "5m",
        ),
    ],
)
def test_good_ranges(text: str, start: str, end: str, step: str) -> None:
    spec = parse_range(text, NOW, columns=50)
    assert (spec.start, spec.end, spec.step) == (start, end, step)
    assert spec.text == text.strip() and spec.keep is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Type a range"),
        ("2026-11-15..2026-11-01", "ends before it starts"),
        ("2026-11-15..2026-11-15", "ends before it starts"),
        ("2026-13-01..2026-12-01", "Not a date"),
        ("2026-11-01..", "Not a date"),
        ("last fortnight", "Not a range"),
        ("1d", "needs a range"),
        ("2026-01-01..2027-01-01 1m", "525,600 points"),
    ],
)
def test_bad_ranges_say_why(text: str, says: str) -> None:
    with pytest.raises(RangeInputError, match=says):
        parse_range(text, NOW, columns=50)


@pytest.mark.parametrize(("columns", "step"), [(12, "1w"), (31, "1d"), (50, "1d"), (800, "1h")])
def test_the_step_fits_the_chart(columns: int, step: str) -> None:
    assert parse_range("2026-10-15..2026-11-15", NOW, columns).step == step


def test_a_range_too_long_for_any_step() -> None:
    with pytest.raises(RangeInputError, match="at most 5,000"):
        parse_range("1600-01-01..2026-01-01", NOW, columns=50)


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "Asia/Kathmandu", "Pacific/Chatham"])
@pytest.mark.parametrize("key", sorted(PRESETS))
def test_presets_hold_their_count_in_any_zone(key: str, zone: str) -> None:
    """Whatever the server's zone and the moment (month ends, DST days, a year end), a preset
    gets at least its count of buckets, and the last one holds the present."""
    preset = PRESETS[key]
    moments = [
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # Paris springs forward that night
        datetime(2026, 10, 25, 23, 59, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2027, 3, 1, 0, 1, tzinfo=UTC),
        datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
    ]
    for now in moments:
        spec = preset.spec(now)
        assert spec.step == preset.step and spec.keep == preset.count
        answer = range_of(zone, spec.start, spec.end, spec.step)
        shown = spec.shown(answer)
        assert len(shown.points) == preset.count, (now, len(answer.points))
        assert shown.points[-1].start <= now and shown.start == shown.points[0].start


def test_titles_name_the_range_and_step() -> None:
    spec = PRESETS["3"].spec(NOW)
    assert spec.title("Revenue") == "Revenue · last 24 h · 15 min"
    assert spec.titles("Revenue")[1] == "Revenue · 24 h · 15m"
    assert PRESETS["5"].spec(NOW).bars and not spec.bars
    assert spec.refresh_every == 900 and PRESETS["2"].spec(NOW).refresh_every == 60


# --------------------------------------------------------------------------- reading


def body(**changes: Any) -> str:
    point = {
        "start": "2026-11-02T00:00:00+01:00",
        "revenue": "1234.50",
        "completed": 12,
        "failed": 1,
        "started": 14,
        "views": 3400,
        "activeUsers": 211,
        "peakCurrent": 57,
    }
    point.update(changes)
    revenue = point.pop("revenue")
    fields = json.dumps(point)[1:-1] + f',"revenue":{revenue}'
    return (
        '{"type":"range","from":"2026-11-01T00:00:00+01:00","to":"2026-12-01T00:00:00+01:00",'
        '"step":"1d",'
        f'"tz":"Europe/Paris","points":[{{{fields}}}]}}'
    )


def test_money_is_read_exactly() -> None:
    """What the monitor draws and exports comes from Decimals, up to the int64 bound."""
    answer = decode_range(loads(body(revenue="92233720368547758.07")))
    assert answer.points[0].revenue == Decimal("92233720368547758.07")
    assert answer.points[0].start == datetime(2026, 11, 2, tzinfo=PARIS)
    assert decode_range(loads(body(peakCurrent=None))).points[0].peak_current is None


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("zone", "start", "end", "step"),
    [
        ("Europe/Paris", "2026-10-20", "2026-10-30", "1m"),  # a 25-hour day inside
        ("Europe/Paris", "2026-03-20T12:34", "2026-03-31T00:00+02:00", "1m"),
        ("Asia/Kathmandu", "2026-01-01T00:07", "2026-03-01", "5m"),
        ("Pacific/Chatham", "2025-12-30T13:13+13:45", "2026-06-01", "15m"),
        ("UTC", "2026-01-01", "2026-01-02", "1h"),  # one page
    ],
)
async def test_pages_join_into_the_whole_range(zone: str, start: str, end: str, step: str) -> None:
    """Every bucket once, in order, none missing, and no request over the limit (the server's
    calendar refuses one)."""
    asked: list[int] = []

    async def fetch(a: str, b: str) -> Any:
        text = server_answer(zone, a, b, step)
        asked.append(len(decode_range(loads(text)).points))
        return loads(text)

    seen: list[tuple[int, int]] = []
    answer = await fetch_pages(fetch, start, end, step, lambda *progress: seen.append(progress))
    calendar = Calendar(zone)
    begin, finish = calendar.parse_instant(start, "from"), calendar.parse_instant(end, "to")
    # The whole range in one go, were there no limit: the same buckets, each once.
    whole = calendar.starts(step, begin, finish, limit=10**6)
    assert [int(p.start.timestamp()) for p in answer.points] == whole
    assert all(n <= MAX_RANGE_POINTS for n in asked)
    pages = [n for n in asked if n > 1]  # a probe asks for one bucket
    assert len(pages) == -(-len(whole) // (MAX_RANGE_POINTS - 2))
    assert seen[-1] == (len(whole), len(whole))
    assert (answer.start.timestamp(), answer.end.timestamp()) == (begin, finish)


def test_a_page_never_asks_for_more_than_the_limit() -> None:
    for step in ("1m", "1d", "1mo"):
        assert page_span(step) > timedelta(0)


# --------------------------------------------------------------------------- drawing helpers


def test_an_export_is_named_after_what_is_shown() -> None:
    spec = PRESETS["5"].spec(datetime(2026, 11, 30, 17, 31, 22, tzinfo=UTC))
    answer = range_of("Europe/Paris", spec.start, spec.end, spec.step)
    shown = spec.shown(answer)
    assert len(answer.points) == 32 and len(shown.points) == 30  # a day more is asked for
    assert range_filename(shown) == "metrics_2026-11-01_2026-11-30T183122_1d.csv"


def test_a_line_shows_every_extreme_unbroken() -> None:
    """1,440 spiky points in 20 columns: the highest and lowest dots are set, and every dot
    column has a dot (no gaps in the line)."""
    values = [float(i % 7) for i in range(1440)]
    values[1000] = 99.0
    rows = braille_line(values, 0.0, 99.0, columns=20, rows=5)
    bits = [[ord(c) - 0x2800 if c != " " else 0 for c in line] for line in rows]
    assert bits[0][13] & 0x09  # the spike reaches the top row, about 1000/1440 of the way
    for col in range(20):
        for half in (0, 1):
            mask = sum(DOTS[half])
            assert any(line[col] & mask for line in bits), (col, half)
    flat = braille_line([2.0, 2.0, 2.0], 0.0, 10.0, columns=10, rows=2)  # 3 points, 20 dots
    assert flat[0] == " " * 10 and " " not in flat[1]


def test_bars_fit_their_columns() -> None:
    assert bar_layout(30, 48) == (1, 1, 9)
    assert bar_layout(12, 48) == (3, 4, 0)
    assert bar_layout(7, 49) == (4, 7, 0)
    sums, run = group_sums([1.0] * 31, 20)
    assert run == 2 and len(sums) == 16 and sum(sums) == 31


def test_the_axis_names_the_day_when_a_range_crosses_midnight() -> None:
    day = range_of("Europe/Paris", "2026-11-14T17:45", "2026-11-15T17:45", "15m").points
    assert stamp_format("15m", day)(day[0].start) == "14 Nov 17:45"
    hour = range_of("Europe/Paris", "2026-11-15T09:30", "2026-11-15T10:30", "1m").points
    assert stamp_format("1m", hour)(hour[-1].start) == "10:29"
    months = range_of("Europe/Paris", "2025-12-01", "2026-12-01", "1mo").points
    assert stamp_format("1mo", months)(months[0].start) == "Dec 2025"

"""Date ranges against a real server: GET /api/v1/analytics/history (JSON, CSV, HEAD) and the
``range`` message on /ws/metrics, with good and bad parameters; the answers across a restart, a
change of --tz, pruning of raw events, and an upgrade from a database without range rollups."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import json
import re
import socket
import sqlite3
import struct
import termios
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from metrics_protocol import wire
from metrics_server.app import MetricsServer, ServerConfig

HISTORY = "/api/v1/analytics/history"
ZONE = "Europe/Paris"
TZ = ZoneInfo(ZONE)


def day(now: float, back: int) -> str:
    """The local date ``back`` days before now, as ISO 8601."""
    return (datetime.fromtimestamp(now, TZ).date() - timedelta(days=back)).isoformat()


def noon(now: float, back: int) -> float:
    d = datetime.fromtimestamp(now, TZ).date() - timedelta(days=back)
    return datetime(d.year, d.month, d.day, 12, tzinfo=TZ).timestamp()


def traffic(now: float) -> list[dict[str, Any]]:
    """Three days of events, at noon 1, 2 and 3 days ago (never today, whatever the clock):
    a sale of 10.25 a day, a failure, a view and two users."""
    out: list[dict[str, Any]] = []
    for d in (1, 2, 3):
        ts = noon(now, d)
        out += [
            {"type": "transaction", "id": f"t{d}", "status": "pending", "amount": "10.25",
             "userId": f"u{d}", "ts": ts - 30},
            {"type": "transaction", "id": f"t{d}", "status": "completed", "ts": ts},
            {"type": "transaction", "id": f"f{d}", "status": "failed", "amount": "3", "ts": ts},
            {"type": "content_view", "contentId": "c1", "userId": "u9", "ts": ts},
            {"type": "user_activity", "userId": f"u{d}", "ts": ts},
        ]  # fmt: skip
    return out


@pytest.fixture
async def paris(start_server):
    return await start_server(tz=ZONE)


@pytest.fixture
async def http(paris):
    async with httpx.AsyncClient(base_url=paris.http_url, timeout=5) as client:
        yield client


def params(now: float, step: str = "1d", **more: str) -> dict[str, str]:
    return {"from": day(now, 4), "to": day(now, -1), "step": step, **more}


async def test_json_answer_has_the_issue_shape(paris, http, producer, now, parse) -> None:
    prod = await producer(paris)
    await prod.ok(traffic(now))
    resp = await http.get(HISTORY, params=params(now))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = parse(resp.text)
    assert list(body) == ["type", "from", "to", "step", "tz", "points"]
    assert (body["type"], body["step"], body["tz"]) == ("range", "1d", ZONE)
    assert body["from"] == datetime.fromisoformat(day(now, 4)).replace(tzinfo=TZ).isoformat()
    assert len(body["points"]) == 5  # 4 days ago to today
    for pt in body["points"]:
        assert list(pt) == list(wire.RANGE_FIELDS)
        assert datetime.fromisoformat(pt["start"]).utcoffset() is not None
    assert re.search(r'"revenue":\d+\.\d\d,', resp.text)
    yesterday = body["points"][-2]
    assert yesterday["start"].startswith(day(now, 1))
    assert (yesterday["revenue"], yesterday["completed"], yesterday["failed"]) == (
        Decimal("10.25"), 1, 1,
    )  # fmt: skip
    assert (yesterday["started"], yesterday["views"], yesterday["activeUsers"]) == (2, 1, 2)
    assert yesterday["peakCurrent"] is None  # no sample was taken then
    assert body["points"][-1]["peakCurrent"] is not None  # the ingest's push sampled today
    assert body["points"][0] == {
        "start": body["points"][0]["start"], "revenue": Decimal("0.00"), "completed": 0,
        "failed": 0, "started": 0, "views": 0, "activeUsers": 0, "peakCurrent": None,
    }  # fmt: skip
    assert sum(p["revenue"] for p in body["points"]) == Decimal("30.75")
    assert wire.decode_range(wire.loads(resp.text)).points[-2].revenue == Decimal("10.25")
    assert body["to"] == datetime.fromisoformat(day(now, -1)).replace(tzinfo=TZ).isoformat()


async def test_csv_parses_back_to_the_json_points(paris, http, producer, now, parse) -> None:
    await (await producer(paris)).ok(traffic(now))
    as_json = parse((await http.get(HISTORY, params=params(now, "1h"))).text)
    resp = await http.get(HISTORY, params=params(now, "1h", format="csv"))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv"
    name = f"metrics_{day(now, 4)}_{day(now, -1)}_1h.csv"
    assert resp.headers["content-disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.reader(io.StringIO(resp.text)))
    assert tuple(rows[0]) == wire.RANGE_CSV_COLUMNS
    assert len(rows) == len(as_json["points"]) + 1 > 100
    for row, pt in zip(rows[1:], as_json["points"], strict=True):
        assert row[0] == pt["start"]
        assert Decimal(row[1]) == pt["revenue"] and re.fullmatch(r"\d+\.\d\d", row[1])
        assert [int(v) for v in row[2:7]] == [
            pt[k] for k in ("completed", "failed", "started", "views", "activeUsers")
        ]
        assert row[7] == ("" if pt["peakCurrent"] is None else str(pt["peakCurrent"]))


async def test_head_answers_the_headers_without_the_body(paris, http, now) -> None:
    for fmt in ("json", "csv"):
        get = await http.get(HISTORY, params=params(now, format=fmt))
        head = await http.head(HISTORY, params=params(now, format=fmt))
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
        assert head.headers["content-type"] == get.headers["content-type"]
    bad = await http.head(HISTORY, params=params(now, step="2d"))
    assert bad.status_code == 400 and bad.content == b""


BAD = [
    ({"from": None}, "from", "'from' is required"),
    ({"to": None}, "to", "'to' is required"),
    ({"step": None}, "step", "'step' is required"),
    ({"from": "2026-11-05", "to": "2026-11-01"}, "from", "must be before 'to'"),
    ({"step": "2h"}, "step", "unknown step '2h'"),
    ({"from": "2026-02-30"}, "from", "not an ISO 8601"),
    ({"to": "2026-11-02T25:00"}, "to", "not an ISO 8601"),
    ({"to": "2026-11-02T00:00+24:00"}, "to", "bad UTC offset"),
    ({"from": "2026-11-01[Europe/Atlantis]"}, "from", "unknown time zone"),
    ({"from": "2000-01-01", "to": "2026-01-01", "step": "1h"}, "step", "more than 5,000"),
    ({"format": "xlsx"}, "format", "unknown format 'xlsx'"),
]


@pytest.mark.parametrize(("change", "parameter", "words"), BAD)
async def test_bad_requests_are_400_naming_the_parameter(
    paris, http, now, parse, change: dict, parameter: str, words: str
) -> None:
    query = {**params(now), **change}
    query = {k: v for k, v in query.items() if v is not None}
    resp = await http.get(HISTORY, params=query)
    assert resp.status_code == 400, resp.text
    err = parse(resp.text)["error"]
    assert (err["code"], err["parameter"]) == ("invalid_range", parameter)
    assert words in err["message"]
    assert (await http.get("/healthz")).status_code == 200  # still serving


async def test_a_repeated_parameter_is_refused(paris, http, now, parse) -> None:
    url = f"{HISTORY}?from={day(now, 3)}&to={day(now, 1)}&step=1d&step=1h"
    resp = await http.get(url)
    assert resp.status_code == 400 and parse(resp.text)["error"]["parameter"] == "step"


async def test_an_unencoded_plus_in_an_offset_is_read_as_written(paris, http, parse) -> None:
    resp = await http.get(
        f"{HISTORY}?from=2026-11-01T00:00+01:00&to=2026-11-01T03:00+01:00&step=1h"
    )
    assert resp.status_code == 200, resp.text
    assert [p["start"] for p in parse(resp.text)["points"]] == [
        "2026-11-01T00:00:00+01:00", "2026-11-01T01:00:00+01:00", "2026-11-01T02:00:00+01:00",
    ]  # fmt: skip


async def test_history_takes_the_read_token(start_server, now) -> None:
    srv = await start_server(token="r3ad", ingest_token="wr1te")
    async with httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        assert (await http.get(HISTORY, params=params(now))).status_code == 401
        ok = await http.get(HISTORY, params=params(now), headers={"Authorization": "Bearer r3ad"})
        assert ok.status_code == 200
        ok = await http.get(HISTORY, params=params(now, token="r3ad"))
        assert ok.status_code == 200
        wrong = await http.get(
            HISTORY, params=params(now), headers={"Authorization": "Bearer wr1te"}
        )
        assert wrong.status_code == 401


async def test_only_get_and_head(paris, http, now) -> None:
    resp = await http.request("DELETE", HISTORY, params=params(now))
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, HEAD"


# --------------------------------------------------------------------------- the socket


async def test_range_message_on_the_socket(paris, http, subscribe, producer, now, parse) -> None:
    await (await producer(paris)).ok(traffic(now))
    sub = await subscribe(paris)
    await sub.send(
        {"type": "range", "id": 7, "from": day(now, 4), "to": day(now, -1), "step": "1d"}
    )
    answer = await sub.recv_where(lambda m: m.get("type") == "range")
    assert answer["id"] == 7
    rest = parse((await http.get(HISTORY, params=params(now))).text)
    assert {k: v for k, v in answer.items() if k != "id"} == rest
    await sub.send({"type": "range", "id": {"page": 2}, **params(now, "1mo")})
    answer = await sub.recv_where(lambda m: m.get("type") == "range")
    assert answer["id"] == {"page": 2} and answer["points"][-1]["revenue"] == Decimal("30.75")


SOCKET_BAD = [
    ({"from": 20261101}, "from", "must be a string"),
    ({"to": None}, "to", "'to' is required"),
    ({"step": "1y"}, "step", "unknown step '1y'"),
    ({"from": "2026-11-05", "to": "2026-11-01"}, "from", "must be before 'to'"),
    ({"from": "not a date"}, "from", "not an ISO 8601"),
    ({"to": "2026-11-02T00:00-99:00"}, "to", "bad UTC offset"),
    ({"from": "2000-01-01", "to": "2001-01-01", "step": "5m"}, "step", "more than 5,000"),
]


async def test_bad_range_messages_get_an_error_and_the_connection_stays_open(
    paris, subscribe, now
) -> None:
    sub = await subscribe(paris)
    for n, (change, parameter, words) in enumerate(SOCKET_BAD):
        msg = {"type": "range", "id": n, **params(now), **change}
        await sub.send({k: v for k, v in msg.items() if v is not None})
        err = await sub.recv_where(lambda m: m.get("type") == "error")
        assert err["id"] == n
        assert (err["error"]["code"], err["error"]["parameter"]) == ("invalid_range", parameter)
        assert words in err["error"]["message"]
    await sub.roundtrip_ping()
    await sub.send({"type": "range", "id": "ok", **params(now)})
    assert (await sub.recv_where(lambda m: m.get("type") == "range"))["id"] == "ok"


# --------------------------------------------------------------------------- lasting answers


def config(db: Path, **more: Any) -> ServerConfig:
    """A server stopped by the test itself (then started again on the same file)."""
    return ServerConfig(host="127.0.0.1", port=0, db=str(db), interval=3600.0, **more)


async def get_all(srv, now: float) -> dict[str, Any]:
    """The snapshot's figures and a range of every step."""
    async with httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        out: dict[str, Any] = {}
        snap = wire.loads((await http.get("/api/v1/analytics/realtime-metrics")).text)["data"]
        out["snapshot"] = {k: v for k, v in snap.items() if k not in ("timestamp", "activeUsers")}
        spans = {"1m": 1, "5m": 1, "15m": 3, "1h": 4, "1d": 4, "1w": 30, "1mo": 90}
        for step, back in spans.items():
            q = {"from": day(now, back), "to": day(now, -1), "step": step}
            body = wire.loads((await http.get(HISTORY, params=q)).text)
            # peakCurrent aside: every GET of the snapshot samples the current minute anew.
            out[step] = [{k: v for k, v in p.items() if k != "peakCurrent"} for p in body["points"]]
    return out


async def test_ranges_and_figures_are_unchanged_after_pruning_and_a_restart(
    start_server, producer, now, db_path: Path
) -> None:
    async with MetricsServer(config(db_path, tz=ZONE, retention=1.5)) as srv:
        await (await producer(srv)).ok(traffic(now))
        before = await get_all(srv, now)
        assert [p["revenue"] for p in before["1d"][-4:]] == [Decimal("10.25")] * 3 + [Decimal(0)]
        assert srv.service is not None
        await srv.service.tick()  # the sample prunes: noon 2 and 3 days ago are > 36 h old
        assert srv.service.store.event_count() == 5
        assert await get_all(srv, now) == before
    again = await start_server(tz=ZONE)
    assert await get_all(again, now) == before


async def test_a_change_of_zone_rebuilds_hours_and_days(
    start_server, producer, now, db_path: Path, tmp_path: Path
) -> None:
    async with MetricsServer(config(db_path, tz=ZONE)) as paris:
        await (await producer(paris)).ok(traffic(now))
    moved = await start_server(tz="Asia/Kathmandu")
    fresh = await start_server(tz="Asia/Kathmandu", db=str(tmp_path / "fresh.db"))
    await (await producer(fresh)).ok(traffic(now))
    assert await get_all(moved, now) == await get_all(fresh, now)


async def test_a_database_from_before_range_rollups_is_upgraded_and_backfilled(
    start_server, producer, now, db_path: Path, caplog
) -> None:
    async with MetricsServer(config(db_path, tz=ZONE)) as srv:
        await (await producer(srv)).ok(traffic(now))
        before = await get_all(srv, now)
    with sqlite3.connect(db_path) as conn:  # what version 1 left: no range tables at all
        conn.executescript(
            "DROP TABLE range_buckets; DROP TABLE user_minutes;"
            " DELETE FROM meta WHERE key = 'ranges_tz';"
            " UPDATE meta SET value = '1' WHERE key = 'schema_version';"
        )
    caplog.set_level("INFO", logger="metrics_server")
    again = await start_server(tz=ZONE)
    assert "built the range rollups from 15 stored events" in caplog.text
    assert await get_all(again, now) == before
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            "2",
        )


# --------------------------------------------------------------------------- large answers


LONG = {"from": "2026-11-01", "to": "2026-11-04T11:00", "step": "1m"}  # 4,980 points, 670 KB


async def test_a_large_answer_to_a_slow_reader_is_not_taken_for_a_stuck_client(
    start_server, wait_until
) -> None:
    """The output bound (connection.py) is meant for snapshots; a range answer is larger. With
    the server's socket buffer held small and the client not reading for a while, the answer
    waits in the server's buffer, above the bound, and is still delivered whole."""
    from websockets.asyncio.client import connect

    from metrics_server.hub import Limits

    srv = await start_server(limits=Limits(max_output=20_000))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.setblocking(False)
    async with connect(srv.url, sock=sock, max_size=None) as ws:
        await ws.recv(), await ws.recv()  # history, current
        (conn,) = srv.hub.subscribers
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        ws.transport.pause_reading()
        await ws.send(json.dumps({"type": "range", "id": 1, **LONG}))
        await wait_until(lambda: conn.transport.get_write_buffer_size() > 100_000)
        ws.transport.resume_reading()
        answer = wire.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer["id"] == 1 and len(answer["points"]) == 4980
        assert conn.max_output == 20_000  # back to the bound for what follows
        await ws.send('{"type":"ping"}')
        assert wire.loads(await asyncio.wait_for(ws.recv(), 3)) == {"type": "pong"}


async def test_a_large_csv_to_a_slow_reader_is_delivered(start_server, wait_until) -> None:
    """The same over HTTP: accepted sockets take the listening socket's small send buffer, and
    the client reads nothing until the answer has begun to arrive."""
    from metrics_server.hub import Limits

    srv = await start_server(limits=Limits(max_output=20_000))
    assert srv._server is not None
    srv._server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
    writer.transport.pause_reading()
    query = "&".join(f"{k}={v}" for k, v in LONG.items())
    writer.write(f"GET {HISTORY}?{query}&format=csv HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()

    def unread() -> int:
        return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]

    await wait_until(lambda: unread() > 0)  # written: the rest waits in the server's buffer
    writer.transport.resume_reading()
    data = await asyncio.wait_for(reader.read(), 10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(body.decode().splitlines()) == 4981
    writer.close()


async def test_history_answers_are_counted_for_metrics(paris, http, now) -> None:
    """/metrics' http_responses counts the history route like the others, once it has answered."""
    assert (await http.get(HISTORY, params=params(now))).status_code == 200
    assert (await http.head(HISTORY, params=params(now, step="9m"))).status_code == 400
    assert paris.service is not None
    counted = paris.service.telemetry.http
    assert (counted[(HISTORY, 200)], counted[(HISTORY, 400)]) == (1, 1)
    text = (await http.get("/metrics")).text
    assert f'route="{HISTORY}",status="200"' in text

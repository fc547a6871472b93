"""Log lines as an operator gets them from the CLI: JSON one object a line with the required
events and their context, readable text, and never a token, whatever the level."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

TOKEN = "read-0c9e4b7a-token"
INGEST_TOKEN = "ingest-6f1d2a93-token"
WRONG = "wrong-3b8e5c10-token"
SECRETS = (TOKEN, INGEST_TOKEN, WRONG)
EVENT_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


async def refused(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        async with connect(url, additional_headers=headers, open_timeout=3):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def exercise(srv: Any, db_path: Path | None = None) -> None:
    """A subscriber, a producer with one accepted and one refused batch, 401s with tokens in
    headers and query strings, and with ``db_path`` a batch refused by a locked store."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(srv.url("/ws/metrics"), additional_headers=bearer) as sub:
        await asyncio.wait_for(sub.recv(), 5)
        await asyncio.wait_for(sub.recv(), 5)
    assert await refused(srv.url(f"/ws/metrics?token={WRONG}")) == 401
    assert await refused(srv.url("/ws/ingest"), bearer) == 401  # the read token cannot write
    async with httpx.AsyncClient(timeout=5) as http:
        rest = srv.url("/api/v1/analytics/realtime-metrics", "http")
        assert (
            await http.get(rest, headers={"Authorization": f"Bearer {WRONG}"})
        ).status_code == 401
        assert (await http.get(srv.url("/metrics", "http"))).status_code == 401
        assert (await http.get(srv.url(f"/metrics?token={TOKEN}", "http"))).status_code == 200
    async with connect(srv.url(f"/ws/ingest?token={INGEST_TOKEN}")) as prod:
        batch = {"type": "events", "id": "b1", "events": [{"type": "user_activity", "userId": "u"}]}
        await prod.send(json.dumps(batch))
        assert json.loads(await asyncio.wait_for(prod.recv(), 5))["type"] == "ack"
        bad = {"type": "events", "id": "b2", "events": [{"type": "user_activity"}]}
        await prod.send(json.dumps(bad))
        assert (
            json.loads(await asyncio.wait_for(prod.recv(), 5))["error"]["code"] == "invalid_event"
        )
        if db_path is not None:
            locker = sqlite3.connect(db_path, isolation_level=None)
            try:
                locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
                await prod.send(json.dumps({**batch, "id": "b3"}))
                reply = json.loads(await asyncio.wait_for(prod.recv(), 10))
                assert reply["error"]["code"] == "store_unavailable"
            finally:
                locker.execute("ROLLBACK")
                locker.close()


async def test_json_logs_are_one_object_a_line_with_the_required_events(run_cli, db_path) -> None:
    srv = await run_cli(
        "--log-format", "json", "--log-level", "debug", "--token", TOKEN,
        env={"METRICS_INGEST_TOKEN": INGEST_TOKEN},
    ).ready()  # fmt: skip
    await exercise(srv, db_path)
    assert srv.stop() == 0
    stderr = srv.stderr
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line parses
    for line in lines:
        assert isinstance(line, dict)
        assert line["ts"].endswith("Z")
        assert datetime.fromisoformat(line["ts"]).utcoffset() == timedelta(0)
        assert line["level"] in ("debug", "info", "warning", "error")
        assert EVENT_NAME.fullmatch(line["event"]), line
    for secret in SECRETS:
        assert secret not in stderr

    def events(name: str, **context: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in lines
            if line["event"] == name and all(line.get(k) == v for k, v in context.items())
        ]

    names = [line["event"] for line in lines]
    assert names.index("server_start") < names.index("server_stopping") < names.index("server_stop")
    # Connections: producers at info, subscribers at debug; one line each way, same conn id.
    for route, level in (("/ws/ingest", "info"), ("/ws/metrics", "debug")):
        [opened] = events("conn_open", route=route)
        [closed] = events("conn_close", route=route, conn=opened["conn"])
        assert opened["level"] == closed["level"] == level
        assert (
            re.fullmatch(r"127\.0\.0\.1:\d+", opened["peer"]) and closed["peer"] == opened["peer"]
        )
        assert closed["close_code"] == 1000
    producer = events("conn_open", route="/ws/ingest")[0]["conn"]
    # 401s: the route without its query string, and the peer.
    unauthorized = events("unauthorized", code="unauthorized", level="warning")
    assert sorted(line["route"] for line in unauthorized) == sorted(
        ["/ws/metrics", "/ws/ingest", "/api/v1/analytics/realtime-metrics", "/metrics"]
    )
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"]) for line in unauthorized)
    # Refused batches, with the producer's connection and the batch's id.
    [bad] = events("batch_refused", batch="b2", code="invalid_event")
    assert (bad["conn"], bad["route"], bad["index"], bad["level"]) == (
        producer,
        "/ws/ingest",
        0,
        "warning",
    )
    [locked] = events("batch_refused", batch="b3", code="store_unavailable")
    assert locked["conn"] == producer
    [store] = events("store_error", op="commit", level="error")
    assert store["batches"] == 1 and store["error"]
    assert not events("batch_refused", batch="b1")


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_no_token_in_any_log_line_even_at_debug(run_cli, fmt) -> None:
    srv = await run_cli(
        "--log-level", "debug", "--token", TOKEN, "--ingest-token", INGEST_TOKEN,
        env={"METRICS_LOG_FORMAT": fmt},
    ).ready()  # fmt: skip
    await exercise(srv)
    assert srv.stop() == 0
    stderr = srv.stderr
    for secret in (*SECRETS, "token="):
        assert secret not in stderr
    if fmt == "text":  # today's format, for people: time, level, message
        line = next(line for line in stderr.splitlines() if "batch " in line)
        assert re.fullmatch(r"\S+ \S+ WARNING batch \"b2\" refused: invalid_event \(.+\)", line), (
            line
        )
        assert re.search(r"INFO producer \w+ connected from 127\.0\.0\.1:\d+", stderr)
        assert re.search(r"DEBUG subscriber \w+ closed with code 1000 after", stderr)
        assert "WARNING 401 for GET /metrics from 127.0.0.1:" in stderr
    else:
        assert all(json.loads(line)["event"] for line in stderr.splitlines())


def test_log_flags_refuse_unknown_values(run_quick) -> None:
    result = run_quick("--log-format", "yaml")
    assert result.returncode == 2
    assert "--log-format: unknown log format 'yaml'; use one of text, json" in result.stderr
    result = run_quick("--log-level", "verbose")
    assert result.returncode == 2 and "use one of debug, info, warning, error" in result.stderr

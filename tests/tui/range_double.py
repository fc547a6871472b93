"""A stand-in metrics server for range requests, to issue 11's exact shapes, on a real socket.

Until metrics-server answers ranges itself, the monitor's range views and ``metrics-tui
export`` are tested against this: ``/ws/metrics`` greets like the server (history, then the
figures now), answers ``subscribe``, ``ping`` and ``{"type":"range",...}`` (or an ``error``
with the request's id), and ``GET /api/v1/analytics/history`` answers the same JSON (or 400).
Buckets follow the issue: calendar days, ISO weeks and months in ``tz``; the first bucket
starts at the first boundary at or before ``from``; ``to`` is exclusive; at most 5,000 points.
Every request is recorded, so tests can check the transport and the paging.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from metrics_protocol.wire import (
    REST_METRICS_PATH,
    WS_METRICS_PATH,
    ActiveUsers,
    Content,
    Metrics,
    Revenue,
    Transactions,
    encode,
    encode_history,
    encode_metrics,
    loads,
)
from metrics_tui.history import HISTORY_PATH, MAX_RANGE_POINTS, STEPS

FIXED = {"1m": 1, "5m": 5, "15m": 15, "1h": 60}


@dataclass
class Seen:
    transport: str  # "ws" or "rest"
    start: str
    end: str
    step: str
    points: int


def snapshot(now: datetime) -> Metrics:
    return Metrics(
        timestamp=now,
        revenue=Revenue(
            Decimal("1212.75"), Decimal("12.50"), Decimal("1212.75"), Decimal("1212.75")
        ),
        active_users=ActiveUsers(2, 2, 2),
        transactions=Transactions(4, 1, 2, 1),
        content=Content(10, 2, Decimal("20.00")),
    )


class RangeDouble:
    def __init__(self, tz: str = "UTC") -> None:
        self.tz = tz
        self.zone = ZoneInfo(tz)
        self.seen: list[Seen] = []
        #: Answer the next range request with this error (code, message) instead.
        self.refuse_next: tuple[str, str] | None = None
        self._server: Any = None
        self.port = 0

    async def start(self) -> RangeDouble:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._http, max_size=2**20
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_METRICS_PATH}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ ranges

    def answer(self, start: Any, end: Any, step: Any, transport: str) -> dict[str, Any]:
        """The range body; raises ValueError("param: why") for a bad request."""
        if step not in STEPS:
            raise ValueError(f"step: unknown step {step!r}")
        a, b = self._moment("from", start), self._moment("to", end)
        if a >= b:
            raise ValueError("from: must be before 'to'")
        starts = []
        bucket = self._floor(a, step)
        while bucket < b:
            starts.append(bucket)
            if len(starts) > MAX_RANGE_POINTS:
                raise ValueError(f"step: more than {MAX_RANGE_POINTS} points")
            bucket = self._next(bucket, step)
        self.seen.append(Seen(transport, start, end, step, len(starts)))
        return {
            "type": "range",
            "from": start,
            "to": end,
            "step": step,
            "tz": self.tz,
            "points": [self._point(s) for s in starts],
        }

    def _moment(self, name: str, text: Any) -> datetime:
        if not isinstance(text, str):
            raise ValueError(f"{name}: must be a date or datetime")
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name}: not an ISO 8601 date or datetime: {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def _floor(self, moment: datetime, step: str) -> datetime:
        local = self._local(moment)
        if step in FIXED:
            minutes = local.hour * 60 + local.minute
            minutes -= minutes % FIXED[step]
            wall = local.replace(hour=minutes // 60, minute=minutes % 60, second=0, microsecond=0)
            return wall.astimezone(UTC)
        day = local.date()
        if step == "1w":
            day -= timedelta(days=day.weekday())
        elif step == "1mo":
            day = day.replace(day=1)
        return self._midnight(day)

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, datetime.min.time(), self.zone).astimezone(UTC)

    def _next(self, bucket: datetime, step: str) -> datetime:
        if step in FIXED:
            return bucket + timedelta(minutes=FIXED[step])
        day = self._local(bucket).date()
        if step == "1d":
            return self._midnight(day + timedelta(days=1))
        if step == "1w":
            return self._midnight(day + timedelta(weeks=1))
        year, month = divmod(day.year * 12 + day.month, 12)
        return self._midnight(date(year, month + 1, 1))

    def _point(self, start: datetime) -> dict[str, Any]:
        n = int(start.timestamp()) // 60
        cents = (n * 7919) % 250_000
        return {
            "start": self._local(start).isoformat(),
            "revenue": Decimal(cents).scaleb(-2).quantize(Decimal("0.01")),
            "completed": n % 17,
            "failed": n % 3,
            "started": n % 19,
            "views": n % 401,
            "activeUsers": 20 + n % 13,
            "peakCurrent": None if n % 7 == 0 else 30 + n % 11,
        }

    @staticmethod
    def dumps(body: dict[str, Any]) -> str:
        """JSON with revenue written with two decimals, as the server writes money."""

        points = []
        for p in body.get("points", []):
            fields = {k: v for k, v in p.items() if k != "revenue"}
            head = json.dumps(fields, separators=(",", ":"))[:-1]
            points.append(f'{head},"revenue":{p["revenue"]:.2f}}}')
        rest = {k: v for k, v in body.items() if k != "points"}
        return json.dumps(rest, separators=(",", ":"))[:-1] + (
            ',"points":[' + ",".join(points) + "]}"
        )

    # ------------------------------------------------------------------ transports

    async def _handler(self, ws: ServerConnection) -> None:
        now = datetime.now(UTC)
        await ws.send(encode_history([snapshot(now)], interval=3600))
        await ws.send(encode_metrics(snapshot(now), "change"))
        with contextlib.suppress(ConnectionClosed):
            await self._serve(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        async for raw in ws:
            msg = loads(raw)
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "subscribe":
                await ws.send(encode({"type": "subscribed", "channels": msg.get("channels")}))
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
            elif kind == "range":
                rid = msg.get("id")
                try:
                    if self.refuse_next is not None:
                        code, why = self.refuse_next
                        self.refuse_next = None
                        raise ValueError(f"{code}|{why}")
                    body = self.answer(msg.get("from"), msg.get("to"), msg.get("step"), "ws")
                except ValueError as exc:
                    code, _, why = str(exc).rpartition("|")
                    err = {"code": code or "invalid_message", "message": why}
                    await ws.send(encode({"type": "error", "id": rid, "error": err}))
                    continue
                await ws.send(self.dumps({**body, "id": rid}))

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == WS_METRICS_PATH:
            return None
        if parts.path == REST_METRICS_PATH:
            return self._json(200, encode_metrics(snapshot(datetime.now(UTC)), interval=3600))
        if parts.path != HISTORY_PATH:
            return self._json(404, '{"type":"error","error":{"code":"not_found"}}')
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            body = self.answer(q.get("from"), q.get("to"), q.get("step"), "rest")
        except ValueError as exc:
            err = {"type": "error", "error": {"code": "invalid_message", "message": str(exc)}}
            return self._json(400, json.dumps(err))
        return self._json(200, self.dumps(body))

    @staticmethod
    def _json(status: int, text: str) -> Response:
        body = text.encode()
        headers = Headers(
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return Response(status, HTTPStatus(status).phrase, headers, body)

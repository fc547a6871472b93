"""REST on the WebSocket port: the metrics snapshot, health, and JSON errors for the rest."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest

REST = "/api/v1/analytics/realtime-metrics"
KNOWN = [REST, "/healthz", "/ws/metrics", "/ws/ingest"]
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.http_url, timeout=3) as client:
        yield client


async def test_realtime_metrics_has_exactly_the_seed_shape(
    server, http, seed, shape_of, parse
) -> None:
    resp = await http.get(REST)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body = parse(resp.text)
    assert set(body) == {"type", "kind", "interval", "data"}
    assert body["type"] == "metrics"
    # a poller gets no history, so the answer names the sampling interval (--interval)
    assert body["interval"] == server.config.interval
    # Same keys, and the same JSON type for every figure: money has decimals, counts do not.
    assert shape_of(body["data"]) == shape_of(seed["data"])
    assert list(body["data"]) == list(seed["data"])
    assert ISO_MS_Z.match(body["data"]["timestamp"])
    cents = r"\d+\.\d\d"
    assert re.search(
        rf'"revenue":{{"total":{cents},"today":{cents},"thisWeek":{cents},"thisMonth":{cents}}}',
        resp.text,
    ), resp.text
    assert re.search(rf'"conversionRate":{cents}}}', resp.text), resp.text


async def test_rest_and_websocket_agree(server, http, subscribe, producer, parse) -> None:
    prod = await producer(server)
    await prod.ok(
        [
            {"type": "transaction", "id": "t1", "status": "completed", "amount": "12.34"},
            {"type": "content_view", "contentId": "c1", "userId": "u1"},
        ]
    )
    rest = parse((await http.get(REST)).text)  # right after the ack: already counted
    sub = await subscribe(server)
    ws = sub.current
    assert rest["data"]["revenue"]["total"] == Decimal("12.34")
    assert {k: v for k, v in rest["data"].items() if k != "timestamp"} == {
        k: v for k, v in ws["data"].items() if k != "timestamp"
    }
    assert set(rest) == set(ws) | {"interval"}


async def test_query_string_is_ignored(http) -> None:
    resp = await http.get(REST + "?fresh=1")
    assert resp.status_code == 200
    assert resp.json()["type"] == "metrics"


async def test_healthz(http) -> None:
    resp = await http.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/", "/api/v1/analytics", "/healthz/x", "/ws/other"])
async def test_unknown_path_is_a_json_404(http, path) -> None:
    resp = await http.get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["code"] == "not_found"
    assert isinstance(body["error"]["message"], str)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", KNOWN)
async def test_other_methods_on_known_paths_are_405(http, method, path) -> None:
    resp = await http.request(method, path)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD"
    body = resp.json()
    assert body["error"]["code"] == "method_not_allowed"
    assert method in body["error"]["message"]


async def test_server_keeps_serving_after_http_errors(server, http, subscribe) -> None:
    for _ in range(3):
        assert (await http.get("/nope")).status_code == 404
        assert (await http.post(REST)).status_code == 405
    assert (await http.get("/healthz")).status_code == 200
    sub = await subscribe(server)
    await sub.roundtrip_ping()

"""Who may connect: tokens (subscribers and REST vs producers), Origin allowlist, exposure warnings.

Tokens are checked against the real CLI, since what matters is also what it does *not* do: log a
token or a query string that may hold one.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from metrics_server import security
from metrics_server.cli import parse_config

TOKEN = "sub-7f3a9c1e-token"
INGEST_TOKEN = "ingest-4b2d8e6f-token"
WRONG = "wrong-91c0d5aa-token"
REST = "/api/v1/analytics/realtime-metrics"
BATCH = json.dumps(
    {"type": "events", "id": 1, "events": [{"type": "user_activity", "userId": "u"}]}
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ws_status(url: str, headers: dict[str, str] | None = None) -> int:
    """101 when the handshake succeeds, else the HTTP status the server refused it with."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=3):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_tokens_guard_each_path_separately_and_are_never_logged(run_cli) -> None:
    # --token as a flag, the ingest token from the environment: both ways are covered.
    srv = await run_cli("--token", TOKEN, env={"METRICS_INGEST_TOKEN": INGEST_TOKEN}).ready()
    metrics, ingest = srv.url("/ws/metrics"), srv.url("/ws/ingest")

    cases: list[tuple[str, dict[str, str] | None, int]] = [
        (metrics, None, 401),
        (metrics, bearer(WRONG), 401),
        (metrics + f"?token={WRONG}", None, 401),
        (metrics, {"Authorization": f"Basic {TOKEN}"}, 401),  # only Bearer carries a token
        (metrics, bearer(INGEST_TOKEN), 401),  # the producers' token does not read metrics
        (metrics, bearer(TOKEN), 101),
        (metrics + f"?token={TOKEN}", None, 101),
        (ingest, None, 401),
        (ingest, bearer(TOKEN), 401),  # nor does the subscribers' token send events
        (ingest + f"?token={WRONG}", None, 401),
        (ingest + f"?token={INGEST_TOKEN}", None, 101),
    ]
    for url, headers, want in cases:
        assert await ws_status(url, headers) == want, (url, headers)

    async with connect(ingest, additional_headers=bearer(INGEST_TOKEN)) as ws:
        await ws.send(BATCH)
        assert json.loads(await ws.recv())["type"] == "ack"

    async with httpx.AsyncClient(timeout=3) as http:
        rest = srv.url(REST, "http")
        for resp in (
            await http.get(rest),
            await http.get(rest, headers=bearer(WRONG)),
            await http.get(rest, params={"token": WRONG}),
        ):
            assert resp.status_code == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert resp.json()["error"]["code"] == "unauthorized"
        assert (await http.get(rest, headers=bearer(TOKEN))).status_code == 200
        assert (await http.get(rest, params={"token": TOKEN})).json()["type"] == "metrics"
        # Probes need no token.
        assert (await http.get(srv.url("/healthz", "http"))).status_code == 200

    assert srv.stop() == 0
    stderr = srv.stderr
    assert "listening on" in stderr  # the log is there, so its silence below means something
    for secret in (TOKEN, INGEST_TOKEN, WRONG, "token=", "?"):
        assert secret not in stderr
    assert "Traceback" not in stderr


async def test_tokens_are_compared_in_constant_time(start_server, monkeypatch) -> None:
    """Every check goes through ``hmac.compare_digest``, whose time does not depend on where
    the first differing byte is."""
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    srv = await start_server(token=TOKEN)
    assert await ws_status(srv.url, bearer(TOKEN[:-1] + "X")) == 401
    assert await ws_status(srv.url, bearer(TOKEN)) == 101
    assert calls == [(TOKEN.encode(), (TOKEN[:-1] + "X").encode()), (TOKEN.encode(),) * 2]


def test_tokens_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    monkeypatch.setenv("METRICS_INGEST_TOKEN", INGEST_TOKEN)
    config = parse_config([])
    assert (config.token, config.ingest_token) == (TOKEN, INGEST_TOKEN)
    monkeypatch.setenv("METRICS_TOKEN", "")  # empty means off, not "the empty token"
    assert parse_config([]).token is None


@pytest.mark.parametrize(
    ("flags", "warnings"),
    [
        (["--host", "0.0.0.0"], ["without --token", "without --ingest-token"]),
        (["--host", "0.0.0.0", "--token", TOKEN], ["without --ingest-token", "clear text"]),
        (["--host", "127.0.0.1"], []),
    ],
    ids=["exposed-open", "exposed-half", "loopback"],
)
async def test_exposed_without_tokens_warns_at_start(run_cli, flags, warnings) -> None:
    srv = await run_cli(*flags).ready()  # reached on 127.0.0.1 either way
    assert srv.stop() == 0
    stderr = srv.stderr
    logged = [line for line in stderr.splitlines() if "WARNING" in line]
    for text in warnings:
        assert any(text in line for line in logged), stderr
    assert len(logged) == len(warnings), stderr
    assert TOKEN not in stderr


# --------------------------------------------------------------------------- origins


async def test_origin_allowlist(start_server) -> None:
    srv = await start_server(origins=("https://dash.example", "http://localhost:8080"))

    async def status(url: str, origin: str | None) -> int:
        try:
            async with connect(url, origin=origin, open_timeout=3):  # type: ignore[arg-type]
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    for url in (srv.url, srv.ingest_url):
        assert await status(url, "https://dash.example") == 101
        assert await status(url, "http://localhost:8080") == 101
        assert await status(url, "https://evil.example") == 403
        assert await status(url, "https://dash.example.evil.example") == 403
        assert await status(url, None) == 101  # the monitor, producers: no Origin header
    # The server still serves after refusals.
    assert await status(srv.url, "https://dash.example") == 101


def test_origins_flag_is_a_comma_separated_list(monkeypatch) -> None:
    config = parse_config(["--origins", " https://a.example, http://b.example:8080 ,"])
    assert config.origins == ("https://a.example", "http://b.example:8080")
    monkeypatch.setenv("METRICS_ORIGINS", "https://c.example")
    assert parse_config([]).origins == ("https://c.example",)
    monkeypatch.delenv("METRICS_ORIGINS")
    assert parse_config([]).origins is None  # default: any origin

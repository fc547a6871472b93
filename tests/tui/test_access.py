"""Tokens and TLS against a real server: Live with the right settings, a plain reason without,
and a refused token is not retried in a loop (neither over WebSocket nor over REST)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal

import httpx
import pytest

from metrics_tui.app import MetricsApp
from metrics_tui.client import MetricsClient
from metrics_tui.messages import ConnState
from metrics_tui.wire import (
    fetch_rest,
    http_client,
    is_unauthorized,
    redact,
    rest_url,
    tls_context,
)

from .conftest import TOKEN, Cert, ServerHandle, connection_log, free_port, wait_until
from .test_app_live import EVENTS, card_text
from .test_fallback import UpgradeBlockingProxy

#: How long a refused monitor is watched for retries it should not make (it waits 30 s).
QUIET_WINDOW = 2.0


def status_text(app: MetricsApp) -> str:
    return str(app.status_line.render())


# ---------------------------------------------------------------------- tokens


async def test_a_failed_connection_is_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client logs the URL of a failed connection; a ``?token=`` in it stays out."""
    caplog.set_level(logging.INFO, logger="metrics_tui.client")
    client = MetricsClient(f"ws://127.0.0.1:{free_port()}/ws/metrics?token={TOKEN}", print)
    task = asyncio.create_task(client.run())
    try:
        await wait_until(lambda: "connection to ws://" in caplog.text, what="a failure logged")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "/ws/metrics failed" in caplog.text and TOKEN not in caplog.text, caplog.text


async def test_right_token_goes_live_with_the_figures(token_server: ServerHandle) -> None:
    await token_server.service.ingest(EVENTS)
    app = MetricsApp(token_server.url, token=TOKEN, animate=False)
    async with app.run_test(size=(80, 24)):
        await wait_until(
            lambda: app.status.state is ConnState.LIVE and "$1,212.75" in card_text(app, "revenue"),
            what="live figures",
        )
        assert "Live" in status_text(app)


@pytest.mark.parametrize("token", [None, "wrong"], ids=["missing", "wrong"])
async def test_refused_token_says_unauthorized_and_waits_for_r(
    token_server: ServerHandle, token: str | None
) -> None:
    seen, hook = connection_log()
    app = MetricsApp(token_server.url, token=token, animate=False)
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await wait_until(lambda: app.status.state is ConnState.UNAUTHORIZED, what="unauthorized")
        line = status_text(app)
        assert "Unauthorized · check --token" in line
        assert ("no token sent" if token is None else "token refused") in line
        client = app.client
        assert client is not None and client.attempts == 1
        # An observation window, not a race: nothing should happen in it.
        await asyncio.sleep(QUIET_WINDOW)
        assert client.attempts == 1, "a refused token must not be retried in a loop"
        assert ConnState.POLLING not in seen  # REST sits behind the same token
        assert app.status.state is ConnState.UNAUTHORIZED

        await pilot.press("r")
        await wait_until(
            lambda: client.attempts == 2 and app.status.state is ConnState.UNAUTHORIZED,
            what="one retry after r",
        )


async def test_rest_fallback_sends_the_token(token_server: ServerHandle) -> None:
    await token_server.service.ingest(EVENTS)
    proxy = UpgradeBlockingProxy(token_server.port)
    port = await proxy.start()
    try:
        app = MetricsApp(f"ws://127.0.0.1:{port}/ws/metrics", token=TOKEN, animate=False)
        async with app.run_test(size=(80, 24)):
            await wait_until(
                lambda: app.status.state is ConnState.POLLING and app.latest is not None,
                what="polling with the token",
            )
            assert app.latest is not None and app.latest.revenue is not None
            assert app.latest.revenue.total == Decimal("1212.75")
    finally:
        await proxy.stop()


async def test_rest_fallback_recognises_401(token_server: ServerHandle) -> None:
    proxy = UpgradeBlockingProxy(token_server.port)
    port = await proxy.start()
    seen, hook = connection_log()
    try:
        app = MetricsApp(f"ws://127.0.0.1:{port}/ws/metrics", token="wrong", animate=False)
        async with app.run_test(size=(80, 24), message_hook=hook):
            await wait_until(
                lambda: app.status.state is ConnState.UNAUTHORIZED, what="unauthorized over REST"
            )
            assert "Unauthorized" in status_text(app)
            assert ConnState.POLLING not in seen
            assert app.latest is None
    finally:
        await proxy.stop()


# ---------------------------------------------------------------------- TLS


async def test_wss_with_cafile_is_live(tls_server: ServerHandle, cert: Cert) -> None:
    tls = tls_context(tls_server.url, cafile=cert.certfile)
    app = MetricsApp(tls_server.url, token=TOKEN, tls=tls, animate=False)
    async with app.run_test(size=(80, 24)):
        await wait_until(
            lambda: app.status.state is ConnState.LIVE and app.latest is not None, what="live"
        )
        assert "insecure" not in status_text(app)


async def test_wss_without_cafile_shows_the_certificate_error(tls_server: ServerHandle) -> None:
    seen, hook = connection_log()
    app = MetricsApp(tls_server.url, token=TOKEN, tls=tls_context(tls_server.url), animate=False)
    async with app.run_test(size=(80, 24), message_hook=hook):
        await wait_until(
            lambda: "certificate verify failed" in app.status.detail, what="certificate error"
        )
        assert "certificate verify failed" in status_text(app)
        assert ConnState.LIVE not in seen and ConnState.POLLING not in seen


async def test_wss_insecure_is_live_and_flagged(tls_server: ServerHandle) -> None:
    tls = tls_context(tls_server.url, insecure=True)
    app = MetricsApp(tls_server.url, token=TOKEN, tls=tls, animate=False)
    async with app.run_test(size=(80, 24)):
        await wait_until(
            lambda: app.status.state is ConnState.LIVE and app.latest is not None, what="live"
        )
        assert "⚠ insecure TLS" in status_text(app)


async def test_https_rest_uses_the_same_token_and_ca(tls_server: ServerHandle, cert: Cert) -> None:
    tls = tls_context(tls_server.url, cafile=cert.certfile)
    url = rest_url(tls_server.url)
    assert url.startswith("https://")
    async with http_client(TOKEN, tls, 5.0) as http:
        snapshot = await fetch_rest(http, url)
    assert snapshot.revenue is not None
    async with http_client("wrong", tls, 5.0) as http:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await fetch_rest(http, url)
    assert is_unauthorized(refused.value)


# ---------------------------------------------------------------------- logs


async def test_no_log_line_carries_a_token_from_the_url(
    token_server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused ``?token=`` (401) is in no log line either, of any logger at INFO or above,
    and the logged URL keeps no user or password."""
    from .test_status_truth import client_running

    secret = "query-secret-0123"
    caplog.set_level(logging.DEBUG)
    async with client_running(f"{token_server.url}?token={secret}") as (client, _):
        await wait_until(lambda: client.status.state is ConnState.UNAUTHORIZED)
    monitor = [r for r in caplog.records if r.name.startswith("metrics_tui")]
    assert any("connection to ws://127.0.0.1:" in r.getMessage() for r in monitor)
    # The libraries' own debug lines are off unless someone turns them on; the rest count.
    shown = [r for r in caplog.records if r in monitor or r.levelno >= logging.INFO]
    assert not [r.getMessage() for r in shown if secret in r.getMessage()]
    assert redact("wss://u:pw@h:1/p/ws/metrics?token=x#f") == "wss://h:1/p/ws/metrics"
    assert redact("ws://[::1/ws?token=x") == "ws://[::1/ws"  # not even a URL

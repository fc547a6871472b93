"""HTTP at the edges: HEAD, pipelined requests, half-closed connections, request bodies.

Raw sockets, since HTTP clients smooth exactly these cases over; the server's log is captured
(caplog on the in-process server) and must hold no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import httpx
import pytest

REST = "/api/v1/analytics/realtime-metrics"
GET_ROUTES = [REST, "/healthz", "/ws/metrics", "/ws/ingest", "/nope"]


async def exchange(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` on a fresh connection and return all the server wrote until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)  # the server's level (websockets adds tracebacks at DEBUG)
    return caplog


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.levelname} {r.getMessage()}" for r in bad]


@pytest.mark.parametrize("path", GET_ROUTES)
@pytest.mark.parametrize("token", [None, "s3cret"])
async def test_head_answers_like_get_without_the_body(start_server, path, token) -> None:
    srv = await start_server(token=token)
    status, headers, body = split_response(await exchange(srv.port, get(path)))
    h_status, h_headers, h_body = split_response(await exchange(srv.port, get(path, "HEAD")))
    assert h_body == b""
    assert (h_status, h_headers) == (status, headers)
    assert int(h_headers["Content-Length"]) == len(body) > 0


async def test_curl_i_on_healthz(start_server) -> None:
    srv = await start_server()
    async with httpx.AsyncClient(timeout=3) as http:
        resp = await http.head(srv.http_url + "/healthz")
    assert resp.status_code == 200
    assert resp.headers["content-length"] == str(len('{"status":"ok"}'))


async def test_a_websocket_path_without_a_handshake_is_a_json_426(start_server) -> None:
    srv = await start_server()
    status, headers, body = split_response(await exchange(srv.port, get("/ws/metrics")))
    assert status == 426 and headers["Upgrade"] == "websocket"
    assert json.loads(body)["error"]["code"] == "invalid_message"


async def test_405_lists_get_and_head(start_server) -> None:
    srv = await start_server()
    status, headers, _ = split_response(await exchange(srv.port, get("/healthz", "DELETE")))
    assert status == 405 and headers["Allow"] == "GET, HEAD"


async def test_pipelined_gets_answer_the_first_and_log_no_traceback(
    start_server, server_log
) -> None:
    srv = await start_server()
    raw = await exchange(srv.port, get("/healthz") * 2)
    status, headers, body = split_response(raw)
    assert (status, body) == (200, b'{"status":"ok"}')
    assert headers["Connection"] == "close"  # one request per connection, and it says so
    assert_no_traceback(server_log)


@pytest.mark.parametrize("path", [REST, "/healthz", "/nope"])
async def test_a_get_then_half_close_is_answered_without_traceback(
    start_server, server_log, path
) -> None:
    srv = await start_server()
    status, _, body = split_response(await exchange(srv.port, get(path), half_close=True))
    assert status in (200, 404) and json.loads(body)
    assert_no_traceback(server_log)


@pytest.mark.parametrize(
    "extra, body",
    [
        ("Content-Length: 5\r\n", b"hello"),
        ("Content-Length: 300\r\n", b"x" * 300),
        ("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
)
async def test_a_get_with_a_body_is_a_400(start_server, server_log, extra, body) -> None:
    srv = await start_server()
    raw = await exchange(srv.port, get("/healthz", extra=extra) + body)
    status, headers, text = split_response(raw)
    assert status == 400
    error = json.loads(text)["error"]
    assert error["code"] == "invalid_message" and "body" in error["message"]
    assert int(headers["Content-Length"]) == len(text)
    assert_no_traceback(server_log)


async def test_a_websocket_still_opens_with_frames_right_behind_the_handshake(
    start_server,
) -> None:
    """What follows the request head is held until the 101, then read as frames."""
    srv = await start_server()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    ping = b'{"type":"ping"}'
    key = bytes(4)  # a zero mask leaves the payload as it is
    frame = bytes([0x81, 0x80 | len(ping)]) + key + ping
    with sock:
        handshake = (
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        )
        sock.sendall(get("/ws/metrics", extra=handshake) + frame)
        received = b""
        while b'{"type":"pong"}' not in received:
            chunk = await asyncio.to_thread(sock.recv, 65536)
            assert chunk, received
            received += chunk
    assert received.startswith(b"HTTP/1.1 101")

"""Bad input, generated: the server answers every message and request, and stays up.

Each test runs one real server (the CLI, so that its stderr can be checked for tracebacks) and
feeds it generated input on one connection; at the end other clients must still be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.sync.client import connect as sync_connect

SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Numbers as a hostile producer writes them: huge, tiny, negative, exponents beyond any range.
NUMBER_TEXT = st.sampled_from(
    [
        "1e999999999",
        "-1e999999999",
        "1e-999999999",
        "1" + "0" * 400,
        "-0",
        "0.001",
        "12.50",
        "1E+5",
        "9" * 30,
        "1.5e300",
        "4e-320",
    ]
)
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "x\udfff", "", "Z", "2025-11-04T10:30:00Z", "0001-01-01T00:00Z"])
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
FIELDS = ["type", "id", "status", "amount", "userId", "contentId", "ts"]

# Timestamps over the whole range datetime allows, at the widest and oddest offsets, and epoch
# numbers of every size: the server's window is 2000-01-01T00:00Z to 5 minutes ahead.
OFFSETS = [UTC] + [
    timezone(timedelta(minutes=m)) for m in (1, -1, 14 * 60, -12 * 60, 5 * 60 + 45, 1439, -1439)
]
TIMESTAMP = (
    st.datetimes(datetime.min, datetime.max, timezones=st.sampled_from(OFFSETS)).map(
        lambda d: d.isoformat()
    )
    | st.integers().map(lambda n: ("NUMBER", str(n)))
    | st.floats(allow_nan=False, allow_infinity=False).map(lambda f: ("NUMBER", repr(f)))
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+00:01",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999-23:59",
            "1969-12-31T23:59:59Z",
            "1999-12-31T23:59:59.999999Z",
            "2000-01-01T00:00:00Z",
            ("NUMBER", "-62135596800"),
            ("NUMBER", "253402300800"),
            ("NUMBER", "946684799.9999999999999999"),
            ("NUMBER", "946684800"),
        ]
    )
)
# Amounts at and around the largest a transaction may be, in every spelling.
AMOUNT = st.sampled_from(
    [
        "1.00",
        "0",
        3,
        "12.34",
        7.5,
        "1000000000.00",
        "1000000000.01",
        "999999999.99",
        1000000000,
        1000000001,
        ("NUMBER", "1000000000.00"),
        ("NUMBER", "1e9"),
        ("NUMBER", "1.0000000001e9"),
        ("NUMBER", "999999999.999"),
        "92233720368547758.07",
        "1_000",
        "\u0661\u0662",
        "+5",
        "5.",
        ".5",
    ]
)


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    ident = st.text(min_size=1, max_size=8)
    kind = draw(st.sampled_from(["user_activity", "content_view", "transaction"]))
    ts = {"ts": draw(TIMESTAMP)} if draw(st.booleans()) else {}
    if kind == "user_activity":
        return {"type": kind, "userId": draw(ident), **ts}
    if kind == "content_view":
        return {"type": kind, "contentId": draw(ident), "userId": draw(ident), **ts}
    return {
        "type": kind,
        "id": draw(st.sampled_from(["t1", "t2", "t3"]) | ident),
        "status": draw(st.sampled_from(["pending", "completed", "failed"])),
        "amount": draw(AMOUNT),
        **ts,
    }


@st.composite
def mutated_event(draw: st.DrawFn) -> Any:
    """A valid event with one to three edits: a field dropped, replaced, or added."""
    event = draw(valid_event())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "set", "number", "add"]))
        key = draw(st.sampled_from(FIELDS))
        if op == "drop":
            event.pop(key, None)
        elif op == "set":
            event[key] = draw(JSON)
        elif op == "number":
            event[key] = ("NUMBER", draw(NUMBER_TEXT))  # spliced in as a raw JSON number
        else:
            event[draw(st.text(max_size=6))] = draw(JSON)
    return event


def dump(value: Any) -> str:
    """JSON text, with ("NUMBER", text) pairs written as raw numbers json.dumps cannot make."""
    if isinstance(value, tuple) and value[:1] == ("NUMBER",):
        return value[1]
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


BATCH_ID = JSON | NUMBER_TEXT.map(lambda t: ("NUMBER", t))
BATCHES = (
    st.builds(
        lambda bid, events: {"type": "events", "id": bid, "events": events},
        BATCH_ID,
        st.lists(valid_event() | mutated_event() | JSON, min_size=0, max_size=5) | JSON,
    ).map(dump)
    | JSON.map(json.dumps)
    | st.text(max_size=100)
)


def assert_still_serving(url: str) -> None:
    with sync_connect(url("/ws/metrics"), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "history"
        assert json.loads(ws.recv(timeout=5))["type"] == "metrics"
    with sync_connect(url("/ws/ingest"), open_timeout=5) as ws:
        ws.send(
            dump(
                {"type": "events", "id": "ok", "events": [{"type": "user_activity", "userId": "u"}]}
            )
        )
        assert json.loads(ws.recv(timeout=5)) == {"type": "ack", "id": "ok", "accepted": 1}
    assert httpx.get(url("/healthz", "http"), timeout=5).status_code == 200


POISON = (
    '{"type":"events","id":1,"events":[{"type":"transaction","id":"x","status":"completed",'
    '"amount":"5.00","ts":"%s"}]}'
)


def test_any_ingest_message_gets_an_ack_or_an_error(run_cli) -> None:
    # New York: Go's zero time, 0001-01-01T00:00:00Z, has no calendar day there.
    srv = run_cli("--tz", "America/New_York").wait_ready()
    with sync_connect(srv.url("/ws/ingest"), open_timeout=5) as ws:

        @SETTINGS
        @given(BATCHES)
        # Found by hand: each was committed, then closed the producer with 1011, and every
        # later start of the server died on the revenue bucket it left.
        @example(POISON % "0001-01-01T00:00:00+00:01")
        @example(POISON % "0001-01-01T00:00:00Z")
        def check(raw: str) -> None:
            ws.send(raw)
            reply = json.loads(ws.recv(timeout=5))  # a close would raise here
            assert reply["type"] in ("ack", "error", "pong"), reply
            if reply["type"] == "error":
                assert isinstance(reply["error"]["code"], str) and reply["error"]["code"]
                assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
            elif reply["type"] == "ack":
                assert reply["accepted"] >= 1

        check()
    assert_still_serving(srv.url)
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr, srv.stderr
    assert " ERROR " not in srv.stderr, srv.stderr
    # Whatever was accepted, the server starts again on it, with nothing to skip.
    again = run_cli("--tz", "America/New_York").wait_ready()
    assert again.stop() == 0
    assert "Traceback" not in again.stderr and "WARNING" not in again.stderr, again.stderr


TOKEN_CHARS = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":")
HEADER_NAME = st.text(TOKEN_CHARS, min_size=1, max_size=20) | st.sampled_from(
    ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin",
     "Authorization", "Content-Length", "Transfer-Encoding", "Sec-WebSocket-Extensions"]
)  # fmt: skip
HEADER_VALUE = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
) | st.sampled_from(["websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==", "Bearer x", "5"])
TARGET = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
TARGET |= st.sampled_from(
    ["/", "/ws/metrics", "/ws/ingest", "/healthz", "/api/v1/analytics/realtime-metrics", "*",
     "//[x", "/ws/metrics?token=%ff%fe", "/%00", "http://h/ws/metrics", "/healthz?" + "a" * 300]
)  # fmt: skip
METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "get", "BREW"])
VERSION = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1", "FOO"])


@st.composite
def http_request(draw: st.DrawFn) -> bytes:
    line = f"{draw(METHOD)} {draw(TARGET)} {draw(VERSION)}"
    headers = draw(st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=6))
    if draw(st.booleans()):
        headers.append(("Host", "127.0.0.1"))
    text = line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return text.encode("latin-1")


async def exchange(port: int, request: bytes) -> bytes:
    """Send one raw request and return the response's status line (b"" if none came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def test_any_http_request_gets_a_status_below_500(run_cli) -> None:
    srv = run_cli().wait_ready()

    @SETTINGS
    @given(http_request())
    # Found by the generator: websockets answers 505 to a handshake in HTTP/1.0.
    @example(b"GET /ws/metrics HTTP/1.0\r\n\r\n")
    @example(b"GET /ws/ingest HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    # Also found by it: a repeated Authorization header made the router raise (a 500).
    @example(b"GET /ws/metrics HTTP/1.1\r\nAUTHORIZATION: \r\nAUTHORIZATION: \r\n\r\n")
    def check(request: bytes) -> None:
        status_line = asyncio.run(exchange(srv.port, request))
        if not status_line:  # websockets drops some malformed requests without a response
            return
        parts = status_line.split()
        assert parts[0] in (b"HTTP/1.1", b"HTTP/1.0"), status_line
        assert 100 <= int(parts[1]) < 500, (request, status_line)

    check()
    assert_still_serving(srv.url)
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr, srv.stderr


async def test_known_hostile_batches_are_errors_not_crashes(start_server) -> None:
    """Cases the generators above once found, pinned: each used to close the producer's
    connection with 1011 (or, for the batch id, to stall the server building a huge integer)."""
    srv = await start_server()
    user = '{"type":"user_activity","userId":"u"}'
    cases = [
        '{"type":"user_activity","userId":"u","ts":' + "1" * 400 + "}",
        '{"type":"transaction","id":"t1","status":"pending","amount":1e999999999}',
        '{"type":"transaction","id":"t2","status":"pending","amount":"1e-999999999"}',
        '{"type":"user_activity","userId":"\\ud800"}',
        '{"type":"content_view","contentId":"c","userId":"x\\udfff"}',
        '{"type":[],"userId":"u"}',
        '{"type":{"a":1},"userId":"u"}',
    ]
    async with connect(srv.ingest_url) as ws:
        for n, event in enumerate(cases):
            await ws.send(f'{{"type":"events","id":{n},"events":[{event}]}}')
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            code = "amount_too_large" if n == 1 else "invalid_event"
            assert reply["id"] == n and reply["error"]["code"] == code, (event, reply)
        # A batch id far beyond any float is echoed (as text) at once.
        await ws.send(f'{{"type":"events","id":1e999999999,"events":[{user}]}}')
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == {"type": "ack", "id": "1E+999999999", "accepted": 1}
    async with httpx.AsyncClient() as http:  # a target urlsplit() chokes on
        resp = await http.get(srv.http_url + "//[x")
        assert resp.status_code == 404


# --------------------------------------------------------------------------- WebSocket frames

CONTROL_PAYLOAD = st.binary(max_size=130)  # up to 125 bytes is legal for a control frame
CLOSE_PAYLOAD = (
    st.builds(
        lambda code, reason: code.to_bytes(2, "big") + reason,
        st.sampled_from([1000, 1001, 1002, 1005, 1006, 1008, 999, 1004, 2999, 3000, 4999, 5000]),
        st.binary(max_size=20) | st.text(max_size=20).map(str.encode),
    )
    | st.binary(max_size=3)
    | st.binary(min_size=126, max_size=140)
)
TEXT_PAYLOAD = st.sampled_from([b'{"type":"ping"}', b'{"type":"pong"}', b"[]", b"\xff\xfe"]) | (
    st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass"))
)


@st.composite
def ws_frame(draw: st.DrawFn) -> tuple[int, bytes, dict[str, Any]]:
    """One frame as a client (or a broken client) writes it, for ``raw_ws.frame``: control
    frames, oversized or fragmented; continuations with or without a start; reserved bits and
    opcodes; unmasked."""
    kind = draw(
        st.sampled_from(["ping", "pong", "close", "text", "binary", "continuation", "reserved"])
    )
    opcode, payload = {
        "ping": (0x9, CONTROL_PAYLOAD),
        "pong": (0xA, CONTROL_PAYLOAD),
        "close": (0x8, CLOSE_PAYLOAD),
        "text": (0x1, TEXT_PAYLOAD),
        "binary": (0x2, st.binary(max_size=40)),
        "continuation": (0x0, TEXT_PAYLOAD),
        "reserved": (draw(st.sampled_from([0x3, 0x7, 0xB, 0xF])), st.binary(max_size=10)),
    }[kind]
    data = kind in ("text", "binary", "continuation")
    fin = draw(st.booleans() if data else st.sampled_from([True, True, True, False]))
    rsv = draw(st.sampled_from([0, 0, 0, 0, 0x40, 0x20, 0x10]))
    mask = draw(st.sampled_from([True, True, True, True, False]))
    return opcode, draw(payload), {"fin": fin, "rsv": rsv, "mask": mask}


def test_any_frame_sequence_leaves_the_server_up_and_others_served(run_cli, raw_ws) -> None:
    srv = run_cli().wait_ready()
    with sync_connect(srv.url("/ws/metrics"), open_timeout=5) as bystander:
        assert json.loads(bystander.recv(timeout=5))["type"] == "history"
        assert json.loads(bystander.recv(timeout=5))["type"] == "metrics"

        @SETTINGS
        @given(st.lists(ws_frame(), min_size=1, max_size=25))
        # A ping flood (1008, then dropped) and a control frame split in two (1002).
        @example([(0x9, b"x" * 125, {})] * 80)
        @example([(0x9, b"half", {"fin": False}), (0x0, b"rest", {})])
        def check(frames: list[tuple[int, bytes, dict[str, Any]]]) -> None:
            data = b"".join(raw_ws.frame(op, payload, **how) for op, payload, how in frames)
            with raw_ws.connect(srv.port) as sock:
                sock.sendall(data + raw_ws.frame(0x8, (1000).to_bytes(2, "big")))
                # Whatever came before, the final close frame ends the connection: a close
                # handshake, a failure, or a drop. A server that kept it would time out recv().
                with contextlib.suppress(ConnectionResetError):
                    while sock.recv(65536):
                        pass

        check()
        bystander.send('{"type":"ping"}')
        assert json.loads(bystander.recv(timeout=5)) == {"type": "pong"}
    assert_still_serving(srv.url)
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr, srv.stderr
    assert " ERROR " not in srv.stderr, srv.stderr

"""The server's connection: websockets' ``ServerConnection`` with bounded output and clean HTTP.

websockets writes some frames without waiting for the peer to read them: the pong to every
ping (inside its sans-I/O protocol), and whatever ``broadcast`` sends. A client that sends
pings nonstop and never reads grew the server by 900 MB a minute, and since the keepalive's own
ping waits for the write buffer to drain, nothing ever closed it. This subclass

* counts control frames (ping, pong) against the connection's rate limiter, the one its
  messages use, and closes a flood with 1008;
* drops (aborts) a connection whose unsent output stays above the write limit for
  ``output_stall`` seconds, or exceeds ``max_output`` at any moment;

and on the HTTP side, where websockets reads one request per connection:

* holds back bytes that follow the request head until the response is written. websockets
  reads them as WebSocket frames while the handshake is still pending; a second pipelined
  request or a half-close then made it fail the connection, and writing the response raised
  ``AssertionError`` in ``send_eof`` (logged with a traceback, and nothing answered);
* answers 400 to a request that websockets' parser refuses (a body, a transfer coding, a bad
  header line), where websockets closes the connection without a word.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidMessage
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import SERVER
from websockets.protocol import OPEN, State

from metrics_protocol import wire as p

from . import logs
from .http import error_response
from .security import RateLimiter

log = logging.getLogger("metrics_server")

#: Unsent bytes that drop a connection at once, whatever the cause. Legitimate output stays
#: below the write limit plus one message (a snapshot is under 2 KB, a history under 40 KB).
MAX_OUTPUT = 1024 * 1024
#: Seconds a connection's output may stay above the write limit (the peer reads nothing).
OUTPUT_STALL = 10.0
#: Seconds a flooder gets to read its close frame before the connection is aborted. A client
#: that reads gets it in a round trip; one that never reads would keep us discarding its flood.
FLOOD_GRACE = 1.0

_HEAD_END = b"\r\n\r\n"


class GuardedConnection(ServerConnection):
    """Created by ``serve(create_connection=...)``; see the module docstring."""

    # Slots, not instance attributes: CPython keeps up to 30 attributes in an object's compact
    # shared-key values; websockets' own 27 and these 14 more gave every connection a dict of
    # its own, 1.5 KB more per idle subscriber (docs/PERFORMANCE.md, figure 2).
    __slots__ = (
        "_dropped",
        "_grace",
        "_guarded",
        "_head_tail",
        "_held",
        "_held_eof",
        "_http",
        "_refusal_sent",
        "_releasing",
        "_stalled",
        "limiter",
        "max_output",
        "max_strikes",
        "output_stall",
    )

    def __init__(
        self,
        *args: Any,
        max_output: int = MAX_OUTPUT,
        output_stall: float = OUTPUT_STALL,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_output = max_output
        self.output_stall = output_stall
        self._http = True  # until the handshake is decided
        #: Set by the handler: control frames count against it, like messages.
        self.limiter: RateLimiter | None = None
        self.max_strikes = 0
        self._stalled: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._dropped = False
        # HTTP: the last bytes before this chunk (to find a head split across reads), then the
        # bytes after the head, held until the response is written.
        self._head_tail: bytes | None = b""
        self._held: bytearray | None = None
        self._held_eof = False
        self._releasing = False
        self._refusal_sent = False
        self._guarded = False
        self._guard(True)

    def rate_limit(self, limiter: RateLimiter, strikes: int) -> None:
        """Count pings and pongs against ``limiter``; ``strikes`` refusals in a row close."""
        self.limiter, self.max_strikes = limiter, strikes

    # ---- output bounds

    def _guard(self, on: bool) -> None:
        """Route ``send_data`` through ``_guarded_send_data`` (on) or straight to websockets'
        own method (off). ``send_data`` runs once per subscriber per broadcast, and its checks
        are needed only until the handshake is decided and while the output is above the write
        limit: made on every write they cost 15% of fan-out CPU, and an override that only
        tests a flag before calling websockets' method still 5% (docs/PERFORMANCE.md, 1)."""
        if on and not self._guarded:
            self.send_data = self._guarded_send_data  # type: ignore[method-assign]
        elif self._guarded and not on:
            del self.send_data  # (reading __dict__ would give the instance a dict of its own)
        self._guarded = on

    def _guarded_send_data(self) -> None:
        self._refuse_bad_request()
        super().send_data()
        self._check_output()
        if self._http and (self.protocol.state is not State.CONNECTING or self.protocol.eof_sent):
            # Decided: no refusal is due any more (the request was read, or its refusal is
            # out), and no bytes are held from now on (data_received holds none after the head).
            self._http = False
            if self._held is not None and not self._releasing:
                self._releasing = True  # once the response is written: see data_received
                self.loop.call_soon(self._release)
        # Over max_output is over the write limit too, where the transport pauses writing
        # (pause_writing checks and guards again): until then the size is not worth reading.
        if not (self._http or self._stalled is not None or self._below_write_limit()):
            self._guard(False)

    def _below_write_limit(self) -> bool:
        """A max_output below the write limit is passed without a pause: check every write.
        (Read each time: the hub and the HTTP routes raise max_output for a large answer.)"""
        return self.max_output < self.write_limit_high

    def _check_output(self) -> None:
        if not self._dropped and self.transport.get_write_buffer_size() > self.max_output:
            self._drop(f"over {self.max_output} bytes unsent")

    def pause_writing(self) -> None:
        # Called by the transport inside the write that took its buffer over the write limit.
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(
                self.output_stall, self._drop, f"output stalled for {self.output_stall:g} s"
            )
        self._guard(True)  # writes from now on check the output, until resume_writing
        self._check_output()  # and so does this one

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._guard(self._http or self._below_write_limit())

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._stalled, self._grace):
            if timer is not None:
                timer.cancel()
        self._stalled = self._grace = None
        super().connection_lost(exc)

    def _drop(self, why: str) -> None:
        """Abort: the peer does not read, so a close frame would wait behind what it left."""
        if self._dropped:
            return
        self._dropped = True
        peer, unsent = _address(self.remote_address), self.transport.get_write_buffer_size()
        logs.event(
            logging.WARNING,
            "client_dropped",
            "dropped a client at %s: %s (%d bytes unsent)",
            peer,
            why,
            unsent,
            peer=peer,
            reason=why,
            unsent=unsent,
        )
        self.transport.abort()

    # ---- control frames

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if (
            self.limiter is not None
            and isinstance(event, Frame)
            and event.opcode in (Opcode.PING, Opcode.PONG)
            and not self.limiter.allow(self.loop.time())
            and self.limiter.strikes >= self.max_strikes
            and self.protocol.state is OPEN
        ):
            # The pongs already sent are bounded by one read (256 KiB) of pings.
            self.protocol.fail(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
            self.send_data()
            # Reading on would only discard the flood, at full speed; the peer has the close
            # frame and FLOOD_GRACE to read it.
            self.transport.pause_reading()
            self._grace = self.loop.call_later(FLOOD_GRACE, self._drop, "ping flood")

    # ---- HTTP

    def data_received(self, data: bytes) -> None:
        if self._held is not None:  # a TLS transport may deliver a record after pausing
            self._held += data
            return
        if self._head_tail is not None and not self.protocol.eof_sent:
            joined = self._head_tail + data
            end = joined.find(_HEAD_END)
            if end < 0:
                self._head_tail = joined[-(len(_HEAD_END) - 1) :]
            else:
                cut = end + len(_HEAD_END) - len(self._head_tail)
                self._head_tail = None
                # Nothing more is read (not even an end of stream) until the response is out.
                self._held = bytearray(data[cut:])
                self.transport.pause_reading()
                data = data[:cut]
        super().data_received(data)

    def eof_received(self) -> None:
        if self._held is not None:  # TLS may report the end of the stream while paused
            self._held_eof = True
            return
        super().eof_received()

    def _release(self) -> None:
        """After the response: what followed the head goes to the protocol (as frames after a
        101, or to be discarded after an HTTP response), and reading resumes."""
        held, self._held = self._held, None
        if self.transport.is_closing():
            return
        if held:
            super().data_received(bytes(held))
        if self._held_eof:
            super().eof_received()
        self.transport.resume_reading()

    def _refuse_bad_request(self) -> None:
        """websockets ends the connection when its parser refuses a request: send a 400 first.
        (A connection closed in the middle of its request gets nothing.)"""
        exc = self.protocol.handshake_exc
        if self._refusal_sent or self.request is not None or not isinstance(exc, InvalidMessage):
            return
        cause = exc.__cause__
        if cause is None or isinstance(cause, EOFError):
            return
        self._refusal_sent = True
        body_error = isinstance(cause, NotImplementedError) or str(cause) == (
            "unsupported request body"
        )
        message = (
            "a request with a body is not accepted here; events go over the /ws/ingest WebSocket"
            if body_error
            else "malformed HTTP request"
        )
        response = error_response(
            HTTPStatus.BAD_REQUEST, p.ERR_INVALID_MESSAGE, message, Server=SERVER
        )
        self.transport.write(response.serialize())
        logs.event(
            logging.DEBUG, "bad_request", "HTTP response sent (400 Bad Request): %s", message,
            peer=_address(self.remote_address), code=p.ERR_INVALID_MESSAGE,
        )  # fmt: skip


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)

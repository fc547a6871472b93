"""The connection's decisions as plain functions, testable without sockets.

``client.py`` moves bytes and waits; what a failure means (back off and retry, poll over REST
meanwhile, or stop and tell the user), how long a live feed may stay silent before the server
is asked whether it is still there, and whether a first message is the metrics protocol at all,
is decided here. No I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from metrics_tui.wire import (
    NOT_FOUND,
    NotMetricsFeed,
    describe_error,
    http_status,
    is_unauthorized,
    tls_failure,
)

#: The longest silence worth waiting out before asking: websockets' own keepalive period, so a
#: server with a long ``--interval`` (the tests use an hour) is still checked twice a minute.
PROBE_CAP = 20.0
#: Slack on top of the interval before a quiet feed is probed: the server's ticker is late by
#: a few milliseconds normally and by its store's commit time under load.
GRACE = 1.0
#: The least time a pong gets, so a fast ``--interval`` (0.2 s in tests) on a busy machine is
#: not taken for a dead server.
MIN_PONG_WAIT = 2.0
#: How long a freshly opened connection may stay silent before it is probed: a metrics server
#: sends its history at once (it is written before the server reads anything).
FIRST_MESSAGE_WAIT = 5.0


@dataclass(frozen=True)
class Keepalive:
    """Probe after ``quiet`` seconds without a message; give up ``pong_wait`` seconds later."""

    quiet: float
    pong_wait: float

    @property
    def bound(self) -> float:
        """The longest a dead server can look alive: silence plus the unanswered probe."""
        return self.quiet + self.pong_wait


def keepalive(interval: float, *, first: bool = False) -> Keepalive:
    """Keepalive timing for a feed that sends a sample every ``interval`` seconds.

    A live server sends at least one message per interval, so a silence of one interval (plus
    ``GRACE``) is the earliest sign of trouble, and one more interval for the pong tells a busy
    server (its event loop answers pings even while the store is slow) from a frozen one. At the
    default 5 s: probed after 6 s, declared gone after 11 s.
    """
    period = min(max(interval, 0.0), PROBE_CAP)
    pong_wait = max(MIN_PONG_WAIT, period)
    if first:
        return Keepalive(FIRST_MESSAGE_WAIT, pong_wait)
    return Keepalive(period + GRACE, pong_wait)


def first_message_problem(body: Any) -> str | None:
    """Why the first message of a connection shows it is not a metrics feed (None if it is).

    A metrics server opens with ``history`` (or, from an older one, ``metrics``). The producers'
    endpoint says nothing until spoken to; asked to ``subscribe``, it answers an ``unknown_type``
    error that expects ``events``.
    """
    kind = body.get("type") if isinstance(body, dict) else None
    if kind in ("history", "metrics"):
        return None
    if kind == "error":
        err = body.get("error")
        text = str(err.get("message", "")) if isinstance(err, dict) else ""
        if "expected events" in text:
            return "a producers' endpoint, not a metrics feed: check --url"
    return f"not a metrics feed (it sent {kind or 'something else'!s} first): check --url"


class Outcome(Enum):
    """What a failed or ended connection calls for."""

    #: Back off and try again; REST polling may stand in while the socket is refused.
    RETRY = "retry"
    #: Back off and try again, without REST: it sits behind the same certificate (TLS failure).
    RETRY_NO_REST = "retry_no_rest"
    #: HTTP 401: the token is the problem; retried rarely.
    UNAUTHORIZED = "unauthorized"
    #: The URL is not a metrics feed (404, the producers' endpoint): neither retrying soon nor
    #: REST beside it can help; retried rarely.
    WRONG_URL = "wrong_url"


@dataclass(frozen=True)
class Failure:
    outcome: Outcome
    detail: str


def after_failure(exc: BaseException) -> Failure:
    """Classify why a connection failed or ended."""
    if is_unauthorized(exc):
        return Failure(Outcome.UNAUTHORIZED, describe_error(exc))
    if http_status(exc) == 404:
        return Failure(Outcome.WRONG_URL, NOT_FOUND)
    if isinstance(exc, NotMetricsFeed):
        return Failure(Outcome.WRONG_URL, str(exc))
    if tls_failure(exc) is not None:
        return Failure(Outcome.RETRY_NO_REST, describe_error(exc))
    return Failure(Outcome.RETRY, describe_error(exc))

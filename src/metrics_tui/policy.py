"""The connection's decisions as plain functions, testable without sockets.

``client.py`` moves bytes and waits; what a failure means (back off and retry, poll over REST
meanwhile, or stop and tell the user), how long a live feed may stay silent before the server
is asked whether it is still there, and whether a first message is the metrics protocol at all,
is decided here. No I/O, no clock.
"""

from __future__ import annotations

import random
from dataclasses import FrozenInstanceError, dataclass, field, replace
from enum import Enum
from typing import Any

from metrics_tui.backoff import CAP, draw
from metrics_tui.messages import ConnState, Status
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


# --------------------------------------------------------------------------- the connect loop


class Phase(Enum):
    """Where the connect loop is. REST polling runs beside it and is kept in ``State``."""

    #: A handshake is under way (the shell is told ``Connect``).
    CONNECTING = "connecting"
    #: The WebSocket is open.
    LIVE = "live"
    #: ``r`` while Live: the link is being dropped, then connected again from scratch.
    RESTARTING = "restarting"
    #: Backing off before the next handshake.
    WAITING = "waiting"
    #: Retries used up: nothing happens until ``r``.
    OFFLINE = "offline"
    #: HTTP 401 over WebSocket: retried at the backoff cap, or on ``r``.
    UNAUTHORIZED = "unauthorized"
    #: Not a metrics feed (404, the producers' endpoint): retried at the cap, or on ``r``;
    #: never when the path alone shows it (``retry_at`` is then None).
    WRONG_URL = "wrong_url"


class _Signal:
    """An event or action that carries nothing: immutable, equal to any other of its class."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return True

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# What happened: the shell reports these; ``Policy.next`` answers each.


#: The client starts (its first step).
class Start(_Signal): ...


#: The handshake succeeded.
class Opened(_Signal): ...


@dataclass(frozen=True)
class Ended:
    """A handshake failed or an open connection ended, classified by ``after_failure``:
    refused 401, not found 404, the upgrade refused (another HTTP status), a TLS failure,
    no answer, or just closed."""

    failure: Failure


#: The wait the policy asked for is over.
class Tick(_Signal): ...


#: The user pressed ``r``.
class Reconnect(_Signal): ...


#: A REST poll answered with figures.
class PollOk(_Signal): ...


@dataclass(frozen=True)
class PollFailed:
    """A REST poll failed (``refused``: with a 401); the poll loop has ended."""

    refused: bool = False


Event = Start | Opened | Ended | Tick | Reconnect | PollOk | PollFailed


# What to do: ``Policy.next`` returns these for the shell to carry out, in order.


#: Open a WebSocket now (and report ``Opened``, then ``Ended``).
class Connect(_Signal): ...


@dataclass(frozen=True)
class Wait:
    """Wait ``seconds`` (None: until ``r``), then report ``Tick``."""

    seconds: float | None


#: Close the open WebSocket (it then reports ``Ended``, which is not a failure here).
class Drop(_Signal): ...


#: Poll REST every interval (reporting ``PollOk`` or, once, ``PollFailed``).
class StartPolling(_Signal): ...


#: Stop polling REST.
class StopPolling(_Signal): ...


Action = Connect | Wait | Drop | StartPolling | StopPolling


@dataclass(frozen=True)
class State:
    """Everything the policy remembers; ``status`` is what the status line shows."""

    phase: Phase = Phase.CONNECTING
    #: Retries drawn since the last open connection (the backoff's exponent).
    attempt: int = 0
    #: When the current wait ends, on the caller's clock (None: no wait, or until ``r``).
    retry_at: float | None = None
    #: Why the last connection failed or ended.
    detail: str = ""
    #: REST polling is running.
    polling: bool = False
    #: The last REST poll answered.
    polling_ok: bool = False
    #: REST answered 401 (until a WebSocket opens).
    rest_refused: bool = False
    #: ``r`` during a handshake: should it fail, retry at once rather than back off.
    hurry: bool = False
    has_token: bool = False
    #: Which of the URLs (``--url`` given more than once) the loop is on.
    index: int = 0
    #: URLs that failed one after the other since the last open link or the last wait: once
    #: every URL has failed (a full round), the backoff applies.
    tried: int = 0

    @property
    def status(self) -> Status:
        match self.phase:
            case Phase.LIVE:
                return Status(ConnState.LIVE)
            case Phase.CONNECTING | Phase.RESTARTING:
                status = Status(ConnState.CONNECTING, attempt=self.attempt)
            case Phase.WAITING:
                status = Status(
                    ConnState.RECONNECTING,
                    attempt=self.attempt,
                    retry_at=self.retry_at,
                    detail=self.detail,
                )
            case Phase.OFFLINE:
                return Status(ConnState.OFFLINE, detail=self.detail)
            case Phase.UNAUTHORIZED:
                why = "token refused" if self.has_token else "no token sent"
                return Status(ConnState.UNAUTHORIZED, retry_at=self.retry_at, detail=why)
            case Phase.WRONG_URL:
                return Status(ConnState.WRONG_URL, retry_at=self.retry_at, detail=self.detail)
        if self.polling_ok:  # retrying the socket, with figures from REST meanwhile
            return replace(status, state=ConnState.POLLING)
        if self.rest_refused:
            # The socket is refused by something else (a proxy) but REST said 401: the token
            # is what the user has to fix, so say that rather than "Reconnecting".
            why = "token refused over REST" if self.has_token else "no token sent"
            return replace(status, state=ConnState.UNAUTHORIZED, detail=why)
        return status


Step = tuple[State, tuple[Action, ...]]


@dataclass(frozen=True)
class Policy:
    """The connect loop as a state machine: ``next(state, event, now) -> (state, actions)``.

    No I/O and no clock (``now`` is passed in, and only stamps ``retry_at``); the backoff's
    random draws come from the injected ``rng``, so a seeded one makes every step repeatable.
    """

    #: Why the URL cannot be a metrics feed, found without connecting (``url_problem``).
    url_problem: str | None = None
    has_token: bool = False
    #: Retries after a failure before going Offline; None: forever.
    max_retries: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False)
    #: How long a refused token or a wrong URL waits before it is tried again.
    slow_retry: float = CAP
    #: How many URLs to fail over between (round robin, in the order given).
    servers: int = 1

    def initial(self) -> State:
        return State(has_token=self.has_token)

    def next(self, state: State, event: Event, now: float) -> Step:
        """The state after ``event`` and what to do about it. An event that no longer
        applies (a poll result after polling stopped, a tick after ``r``) changes nothing."""
        match event:
            case Start():
                return self._connect(state, attempt=0)
            case Opened() if state.phase is Phase.CONNECTING:
                live = replace(
                    state,
                    phase=Phase.LIVE,
                    attempt=0,
                    retry_at=None,
                    detail="",
                    polling=False,
                    polling_ok=False,
                    rest_refused=False,
                    hurry=False,
                    tried=0,
                )
                return live, (StopPolling(),) if state.polling else ()
            case Ended(failure):
                return self._ended(state, failure, now)
            case Tick() if state.retry_at is not None and state.phase in _WAITS:
                return self._connect(state, attempt=state.attempt)
            case Reconnect():
                return self._reconnect(state)
            case PollOk() if state.polling:
                return replace(state, polling_ok=True, rest_refused=False), ()
            case PollFailed(refused) if state.polling:
                return replace(state, polling=False, polling_ok=False, rest_refused=refused), ()
        return state, ()

    def _connect(self, state: State, *, attempt: int) -> Step:
        if self.url_problem is not None:  # no server can make this URL right: wait for ``r``
            return self._stop(
                state,
                replace(state, phase=Phase.WRONG_URL, retry_at=None, detail=self.url_problem),
                Wait(None),
            )
        return (
            replace(state, phase=Phase.CONNECTING, attempt=attempt, retry_at=None, hurry=False),
            (Connect(),),
        )

    def _reconnect(self, state: State) -> Step:
        """``r``: skip a wait and start counting again; leave Offline, Unauthorized or Wrong
        URL at once; drop a live link and connect from scratch. Always to the URL it is on."""
        state = replace(state, tried=0)
        match state.phase:
            case Phase.LIVE:
                return replace(state, phase=Phase.RESTARTING, attempt=0), (Drop(),)
            case Phase.CONNECTING:  # the handshake is under way already: don't back off after
                return replace(state, attempt=0, hurry=True), ()
            case Phase.RESTARTING:
                return state, ()
        return self._connect(state, attempt=0)

    def _ended(self, state: State, failure: Failure, now: float) -> Step:
        if state.phase is Phase.RESTARTING:  # our own Drop: not a failure
            return self._connect(state, attempt=0)
        if state.phase not in (Phase.CONNECTING, Phase.LIVE):
            return state, ()
        detail = failure.detail
        if failure.outcome in (Outcome.WRONG_URL, Outcome.UNAUTHORIZED):
            # REST beside a wrong path answers for another URL (it is derived from the host),
            # and sits behind the same token: polling cannot help either.
            phase = Phase.WRONG_URL if failure.outcome is Outcome.WRONG_URL else Phase.UNAUTHORIZED
            after = replace(
                state, phase=phase, retry_at=now + self.slow_retry, detail=detail, hurry=False
            )
            return self._stop(state, after, Wait(self.slow_retry))
        state = replace(state, detail=detail)
        if state.hurry:  # ``r`` came during the handshake: no backoff, no polling
            return self._connect(state, attempt=state.attempt)
        # Fail over: the next URL at once, until every URL has failed in a row; then back off
        # once (the wait below) and start the next round with the URL after the last one.
        state = replace(state, index=(state.index + 1) % self.servers, tried=state.tried + 1)
        if state.tried < self.servers:
            return self._connect(state, attempt=state.attempt)
        state = replace(state, tried=0)
        if self.max_retries is not None and state.attempt >= self.max_retries:
            return self._stop(state, replace(state, phase=Phase.OFFLINE, retry_at=None), Wait(None))
        delay = draw(state.attempt, self.rng)
        waiting = replace(
            state, phase=Phase.WAITING, attempt=state.attempt + 1, retry_at=now + delay
        )
        # REST sits behind the same certificate: polling helps only when the socket itself
        # was refused (a proxy that blocks upgrades), not once it had opened.
        if (
            state.phase is Phase.CONNECTING
            and failure.outcome is Outcome.RETRY
            and not state.polling
        ):
            return replace(waiting, polling=True), (StartPolling(), Wait(delay))
        return waiting, (Wait(delay),)

    @staticmethod
    def _stop(before: State, after: State, wait: Wait) -> Step:
        """``after`` with REST polling stopped, then ``wait``."""
        stop: tuple[Action, ...] = (StopPolling(),) if before.polling else ()
        return replace(after, polling=False, polling_ok=False), (*stop, wait)


#: The phases that end with a ``Tick`` (WRONG_URL and UNAUTHORIZED only when ``retry_at`` set).
_WAITS = (Phase.WAITING, Phase.UNAUTHORIZED, Phase.WRONG_URL)


# --------------------------------------------------------------------------- seq and epoch

#: A snapshot's place in the server's sequence: ``(epoch, seq)`` (docs/protocol.md).
Position = tuple[str, int]


class Verdict(Enum):
    """What to do with a ``metrics`` message, given its position."""

    #: The next snapshot (or one from a server without seq): show it.
    APPLY = "apply"
    #: A snapshot already held or older than the one shown: showing it would go back in time.
    DROP = "drop"
    #: Show it (its figures are whole and exact), then ask for the history again: snapshots
    #: were missed (a gap) or the sequence restarted (a new epoch), so the charts lack points.
    RESYNC = "resync"


@dataclass(frozen=True)
class SeqState:
    """Where the monitor is in the server's sequence, across connections and URLs."""

    #: The position of the last snapshot shown (None: none yet, or a server without seq).
    held: Position | None = None
    #: A resync was asked for and its history has not come yet: a second gap meanwhile is
    #: part of the same hole, not a reason to ask again.
    asked: bool = False


def on_metrics(seq: SeqState, pos: Position | None) -> tuple[SeqState, Verdict]:
    """A ``metrics`` message at ``pos`` (None from an older server: shown, as before)."""
    held = seq.held
    if pos is None:
        return seq, Verdict.APPLY
    if held is None:
        return replace(seq, held=pos), Verdict.APPLY
    if pos[0] == held[0]:
        if pos[1] <= held[1]:
            return seq, Verdict.DROP
        if pos[1] == held[1] + 1 or seq.asked:
            return replace(seq, held=pos), Verdict.APPLY
    elif seq.asked:  # the answer to our resync is on its way (or this is it): no second ask
        return replace(seq, held=pos), Verdict.APPLY
    return SeqState(held=pos, asked=True), Verdict.RESYNC


def on_history(seq: SeqState, pos: Position | None) -> SeqState:
    """A ``history`` message at ``pos``: the snapshot that follows it is ``pos`` itself, so it
    is expected next. In the same epoch the sequence never goes back: a history that a lagging
    server sends (after a failover) leaves the newer snapshot shown in place."""
    if pos is None:
        return SeqState(held=seq.held)
    epoch, n = pos
    if seq.held is not None and seq.held[0] == epoch and seq.held[1] >= n - 1:
        return SeqState(held=seq.held)
    return SeqState(held=(epoch, n - 1))

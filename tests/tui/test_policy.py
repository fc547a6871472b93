"""The connect loop's policy, step by step, without sockets or clocks.

Every event the client can report meets every phase it can arrive in; failures are built from
the exceptions the libraries raise, through ``after_failure``, so the classification and the
transitions are tested together.
"""

from __future__ import annotations

import random
import ssl

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from metrics_tui.backoff import CAP
from metrics_tui.messages import ConnState, Status
from metrics_tui.policy import (
    Connect,
    Drop,
    Ended,
    Event,
    Opened,
    Phase,
    Policy,
    PollFailed,
    PollOk,
    Reconnect,
    SeqState,
    Start,
    StartPolling,
    State,
    StopPolling,
    Tick,
    Verdict,
    Wait,
    after_failure,
    on_history,
    on_metrics,
)
from metrics_tui.widgets.status import state_text
from metrics_tui.wire import INGEST_URL, NoAnswer, NotMetricsFeed, is_unauthorized

from .test_backoff import MaxRandom

NOW = 1000.0


def refused(code: int) -> Ended:
    """The handshake answered with an HTTP status instead of switching protocols."""
    return Ended(after_failure(InvalidStatus(Response(code, "x", Headers()))))


UNAUTHORIZED = refused(401)
NOT_FOUND = refused(404)
UPGRADE_REFUSED = refused(403)  # a proxy that blocks WebSocket upgrades
DOWN = Ended(after_failure(ConnectionRefusedError()))
NO_ANSWER = Ended(after_failure(NoAnswer("no answer for 11s")))
CLOSED = Ended(after_failure(ConnectionClosedError(Close(1011, "boom"), None)))


def _cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"  # set by the ssl module when it raises
    return exc


TLS = Ended(after_failure(_cert_error()))
NOT_A_FEED = Ended(after_failure(NotMetricsFeed("not a metrics feed: check --url")))


def rest_401() -> PollFailed:
    request = httpx.Request("GET", "http://127.0.0.1:1/api/metrics")
    exc = httpx.HTTPStatusError("401", request=request, response=httpx.Response(401))
    return PollFailed(refused=is_unauthorized(exc))


class Run:
    """Feeds events to a policy, keeping the state and the last actions; ``now`` moves only
    when the test moves it."""

    def __init__(self, policy: Policy | None = None, *, start: bool = True) -> None:
        self.policy = policy or Policy(rng=MaxRandom())
        self.state = self.policy.initial()
        self.actions: tuple[object, ...] = ()
        self.now = NOW
        if start:
            self(Start())

    def __call__(self, *events: Event) -> tuple[object, ...]:
        for event in events:
            self.state, self.actions = self.policy.next(self.state, event, self.now)
        return self.actions

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def text(self) -> str:
        return state_text(self.status, self.now)


# --------------------------------------------------------------------------- connecting


def test_start_connects() -> None:
    run = Run(start=False)
    assert run(Start()) == (Connect(),)
    assert run.state.phase is Phase.CONNECTING
    assert run.status == Status(ConnState.CONNECTING)
    assert run.text == "Connecting"


def test_opened_is_live() -> None:
    run = Run()
    assert run(Opened()) == ()
    assert run.state.phase is Phase.LIVE
    assert run.text == "Live ●"


def test_the_producers_path_waits_for_r_without_connecting() -> None:
    run = Run(Policy(url_problem=INGEST_URL), start=False)
    assert run(Start()) == (Wait(None),)
    assert run.status == Status(ConnState.WRONG_URL, detail=INGEST_URL)
    assert run(Tick()) == ()  # nothing to wait out
    assert run(Reconnect()) == (Wait(None),)  # r looks again: still no server can help
    assert run.state.phase is Phase.WRONG_URL


# --------------------------------------------------------------------------- failures


def test_a_refused_upgrade_backs_off_and_polls_rest() -> None:
    run = Run()
    assert run(UPGRADE_REFUSED) == (StartPolling(), Wait(1.0))
    assert run.state.polling
    assert run.status == Status(ConnState.RECONNECTING, 1, NOW + 1.0, "HTTP 403")
    assert run.text == "Reconnecting in 1s (attempt 1)"
    run(Tick())
    assert run.status == Status(ConnState.CONNECTING, attempt=1)
    assert run.text == "Connecting (attempt 2)"
    assert run(UPGRADE_REFUSED) == (Wait(2.0),)  # already polling: not started twice


def test_the_backoff_doubles_to_its_cap_and_stamps_retry_at() -> None:
    run = Run()
    waits = []
    for step in range(7):
        run.now = NOW + step * 100
        (*_, wait) = run(DOWN)
        assert isinstance(wait, Wait) and wait.seconds is not None
        waits.append(wait.seconds)
        assert run.state.retry_at == run.now + wait.seconds
        assert run.state.attempt == step + 1
        run(Tick())
    assert waits == [1, 2, 4, 8, 16, 30, 30]


def test_the_draws_come_from_the_injected_rng() -> None:
    def delays(seed: int) -> list[float]:
        run = Run(Policy(rng=random.Random(seed)))
        out = []
        for _ in range(6):
            (*_, wait) = run(DOWN)
            out.append(wait.seconds)  # type: ignore[attr-defined]
            run(Tick())
        return out

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)
    assert all(0 <= d <= c for d, c in zip(delays(7), [1, 2, 4, 8, 16, 30], strict=True))


@pytest.mark.parametrize(
    ("ended", "detail"),
    [
        (NO_ANSWER, "no answer for 11s"),
        (CLOSED, "connection closed (1011)"),
    ],
)
def test_a_live_link_that_ends_backs_off_without_rest(ended: Ended, detail: str) -> None:
    """REST helps when the upgrade is refused, not once the socket had opened."""
    run = Run()
    run(Opened())
    assert run(ended) == (Wait(1.0),)
    assert run.status == Status(ConnState.RECONNECTING, 1, NOW + 1.0, detail)
    assert not run.state.polling


def test_a_tls_failure_backs_off_without_rest() -> None:
    """REST sits behind the same certificate."""
    run = Run()
    assert run(TLS) == (Wait(1.0),)
    assert run.status.state is ConnState.RECONNECTING
    assert run.status.detail.startswith("certificate verify failed")


@pytest.mark.parametrize("has_token", [False, True])
def test_401_over_websocket_says_unauthorized_and_retries_only_at_the_cap(
    has_token: bool,
) -> None:
    run = Run(Policy(has_token=has_token, rng=MaxRandom()))
    run(UPGRADE_REFUSED, Tick())  # polling meanwhile
    assert run.state.polling
    assert run(UNAUTHORIZED) == (StopPolling(), Wait(CAP))
    why = "token refused" if has_token else "no token sent"
    assert run.status == Status(ConnState.UNAUTHORIZED, retry_at=NOW + CAP, detail=why)
    assert run.text == "Unauthorized · check --token"
    assert not run.state.polling
    assert run(Tick()) == (Connect(),)
    assert run.state.attempt == 1  # the cap's retry does not reset the count
    assert run(UNAUTHORIZED) == (Wait(CAP),)  # nothing to stop this time


def test_404_and_a_producers_endpoint_say_wrong_url_without_rest() -> None:
    run = Run()
    assert run(NOT_FOUND) == (Wait(CAP),)
    assert run.status == Status(
        ConnState.WRONG_URL, retry_at=NOW + CAP, detail="not found (404): check --url"
    )
    assert not run.state.polling
    run(Tick(), Opened())
    assert run(NOT_A_FEED) == (Wait(CAP),)  # known only once it spoke
    assert run.status.state is ConnState.WRONG_URL
    assert run.status.detail == "not a metrics feed: check --url"


# --------------------------------------------------------------------------- REST polling


def test_rest_figures_show_polling_with_the_retry_schedule() -> None:
    run = Run()
    run(UPGRADE_REFUSED)
    assert run(PollOk()) == ()
    assert run.status == Status(ConnState.POLLING, 1, NOW + 1.0, "HTTP 403")
    assert run.text == "Polling (REST)"
    run(Tick())  # the socket is tried again behind the polling
    assert run.status == Status(ConnState.POLLING, attempt=1)


def test_the_socket_opening_stops_polling() -> None:
    run = Run()
    run(UPGRADE_REFUSED, PollOk(), Tick())
    assert run(Opened()) == (StopPolling(),)
    assert run.status == Status(ConnState.LIVE)
    assert run.state == State(phase=Phase.LIVE)
    assert run(PollOk()) == () and run.status.state is ConnState.LIVE  # a late answer


@pytest.mark.parametrize("has_token", [False, True])
def test_401_over_rest_says_unauthorized_while_the_socket_is_retried(has_token: bool) -> None:
    run = Run(Policy(has_token=has_token, rng=MaxRandom()))
    run(UPGRADE_REFUSED, PollOk())
    assert run(rest_401()) == ()  # the poll loop has ended by itself
    why = "token refused over REST" if has_token else "no token sent"
    assert run.status == Status(ConnState.UNAUTHORIZED, 1, NOW + 1.0, why)
    assert not run.state.polling
    run(Tick())
    assert run.status == Status(ConnState.UNAUTHORIZED, attempt=1, detail=why)
    assert run(UPGRADE_REFUSED) == (StartPolling(), Wait(2.0))  # REST is asked again
    run(Tick(), Opened())  # the proxy lets the socket through: the token was fine there
    assert run.status == Status(ConnState.LIVE)
    assert not run.state.rest_refused


def test_a_failed_poll_goes_back_to_reconnecting() -> None:
    run = Run()
    run(UPGRADE_REFUSED, PollOk())
    assert run(PollFailed()) == ()
    assert run.status == Status(ConnState.RECONNECTING, 1, NOW + 1.0, "HTTP 403")


# --------------------------------------------------------------------------- retries exhausted


def test_retries_exhausted_goes_offline_until_r() -> None:
    run = Run(Policy(max_retries=2, rng=MaxRandom()))
    assert run(UPGRADE_REFUSED) == (StartPolling(), Wait(1.0))
    run(Tick())
    assert run(UPGRADE_REFUSED) == (Wait(2.0),)
    run(Tick())
    assert run(UPGRADE_REFUSED) == (StopPolling(), Wait(None))
    assert run.status == Status(ConnState.OFFLINE, detail="HTTP 403")
    assert run.text == "Offline, press r"
    assert not run.state.polling
    assert run(Tick()) == () and run.state.phase is Phase.OFFLINE
    assert run(PollOk()) == () and run.status.state is ConnState.OFFLINE  # a late answer
    assert run(Reconnect()) == (Connect(),)
    assert run.state.attempt == 0
    assert run(DOWN) == (StartPolling(), Wait(1.0))  # a full set of retries again


def test_no_retries_at_all() -> None:
    run = Run(Policy(max_retries=0))
    assert run(DOWN) == (Wait(None),)
    assert run.status == Status(ConnState.OFFLINE, detail="connection refused")


# --------------------------------------------------------------------------- r


def test_r_during_a_wait_skips_it_and_resets_the_attempts() -> None:
    run = Run()
    for _ in range(4):
        run(DOWN, Tick())
    run(DOWN)
    assert run.status.attempt == 5 and run.actions[-1] == Wait(16.0)
    assert run(Reconnect()) == (Connect(),)
    assert run.status == Status(ConnState.CONNECTING)
    assert run(Tick()) == ()  # the skipped wait's end changes nothing
    assert run(DOWN) == (Wait(1.0),)  # counted from the start again
    assert run.text == "Reconnecting in 1s (attempt 1)"


def test_r_while_polling_keeps_polling_and_connects() -> None:
    run = Run()
    run(UPGRADE_REFUSED, PollOk())
    assert run(Reconnect()) == (Connect(),)
    assert run.status == Status(ConnState.POLLING)
    assert run.state.polling


def test_r_while_live_reconnects_from_scratch() -> None:
    run = Run()
    run(DOWN, Tick(), DOWN, Tick(), Opened())
    assert run(Reconnect()) == (Drop(),)
    assert run.status == Status(ConnState.CONNECTING)
    assert run(Reconnect()) == ()  # pressed twice: one drop is enough
    assert run(CLOSED) == (Connect(),)  # our own close: no backoff, no REST
    assert run.state.phase is Phase.CONNECTING and run.state.attempt == 0
    assert run(Opened()) == () and run.status == Status(ConnState.LIVE)


def test_r_during_a_handshake_retries_at_once_if_it_fails() -> None:
    run = Run()
    run(DOWN, Tick(), DOWN, Tick())
    assert run.state.attempt == 2
    assert run(Reconnect()) == ()  # it is connecting already
    assert run.status == Status(ConnState.CONNECTING)
    assert run(DOWN) == (Connect(),)  # no wait
    assert run(DOWN) == (Wait(1.0),)  # once only; REST is polled already


def test_r_during_a_handshake_does_not_loop_on_401() -> None:
    run = Run()
    run(Reconnect())
    assert run(UNAUTHORIZED) == (Wait(CAP),)


@pytest.mark.parametrize("refusal", [UNAUTHORIZED, NOT_FOUND, NOT_A_FEED])
def test_r_retries_a_refusal_at_once(refusal: Ended) -> None:
    run = Run()
    run(DOWN, Tick(), refusal)
    assert run(Reconnect()) == (Connect(),)
    assert run.state.attempt == 0
    assert run.status == Status(ConnState.CONNECTING)


# --------------------------------------------------------------------------- any order


EVENTS = [
    Start(),
    Opened(),
    Tick(),
    Reconnect(),
    PollOk(),
    PollFailed(),
    rest_401(),
    UNAUTHORIZED,
    NOT_FOUND,
    UPGRADE_REFUSED,
    DOWN,
    NO_ANSWER,
    TLS,
]


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.sampled_from(EVENTS), max_size=60),
    max_retries=st.none() | st.integers(0, 4),
    seed=st.integers(0, 2**32),
)
def test_any_sequence_keeps_the_invariants(
    events: list[Event], max_retries: int | None, seed: int
) -> None:
    """Whatever arrives in whatever order: polling is started and stopped exactly when its
    flag changes and only while the socket is retried; a failure never reconnects without a
    wait unless r asked for it; the attempt count stays within --max-retries; and the status
    always has words."""
    run = Run(Policy(max_retries=max_retries, rng=random.Random(seed)))
    for event in events:
        before = run.state
        actions = run(event)
        after = run.state
        started, stopped = StartPolling() in actions, StopPolling() in actions
        if after.polling != before.polling:
            assert started == after.polling
            assert stopped == (not after.polling and not isinstance(event, PollFailed))
        else:
            assert not started and not stopped
        if after.polling:
            assert after.phase in (Phase.CONNECTING, Phase.WAITING)
        if after.phase is Phase.LIVE:
            assert after.attempt == 0 and not after.polling and not after.rest_refused
        if Connect() in actions:
            assert after.phase is Phase.CONNECTING
            if isinstance(event, Ended):
                assert before.hurry or before.phase is Phase.RESTARTING  # r asked for it
        for action in actions:
            if isinstance(action, Wait) and action.seconds is not None:
                assert 0 <= action.seconds <= CAP
                assert after.retry_at == NOW + action.seconds
        if max_retries is not None:
            assert after.attempt <= max_retries
        assert state_text(after.status, NOW)


# --------------------------------------------------------------------------- several URLs


def test_a_drop_fails_over_to_the_next_url_at_once() -> None:
    run = Run(Policy(servers=3, rng=MaxRandom()))
    run(Opened())
    assert run(CLOSED) == (Connect(),)  # no wait: the next server may be up
    assert run.state.index == 1 and run.status == Status(ConnState.CONNECTING)
    run(Opened())
    assert run.state.index == 1 and run.state.tried == 0


def test_the_backoff_comes_once_every_url_has_failed_in_a_row() -> None:
    run = Run(Policy(servers=3, rng=MaxRandom()))
    assert run(DOWN) == (Connect(),) and run.state.index == 1
    assert run(DOWN) == (Connect(),) and run.state.index == 2
    assert run(DOWN) == (StartPolling(), Wait(1.0))  # a full round: back off once
    assert run.state.index == 0 and run.state.attempt == 1
    run(Tick())
    assert run(DOWN, DOWN) == (Connect(),)
    assert run(DOWN) == (Wait(2.0),)  # the next round backs off longer
    assert run.state.index == 0


def test_r_reconnects_to_the_url_it_is_on() -> None:
    run = Run(Policy(servers=2, rng=MaxRandom()))
    run(DOWN, Opened())
    assert run.state.index == 1
    assert run(Reconnect()) == (Drop(),)
    assert run(CLOSED) == (Connect(),)
    assert run.state.index == 1


def test_one_url_backs_off_as_before() -> None:
    run = Run()
    run(Opened())
    assert run(CLOSED) == (Wait(1.0),)
    assert run.state.index == 0


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.sampled_from(EVENTS), max_size=60), servers=st.integers(1, 4))
def test_failover_never_spins(events: list[Event], servers: int) -> None:
    """However handshakes fail, at most ``servers - 1`` connects follow failures without a
    wait in between (unless r asked), and the index stays on a URL."""
    run = Run(Policy(servers=servers, rng=random.Random(1)))
    in_a_row = 0
    for event in events:
        before = run.state
        actions = run(event)
        if any(isinstance(a, Wait) for a in actions) or isinstance(event, Reconnect | Opened):
            in_a_row = 0
        elif (
            Connect() in actions
            and isinstance(event, Ended)
            and not before.hurry
            and before.phase is not Phase.RESTARTING
        ):
            in_a_row += 1
        assert in_a_row <= servers - 1
        assert 0 <= run.state.index < servers


# --------------------------------------------------------------------------- seq and epoch


def feed(*positions: tuple[str, int] | None) -> list[Verdict]:
    seq, out = SeqState(), []
    for pos in positions:
        seq, verdict = on_metrics(seq, pos)
        out.append(verdict)
    return out


def test_seq_in_order_applies_and_a_gap_resyncs_once() -> None:
    A, R, D = Verdict.APPLY, Verdict.RESYNC, Verdict.DROP
    assert feed(("e", 1), ("e", 2), ("e", 5), ("e", 7)) == [A, A, R, A]  # asked already
    assert feed(("e", 3), ("e", 2), ("e", 3), ("e", 4)) == [A, D, D, A]  # never back in time
    assert feed(("e", 3), ("f", 1), ("f", 2)) == [A, R, A]  # a new epoch: resync
    assert feed(None, None) == [A, A]  # an older server: as before


def test_a_history_sets_what_comes_next_and_answers_the_resync() -> None:
    seq = on_history(SeqState(), ("e", 10))
    seq, verdict = on_metrics(seq, ("e", 10))  # the greeting's metrics follows the history
    assert verdict is Verdict.APPLY
    seq, verdict = on_metrics(seq, ("e", 12))
    assert verdict is Verdict.RESYNC and seq.asked
    seq = on_history(seq, ("e", 12))  # the answer, with the greeting's metrics repeated
    assert not seq.asked
    assert on_metrics(seq, ("e", 12))[1] is Verdict.DROP  # held already
    assert on_metrics(seq, ("e", 13))[1] is Verdict.APPLY
    # A lagging server's history (after a failover) does not move the sequence back.
    lag = on_history(SeqState(held=("e", 20)), ("e", 15))
    assert lag.held == ("e", 20) and on_metrics(lag, ("e", 15))[1] is Verdict.DROP
    assert on_history(lag, ("f", 3)).held == ("f", 2)  # a new epoch starts over

"""Textual messages the connection client posts to the app.

The client owns the sockets; widgets only ever see these messages, so the display can be
driven (and snapshot-tested) without a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

from textual.message import Message

from metrics_protocol.wire import Metrics, Range
from metrics_tui.ranges import RangeSpec

#: Where a snapshot came from and what it means for the charts: ``interval`` and ``poll``
#: snapshots are chart points; ``change`` snapshots only refresh the cards.
SnapshotKind = Literal["interval", "change", "poll"]


class ConnState(Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    POLLING = "polling"
    OFFLINE = "offline"
    #: The server refused the token (401). Retried only at the backoff cap, or on ``r``.
    UNAUTHORIZED = "unauthorized"
    #: The URL is not a metrics feed (404, the producers' endpoint); ``detail`` says which.
    #: Retried only at the backoff cap (or not at all when the path alone shows it), or on ``r``.
    WRONG_URL = "wrong_url"


@dataclass(frozen=True)
class Status:
    """What the client is doing now. ``retry_at`` is on the client's monotonic clock."""

    state: ConnState
    attempt: int = 0
    retry_at: float | None = None
    detail: str = ""


class MetricsUpdated(Message):
    """A new whole snapshot."""

    def __init__(self, metrics: Metrics, kind: SnapshotKind, interval: float | None = None) -> None:
        super().__init__()
        self.metrics = metrics
        self.kind = kind
        #: The server's interval as the server stated it (history, or the REST answer); None
        #: until it has, so nothing shows a guess.
        self.interval = interval

    def can_replace(self, message: Message) -> bool:
        # Only card refreshes may be collapsed: each carries the full state, so a queued one is
        # worthless once a newer one is behind it. Interval/poll snapshots are chart points and
        # are never dropped.
        return (
            isinstance(message, MetricsUpdated)
            and self.kind == "change"
            and message.kind == "change"
        )


class HistoryReceived(Message):
    """The server's recent interval snapshots, oldest first, sent on connect."""

    def __init__(self, snapshots: list[Metrics], interval: float | None) -> None:
        super().__init__()
        self.snapshots = snapshots
        #: The interval the history names; None from a server that does not name it.
        self.interval = interval


class ConnectionChanged(Message):
    """The connection state changed (connecting, live, reconnecting, polling, offline, ...)."""

    def __init__(self, status: Status, url: str | None = None) -> None:
        super().__init__()
        self.status = status
        #: The URL the client is on now (several ``--url``: it fails over between them).
        self.url = url


class ServerError(Message):
    """The server reported an error message."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__()
        self.code = code
        self.text = text


@dataclass
class RangeReceived(Message):
    """The answer to a range view's request (``spec`` says which view asked)."""

    spec: RangeSpec
    answer: Range


@dataclass
class RangeFailed(Message):
    """A range view's request failed; ``reason`` is a few words for the user."""

    spec: RangeSpec
    reason: str

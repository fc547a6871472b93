"""The status line: connection state, age of the last update, stale/paused/TLS markers.

The app's 1 Hz ticker and every update ask it to redraw, and it repaints only when its text
would read differently (at one update a second the age mostly stays "0s"), so a quiet second
costs no repaint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from metrics_tui import formatting
from metrics_tui.messages import ConnState, Status


def state_text(status: Status, now: float) -> str:
    """The words for a connection state, e.g. ``Reconnecting in 4s (attempt 2)``."""
    match status.state:
        case ConnState.LIVE:
            return "Live ●"
        case ConnState.CONNECTING:
            return f"Connecting (attempt {status.attempt + 1})" if status.attempt else "Connecting"
        case ConnState.RECONNECTING:
            left = max(0, math.ceil((status.retry_at or now) - now))
            return f"Reconnecting in {left}s (attempt {status.attempt})"
        case ConnState.POLLING:
            return "Polling (REST)"
        case ConnState.OFFLINE:
            return "Offline, press r"
        case ConnState.UNAUTHORIZED:
            return "Unauthorized · check --token"
    return status.state.value  # pragma: no cover


class StatusLine(Widget):
    """One row at the top of the dashboard."""

    COMPONENT_CLASSES = {
        "status--live",
        "status--busy",
        "status--offline",
        "status--stale",
        "status--paused",
        "status--warn",
        "status--dim",
    }

    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; padding: 0 1; }
    StatusLine > .status--live { color: $text-success; text-style: bold; }
    StatusLine > .status--busy { color: $text-warning; text-style: bold; }
    StatusLine > .status--offline { color: $text-error; text-style: bold; }
    StatusLine > .status--stale { color: $text-warning; text-style: bold reverse; }
    StatusLine > .status--paused { color: $text-accent; text-style: bold reverse; }
    StatusLine > .status--warn { color: $text-warning; text-style: bold; }
    StatusLine > .status--dim { color: $text-muted; }
    """

    def __init__(
        self,
        url: str,
        clock: Callable[[], float],
        *,
        insecure: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        parts = urlsplit(url)
        self.where = parts.netloc or url
        self.clock = clock
        #: TLS without certificate checks: flagged for as long as the monitor runs.
        self.insecure = insecure
        self.status = Status(ConnState.CONNECTING)
        self.last_update: float | None = None
        self.interval = 5.0
        self.paused = False
        #: Server time of the snapshot on screen, named while paused so frozen figures are
        #: not taken for live ones.
        self.shown_at: datetime | None = None
        self._drawn: Text | None = None

    def refresh_if_changed(self) -> None:
        """Repaint if the line now reads differently from what is on screen."""
        if self._drawn is None or self._line() != self._drawn:
            self.refresh()

    def is_stale(self, now: float | None = None) -> bool:
        """No update for two intervals, or figures held over from a lost connection."""
        if self.last_update is None:
            return False
        now = self.clock() if now is None else now
        if self.status.state not in (ConnState.LIVE, ConnState.POLLING):
            return True
        return now - self.last_update > 2 * self.interval

    def render(self) -> Text:
        self._drawn = self._line()
        return self._drawn

    def _line(self) -> Text:
        now = self.clock()
        style = self.get_component_rich_style
        state = self.status.state
        cls = {
            ConnState.LIVE: "status--live",
            ConnState.POLLING: "status--busy",
            ConnState.CONNECTING: "status--busy",
            ConnState.RECONNECTING: "status--busy",
            ConnState.OFFLINE: "status--offline",
            ConnState.UNAUTHORIZED: "status--offline",
        }[state]
        dim = style("status--dim")
        # (text, style, may be shortened) in priority order; dropped from the end when the
        # pane is narrow, except that the reason for a failure is cut short rather than lost.
        pieces: list[tuple[str, object, bool]] = [(state_text(self.status, now), style(cls), False)]
        if self.insecure:
            pieces.append(("⚠ insecure TLS", style("status--warn"), False))
        if self.paused:
            pieces.append((" PAUSED ", style("status--paused"), False))
            if self.shown_at is not None:
                shown = self.shown_at.astimezone().strftime("%H:%M:%S")
                pieces.append((f"showing {shown}", style("status--warn"), False))
        if self.is_stale(now):
            pieces.append((" stale ", style("status--stale"), False))
        if state not in (ConnState.LIVE, ConnState.POLLING) and self.status.detail:
            pieces.append((self.status.detail, dim, True))
        if state is ConnState.UNAUTHORIZED and self.status.retry_at is not None:
            left = max(0, math.ceil(self.status.retry_at - now))
            pieces.append((f"retry in {left}s", dim, False))
        if self.last_update is None:
            pieces.append(("no data yet", dim, False))
        else:
            pieces.append((f"updated {formatting.age(now - self.last_update)} ago", dim, False))
        pieces.append((f"every {formatting.interval(self.interval)}", dim, False))

        width = self.content_size.width
        right = self.where
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        used = 0
        for i, (chunk, st, shortens) in enumerate(pieces):
            sep = "" if i == 0 else " · " if not chunk.startswith(" ") else " "
            if i and used + len(sep) + cell_len(chunk) > width:
                room = width - used - len(sep)
                if shortens and room >= 12:
                    text.append(sep, dim)
                    text.append(chunk[: room - 1] + "…", st)  # type: ignore[arg-type]
                    used = width
                break
            text.append(sep, dim)
            text.append(chunk, st)  # type: ignore[arg-type]
            used += len(sep) + cell_len(chunk)
        if used + 2 + len(right) <= width:
            text.append(" " * (width - used - len(right)))
            text.append(right, dim)
        return text

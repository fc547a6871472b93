"""The status line: connection state, age of the last update, stale/paused/TLS markers.

What it shows comes in through reactives (the state, the age's two ends, the interval, pause),
which follow the app's (``app.follow``): ``now`` moves with the app's 1 Hz ticker and with every
message. A change repaints only when the text would read differently (at one update a second
the age mostly stays "0s"), so a quiet second costs no repaint.

What the line says is built by pure functions (``status_parts``, then ``fit``) in priority
order: the state, then the age of the figures, then when and how often it retries, then why;
what does not fit is shortened or dropped from the least important end, so in a narrow pane the
age of the figures on screen is the last thing to go (it never does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from rich.cells import cell_len
from rich.text import Text
from textual.reactive import var
from textual.widget import Widget

from metrics_tui import formatting
from metrics_tui.messages import ConnState, Status
from metrics_tui.wire import DEFAULT_INTERVAL


def where(url: str) -> str:
    """What the status line names a URL by: its host:port (without a user or password)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return host or url


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
        case ConnState.WRONG_URL:
            return "Wrong URL"
    return status.state.value  # pragma: no cover


def is_stale(status: Status, last_update: float | None, interval: float | None, now: float) -> bool:
    """No update for two intervals, or figures held over from a lost connection."""
    if last_update is None:
        return False
    if status.state not in (ConnState.LIVE, ConnState.POLLING):
        return True
    # Until the server states its interval, its default stands in (for dimming only).
    return now - last_update > 2 * (interval or DEFAULT_INTERVAL)


@dataclass(frozen=True)
class AlertNote:
    """The alert the line names: the first of the firing rules (critical first)."""

    name: str
    severity: str
    #: When it started firing, on the line's clock.
    since: float
    #: How many more rules fire.
    more: int = 0


#: The shortest a cut reason may get (with its ellipsis) before it is dropped instead.
MIN_CUT = 12


@dataclass(frozen=True)
class Part:
    """One piece of the line, in the longest of its ``forms`` that fits.

    ``ranks[i]`` is how readily ``forms[i]`` gives way to ``forms[i + 1]``: the highest rank
    anywhere on the line gives way first. An empty form drops the piece (and its separator).
    An ``elastic`` piece (a reason) may instead be cut short with an ellipsis.
    """

    forms: tuple[str, ...]
    ranks: tuple[int, ...] = ()
    cls: str = "status--dim"
    sep: str = " · "
    elastic: bool = False


def _width(parts: Sequence[Part], chosen: Sequence[str]) -> int:
    used = 0
    for part, text in zip(parts, chosen, strict=True):
        if text:
            used += cell_len(text) + (cell_len(part.sep) if used else 0)
    return used


def fit(parts: Sequence[Part], width: int) -> list[str]:
    """The form of each part (``""``: dropped) so that the line fits ``width`` cells.

    Steps down the highest-ranked part one form at a time until the line fits or nothing can
    give way; a pure function, so every width can be tested without a terminal.
    """
    level = [0] * len(parts)
    chosen = [p.forms[0] for p in parts]
    while (over := _width(parts, chosen) - width) > 0:
        steps = [(p.ranks[level[i]], i) for i, p in enumerate(parts) if level[i] < len(p.ranks)]
        if not steps:
            break
        _, i = max(steps)
        part = parts[i]
        if part.elastic and level[i] == 0:
            keep = cell_len(chosen[i]) - over - 1
            if keep >= MIN_CUT - 1:
                chosen[i] = chosen[i][:keep].rstrip() + "…"
                level[i] = len(part.ranks)  # cut once; a second cut would only drop it
                continue
        level[i] += 1
        chosen[i] = part.forms[level[i]]
    return chosen


def status_parts(
    status: Status,
    now: float,
    *,
    age: float | None,
    stale: bool,
    interval: float | None,
    paused: bool = False,
    shown_at: datetime | None = None,
    insecure: bool = False,
    alert: AlertNote | None = None,
) -> list[Part]:
    """The pieces of the line in display order, each with its shorter forms and ranks.

    Ranks (higher gives way first): "no data yet" 90, "every 5s" 85, the words "updated" and
    "· ... ago" 80 and 45 (then "stale" plain, 12), "showing" 75 then 40, "retry in 30s" 72
    (after a 401 or a wrong URL), the reason 70 (cut, then dropped), "(attempt 8)" 65 then
    55, the TLS warning 50 then 20 ("⚠"), "in 16s" 35, the hint after the state (", press
    r", "(REST)", "· check --token") 15, a firing alert's time 30, its name 10, its count 5
    and the word 3 (``ALERT payment failures 2m05s +2``, ``ALERT payment failures +2``,
    ``ALERT (3)``, ``ALERT``, ``!!``). The state, PAUSED, the age itself and the alert's mark
    never go: at 40 columns all of them fit in their shortest forms.
    """
    state = status.state
    busy = {
        ConnState.LIVE: "status--live",
        ConnState.OFFLINE: "status--offline",
        ConnState.UNAUTHORIZED: "status--offline",
        ConnState.WRONG_URL: "status--offline",
    }.get(state, "status--busy")
    parts: list[Part] = []
    if state is ConnState.RECONNECTING:
        left = max(0, math.ceil((status.retry_at or now) - now))
        parts.append(Part(("Reconnecting",), cls=busy))
        parts.append(Part((f"in {left}s", ""), (35,), busy, sep=" "))
        parts.append(
            Part((f"(attempt {status.attempt})", f"(#{status.attempt})", ""), (65, 55), busy, " ")
        )
    elif state is ConnState.CONNECTING and status.attempt:
        parts.append(Part(("Connecting",), cls=busy))
        n = status.attempt + 1
        parts.append(Part((f"(attempt {n})", f"(#{n})", ""), (65, 55), busy, " "))
    else:
        # The hint after the state word is the last thing to go before the age would.
        words = state_text(status, now)
        short = {
            ConnState.POLLING: "Polling",
            ConnState.OFFLINE: "Offline",
            ConnState.UNAUTHORIZED: "Unauthorized",
        }.get(state, words)
        forms = (words, short) if short != words else (words,)
        parts.append(Part(forms, (15,)[: len(forms) - 1], busy))
    if alert is not None:
        more = f" +{alert.more}" if alert.more else ""
        named = f"ALERT {alert.name}"
        forms = (f"{named} {formatting.age(now - alert.since)}{more}", f"{named}{more}")
        if alert.more:
            forms += (f"ALERT ({alert.more + 1})",)
        # The last resort is the mark on the card row: "!!" critical, "!" warning.
        forms += ("ALERT", "!!" if alert.severity == "critical" else "!")
        ranks = (30, 10, 5, 3) if alert.more else (30, 10, 3)
        # In capitals and reverse video it needs no " · " (and 40 columns lack the room).
        parts.append(Part(forms, ranks, f"status--{alert.severity}", sep=" "))
    if paused:
        parts.append(Part((" PAUSED ",), cls="status--paused", sep=" "))
        if shown_at is not None:
            shown = shown_at.astimezone().strftime("%H:%M:%S")
            parts.append(Part((f"showing {shown}", shown, ""), (75, 40), "status--warn"))
    if age is not None:
        ago = formatting.age(age)
        if stale:
            forms = (f" stale · updated {ago} ago ", f" stale · {ago} ago ", f" stale {ago} ", ago)
            parts.append(Part(forms, (80, 45, 12), "status--stale", sep=" "))
        else:
            parts.append(Part((f"updated {ago} ago", f"{ago} ago", ago), (80, 12)))
    if insecure:
        parts.append(Part(("⚠ insecure TLS", "⚠ insecure", "⚠"), (50, 20), "status--warn"))
    if state not in (ConnState.LIVE, ConnState.POLLING) and status.detail:
        parts.append(Part((status.detail, ""), (70,), elastic=True))
    if state in (ConnState.UNAUTHORIZED, ConnState.WRONG_URL) and status.retry_at is not None:
        left = max(0, math.ceil(status.retry_at - now))
        # Below the reason here: it names what to fix, and nothing changes until it is fixed.
        parts.append(Part((f"retry in {left}s", ""), (72,)))
    if interval is not None:
        parts.append(Part((f"every {formatting.interval(interval)}", ""), (85,)))
    if age is None:
        parts.append(Part(("no data yet", ""), (90,)))
    return parts


#: A status line as it reads: its width, and (separator, text, class) per piece shown.
Pieces = tuple[int, tuple[tuple[str, str, str], ...]]


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
        "status--warning",
        "status--critical",
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
    StatusLine > .status--warning { color: $text-warning; text-style: bold reverse; }
    StatusLine > .status--critical { color: $text-error; text-style: bold reverse; }
    """

    status: var[Status] = var(Status(ConnState.CONNECTING), init=False)
    #: When the figures on screen arrived, on the app's clock.
    last_update: var[float | None] = var(None, init=False)
    #: The server's interval as it stated it; None (and not shown) until it has.
    interval: var[float | None] = var(None, init=False)
    paused: var[bool] = var(False, init=False)
    #: Server time of the snapshot on screen, named while paused so frozen figures are not
    #: taken for live ones.
    shown_at: var[datetime | None] = var(None, init=False)
    #: The app's clock as of its last tick or message: ages and countdowns are drawn at it.
    now: var[float] = var(0.0, init=False)
    #: The firing alert to name, if any.
    alert: var[AlertNote | None] = var(None, init=False)
    #: host:port of the URL the monitor is on, at the right (it changes on a failover).
    where: var[str] = var("", init=False)

    def __init__(
        self,
        url: str,
        clock: Callable[[], float],
        *,
        insecure: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.set_reactive(StatusLine.where, where(url))
        #: TLS without certificate checks: flagged for as long as the monitor runs.
        self.insecure = insecure
        #: What the line read when it was last drawn.
        self._drawn: Pieces | None = None
        self.now = clock()

    def _redraw(self) -> None:
        """Repaint if the line now reads differently from what is on screen."""
        if self._drawn is not None and self._pieces() != self._drawn:
            self.refresh()

    # Any input that changes may change the text; an input set to its old value calls nothing.
    watch_status = watch_last_update = watch_interval = _redraw
    watch_paused = watch_shown_at = watch_now = watch_alert = _redraw

    def watch_where(self) -> None:
        self.refresh()

    def render(self) -> Text:
        self._drawn = self._pieces()
        return self._text(self._drawn)

    def _pieces(self) -> Pieces:
        """What the line reads: its width and, per piece shown, its separator, text and class.

        Cheaper than building the Text (a third of the time), so every change can be checked.
        """
        now = self.now
        parts = status_parts(
            self.status,
            now,
            age=None if self.last_update is None else now - self.last_update,
            stale=is_stale(self.status, self.last_update, self.interval, now),
            interval=self.interval,
            paused=self.paused,
            shown_at=self.shown_at,
            insecure=self.insecure,
            alert=self.alert,
        )
        width = self.content_size.width
        chosen = fit(parts, width)
        return width, tuple((p.sep, c, p.cls) for p, c in zip(parts, chosen, strict=True) if c)

    def _text(self, pieces: Pieces) -> Text:
        width, shown = pieces
        style = self.get_component_rich_style
        dim = style("status--dim")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for sep, chunk, cls in shown:
            if text:
                text.append(sep, dim)
            text.append(chunk, style(cls))
        used = text.cell_len
        right = self.where
        if used + 2 + len(right) <= width:
            text.append(" " * (width - used - len(right)))
            text.append(right, dim)
        return text

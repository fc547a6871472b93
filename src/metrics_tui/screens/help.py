"""The ? help screen: keys and what the status line means."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_TEXT = """\
[b]metrics-tui[/b] — live business metrics from metrics-server

[b]Keys[/b]
  [b]q[/b]        quit
  [b]r[/b]        reconnect now (also leaves Offline)
  [b]p[/b]        pause / resume the display (data keeps arriving)
  [b]?[/b]        this help
  [b]ctrl+p[/b]   command palette (themes, commands)

[b]Status line[/b]
  [b]Live ●[/b]            streaming over WebSocket
  [b]Connecting[/b]        opening the WebSocket
  [b]Reconnecting in Ns[/b] waiting before the next attempt (backoff)
  [b]Polling (REST)[/b]    WebSocket blocked, polling the REST endpoint
  [b]Offline, press r[/b]  gave up after --max-retries attempts
  [b]stale[/b]             no update for two intervals, or figures kept
                    from a lost connection (shown dimmed)

Charts show the last 20 interval samples; changes between samples
update the cards only.

Press [b]escape[/b], [b]?[/b] or [b]q[/b] to close."""


class HelpScreen(ModalScreen[None]):
    """Modal help; closes on escape, ? or q."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: auto;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen Static { width: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Help"
            yield Static(HELP_TEXT)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)

"""The ? help screen: keys and what the status line means."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

#: Compact on purpose: it fits a 60x20 pane without scrolling.
HELP_TEXT = """\
[b]q[/b] quit  [b]r[/b] reconnect now  [b]p[/b] pause/resume  [b]?[/b] help
[b]ctrl+p[/b] commands and themes  [b]e[/b] export charts to CSV
[b]1[/b] live  [b]2[/b] hour  [b]3[/b] 24 h  [b]4[/b] 7 days  [b]5[/b] 30 days  [b]6[/b] year
[b]/[/b] range: 2026-11-01..2026-11-15, yesterday, last week

[b]Status line[/b]
[b]Live ●[/b]          streaming over WebSocket
[b]Connecting[/b]      opening the WebSocket
[b]Reconnecting[/b]    waiting before the next attempt
[b]Polling (REST)[/b]  WebSocket blocked; polling REST
[b]Unauthorized[/b]    token missing or wrong (--token)
[b]Wrong URL[/b]       no metrics feed there (--url)
[b]Offline[/b]         gave up after --max-retries
[b]stale[/b]           no update for 2 intervals, or kept
                from a lost connection (dimmed)
[b]PAUSED[/b]          display frozen at the time shown;
                data keeps arriving
[b]⚠ insecure TLS[/b]  certificate not checked (--insecure)"""


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
            box.border_title = "metrics-tui help"
            box.border_subtitle = "escape, ? or q closes"
            yield Static(HELP_TEXT)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)

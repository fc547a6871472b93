"""The ? help screen: keys and what the status line means."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.keys import format_key
from textual.markup import escape
from textual.widgets import Static

from metrics_tui.screens.framed import FramedModal

#: Compact on purpose: it fits a 60x20 pane without scrolling. {keys} is the line of the app's
#: footer bindings with the keys in use (the configuration file's [keys] may rebind them);
#: those in SECOND_LINE lead the next line, so that the first fits 60 columns. {ranges} is the
#: line of the range keys.
HELP_TEXT = """\
{keys}
{second}[b]ctrl+p[/b] commands and themes  {export} export CSV
{ranges}
{range} range: 2026-11-01..2026-11-15, yesterday, last week
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
[b]⚠ insecure TLS[/b]  certificate not checked (--insecure)
Live charts: last 20 samples. {close} closes."""

#: What the keys line says of an action, where the footer's word is too short.
LONGER = {"reconnect": "reconnect now", "pause": "pause/resume", "alerts": "alert rules"}
SECOND_LINE = ("alerts",)
#: The range keys' binding ids and their words in the help.
RANGE_WORDS = {
    "live": "live",
    "last_hour": "hour",
    "last_day": "24 h",
    "last_week": "7 days",
    "last_month": "30 days",
    "last_year": "year",
}


def key_label(key: str) -> str:
    """A Textual key as a person writes it: "question_mark" -> "?", "ctrl+q" stays."""
    *mods, base = key.split("+")
    return "+".join([*mods, format_key(base)])


class HelpScreen(FramedModal[None]):
    """Modal help; closes on escape, or on the app's help and quit keys (the ids make the
    app's keymap move these with the app's own bindings)."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False, id="help"),
        Binding("q", "dismiss", "Close", show=False, id="quit"),
    ]

    DEFAULT_CSS = """
    HelpScreen > .frame { width: auto; max-width: 100%; max-height: 100%; }
    HelpScreen Static { width: auto; }
    """

    box_title = "metrics-tui help"

    def compose_box(self) -> ComposeResult:
        yield Static(self.help_text())

    def help_text(self) -> str:
        app = self.app
        keys_for = getattr(app, "keys_for", None)
        if keys_for is None:  # not the monitor (a test app): the keys as declared
            return HELP_TEXT.format(
                keys="", second="", export="e", ranges="", range="/", close="escape, ? or q"
            )

        def key(action: str) -> str:
            return f"[b]{escape(keys_for(action)[0])}[/b]"

        words = {
            b.id: f"{key(b.id)} {LONGER.get(b.id, b.description.lower())}"
            for b in app.BINDINGS
            if isinstance(b, Binding) and b.id and b.show
        }
        ranges = "  ".join(f"{key(action)} {word}" for action, word in RANGE_WORDS.items())
        line = "  ".join(w for i, w in words.items() if i not in SECOND_LINE)
        second = "".join(f"{w}  " for i, w in words.items() if i in SECOND_LINE)
        # The help and quit keys close this screen too, but ctrl+q and ctrl+c quit the app
        # from anywhere (Textual's priority bindings), so they are not offered here.
        quit_ = [k for k in keys_for("quit") if k not in ("ctrl+q", "ctrl+c")][:1]
        *first, last = ["escape", keys_for("help")[0], *quit_]
        close = escape(f"{', '.join(first)} or {last}")
        return HELP_TEXT.format(
            keys=line,
            second=second,
            export=key("export"),
            ranges=ranges,
            range=key("range"),
            close=close,
        )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)

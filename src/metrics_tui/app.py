"""The Textual app: a dashboard fed by MetricsClient through messages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import ActiveBinding, Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.filter import Monochrome, NoColor
from textual.reactive import var
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from metrics_protocol.wire import Metrics, RangePoint
from metrics_tui import formatting
from metrics_tui.alerts import Evaluator, Rule, RuleState, State
from metrics_tui.client import MetricsClient
from metrics_tui.colourless import Colourless
from metrics_tui.layout import FULL_FOOTER_WIDTH, MIN_HEIGHT, MIN_WIDTH, layout_for
from metrics_tui.messages import (
    ConnectionChanged,
    ConnState,
    HistoryReceived,
    MetricsUpdated,
    ServerError,
    Status,
)
from metrics_tui.ranges import PRESETS, RangeSpec, stamp_format
from metrics_tui.rangeview import RangeViews
from metrics_tui.screens.alerts import AlertsScreen
from metrics_tui.screens.help import HelpScreen, key_label
from metrics_tui.widgets.cards import PULSE_CARDS, MetricCard, card_values, metric_cards
from metrics_tui.widgets.charts import TrendChart
from metrics_tui.widgets.status import AlertNote, StatusLine, is_stale, where
from metrics_tui.wire import is_insecure, split_urls

CHART_POINTS = 20
#: The range keys and their binding ids (the configuration file's [keys] names).
RANGE_KEYS = (
    ("1", "live"),
    ("2", "last_hour"),
    ("3", "last_day"),
    ("4", "last_week"),
    ("5", "last_month"),
    ("6", "last_year"),
)
#: The footer names ``a Alerts`` from this width (if there are rules): below it the compact
#: footer's other keys take the whole line. ``a`` works at any width.
ALERTS_KEY_WIDTH = 44
#: Seconds a hang-up leaves for a clean exit before the process is ended regardless.
HANGUP_GRACE = 3.0


def follow(widget: Widget, source: App[Any], **names: str) -> None:
    """Keep ``widget.<name>`` equal to ``source.<names[name]>`` from now on.

    Textual's ``data_bind`` does this only from the node that composes the widget (here the
    screen, not the app). Like it, this is a watch owned by the widget: it ends when the widget
    is removed, so nothing is pushed into a widget that is gone.
    """
    for name, attr in names.items():
        widget.watch(source, attr, _setter(widget, name))


def _setter(widget: Widget, name: str) -> Callable[[object], None]:
    # One argument: Textual calls a two-argument watcher with (old, new).
    def push(value: object) -> None:
        setattr(widget, name, value)

    return push


class Dashboard(Screen[None]):
    """The one screen: status line, cards, charts, footer. Picks a layout on every resize.

    It draws the app's state: its widgets follow the app's reactives (``follow``, or watches
    owned by this screen), so a change is drawn when it happens, and only then. The watches end
    with the screen, so nothing is drawn after it is gone; a widget it looks up by id and
    cannot find raises ``NoMatches``, so a renamed id fails in tests rather than going blank.
    """

    def __init__(self, url: str, clock: Callable[[], float], *, insecure: bool = False) -> None:
        super().__init__()
        self._url = url
        self._clock = clock
        self._insecure = insecure

    def compose(self) -> ComposeResult:
        # Classes set before mounting cost nothing; set afterwards, each one restyles the DOM.
        width, height = self.app.size
        narrow = self._set_layout_classes(width, height)
        yield StatusLine(self._url, self._clock, insecure=self._insecure, id="status")
        with Container(id="body"):
            with Container(id="cards"):
                yield from metric_cards()
            with Container(id="charts"):
                yield TrendChart("Revenue", formatting.axis_money, id="revenue-chart")
                yield TrendChart("Active users", formatting.count, integer=True, id="users-chart")
        yield Static(id="too-small", markup=False)
        yield Footer(compact=narrow)

    @property
    def monitor(self) -> MetricsApp:
        app = self.app
        if not isinstance(app, MetricsApp):  # pragma: no cover
            raise TypeError("the dashboard draws a MetricsApp")
        return app

    def on_mount(self) -> None:
        self._apply_layout(self.size.width, self.size.height)
        app = self.monitor
        # Each watch runs at once with the current value too: what arrived before the screen
        # existed (the feed starts in on_load) is drawn now.
        follow(
            self.query_one(StatusLine),
            app,
            status="status",
            last_update="last_update",
            interval="interval",
            paused="paused",
            shown_at="shown_at",
            now="now",
            alert="alert",
        )
        self.watch(app, "shown", self._show_cards)
        self.watch(app, "shown_points", self._show_live_points)
        self.watch(app, "range_drawn", self._show_charts)
        self.watch(app, "loading", self._show_charts)
        self.watch(app, "paused", self._show_marks)
        self.watch(app, "stale", self._show_marks)
        self.watch(app, "alert_rows", self._show_alerts)

    def on_resize(self, event: events.Resize) -> None:
        self._apply_layout(event.size.width, event.size.height)
        self.refresh_bindings()  # the footer may have room for `a Alerts` now, or no more

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """The footer's keys: ``a Alerts`` only when there are rules to list and room."""
        bindings = super().active_bindings
        app = self.app
        if not (isinstance(app, MetricsApp) and app.alerts.rules) or (
            self.size.width < ALERTS_KEY_WIDTH
        ):
            bindings = {k: b for k, b in bindings.items() if b.binding.action != "alerts"}
        return bindings

    def _apply_layout(self, width: int, height: int) -> None:
        narrow = self._set_layout_classes(width, height)
        self.query_one(Footer).compact = narrow
        if layout_for(width, height).too_small:
            self.query_one("#too-small", Static).update(
                f"Terminal too small\nneed {MIN_WIDTH}x{MIN_HEIGHT}, have {width}x{height}\n\n"
                f"{self._quit_key()} quits"
            )

    def _show_cards(self, shown: Metrics | None) -> None:
        if shown is None:
            return
        animate = self.monitor.animating
        for card_id, values in card_values(shown).items():
            self.query_one(f"#{card_id}", MetricCard).set_values(values, animate=animate)
        if animate:
            for card_id in PULSE_CARDS:
                self.query_one(f"#{card_id}", MetricCard).pulse()

    def _show_live_points(self) -> None:
        if self.monitor.range_drawn is None:  # a range view keeps its points meanwhile
            self._show_charts()

    def _show_charts(self) -> None:
        """The live samples, or the range view the app holds; a view being fetched is named
        "loading…" in the titles over what is shown until it comes."""
        app = self.monitor
        loading = app.loading

        def title(metric: str) -> tuple[str, ...] | None:
            return loading.titles(metric, " · loading…") if loading is not None else None

        revenue = self.query_one("#revenue-chart", TrendChart)
        users = self.query_one("#users-chart", TrendChart)
        if app.range_drawn is None:
            pts = app.shown_points
            rev = [(float(m.revenue.total), m.timestamp) for m in pts if m.revenue is not None]
            usr = [(float(m.active_users.current), m.timestamp) for m in pts if m.active_users]
            revenue.set_points([v for v, _ in rev], [t for _, t in rev], title=title("Revenue"))
            users.set_points([v for v, _ in usr], [t for _, t in usr], title=title("Active users"))
            return
        spec, points = app.range_drawn
        stamps = [p.start for p in points]
        label = stamp_format(spec.step, points)
        revenue.set_points(
            [float(p.revenue) for p in points],
            stamps,
            title=title("Revenue") or spec.titles("Revenue"),
            kind="bars" if spec.bars else "line",
            label=label,
        )
        users.set_points(
            [float(p.active_users) for p in points],
            stamps,
            title=title("Active users") or spec.titles("Active users"),
            kind="line",
            label=label,
        )

    def _show_marks(self) -> None:
        """Dim the figures when stale, and say on every card why they do not move."""
        app = self.monitor
        self.query_one("#body").set_class(app.stale, "-stale")
        marks = (("paused", app.paused), ("stale", app.stale))
        subtitle = " · ".join(word for word, on in marks if on)
        for card in self.query(MetricCard):
            card.border_subtitle = subtitle

    def _show_alerts(self, rows: dict[str, dict[str, str]]) -> None:
        """Colour the card rows of the firing rules (the line's part follows ``alert``)."""
        for card in self.query(MetricCard):
            card.set_alerts(rows.get(card.id or "", {}))

    def _quit_key(self) -> str:
        app = self.app
        return app.key_for("quit") if isinstance(app, MetricsApp) else "q"

    def _set_layout_classes(self, width: int, height: int) -> bool:
        """Classes for the arrangement that fits; returns whether the footer must be compact."""
        lay = layout_for(width, height)
        self.set_class(lay.too_small, "-too-small")
        self.set_class(lay.cards == "grid", "-cards-grid")
        self.set_class(lay.roomy, "-roomy")
        for mode in ("plot", "spark", "none"):
            self.set_class(lay.charts == mode, f"-charts-{mode}")
        self.set_class(lay.stacked, "-charts-stacked")
        # A narrow pane gets the compact footer without the palette hint, so no key label is
        # cut mid-word (ctrl+p still works).
        narrow = width < FULL_FOOTER_WIDTH
        self.set_class(narrow, "-narrow")
        return narrow


class MetricsApp(RangeViews, App[None]):
    """Live monitor of a metrics-server.

    State (latest snapshot, chart points) lives here in reactives, not in widgets, so pausing
    only stops drawing and resuming shows everything that arrived meanwhile. The dashboard
    draws it (see ``Dashboard``): setting a reactive to a new value is what redraws, and
    setting it to the same value costs nothing.
    """

    CSS_PATH = "app.tcss"
    TITLE = "metrics-tui"
    #: A binding's id is its name in the configuration file's [keys] table (config.py).
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("r", "reconnect", "Reconnect", id="reconnect"),
        Binding("p", "toggle_pause", "Pause", id="pause"),
        Binding("a", "alerts", "Alerts", id="alerts"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        # Range views (rangeview.py): named in the help and the command palette.
        *(
            Binding(key, f"range('{key}')", f"Range {key}", show=False, id=action)
            for key, action in RANGE_KEYS
        ),
        Binding("slash", "range_input", "Range", key_display="/", show=False, id="range"),
        Binding("e", "export", "Export CSV", show=False, id="export"),
    ]

    #: What the client said last about the connection.
    status: var[Status] = var(Status(ConnState.CONNECTING), init=False)
    #: The newest snapshot.
    latest: var[Metrics | None] = var(None, init=False)
    #: The chart points (interval and REST snapshots), oldest first, at most ``CHART_POINTS``.
    points: var[tuple[Metrics, ...]] = var((), init=False)
    #: The server's interval once it has stated it (never a default guess).
    interval: var[float | None] = var(None, init=False)
    paused: var[bool] = var(False, init=False)
    #: When the newest snapshot arrived, on ``clock``.
    last_update: var[float | None] = var(None, init=False)
    #: ``clock`` at the last tick (1 Hz) or message: what ages and countdowns are drawn at.
    now: var[float] = var(0.0, init=False)
    #: What the cards and charts show: ``latest`` and ``points``, or what they were at pause.
    shown: var[Metrics | None] = var(None, init=False)
    shown_points: var[tuple[Metrics, ...]] = var((), init=False)
    #: While paused, the server time of the frozen snapshot (the status line names it).
    shown_at: var[datetime | None] = var(None, init=False)
    #: No update for two intervals, or figures held over from a lost connection.
    stale: var[bool] = var(False, init=False)
    #: The firing alert the status line names (None while no rule fires).
    alert: var[AlertNote | None] = var(None, init=False)
    #: Per card id, the figures that firing rules name, with the severity (critical wins).
    alert_rows: var[dict[str, dict[str, str]]] = var(dict, init=False)
    #: The range view the charts show and its points (None: the live ``shown_points``).
    range_drawn: var[tuple[RangeSpec, Sequence[RangePoint]] | None] = var(None, init=False)
    #: A range view asked for and not come yet: the chart titles say it is loading.
    loading: var[RangeSpec | None] = var(None, init=False)

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
        max_retries: int | None = None,
        theme: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        animate: bool = True,
        connect: bool = True,
        notice: str | None = None,
        keymap: Mapping[str, str] | None = None,
        alerts: Sequence[Rule] = (),
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.export_dir = export_dir
        #: Binding id -> keys, from the configuration file's [keys] (checked by config.py).
        self.keymap = dict(keymap or {})
        if self.keymap:
            self.set_keymap(self.keymap)
        self.url = url
        self.clock = clock
        self._token = token
        self._tls = tls
        self._max_retries = max_retries
        self._animate = animate
        self._connect = connect
        self._notice = notice
        if theme:
            self.theme = theme
        self._match_no_color_filter()
        self.client: MetricsClient | None = None
        self.now = clock()
        self._hup_poll: select.poll | None = None
        self._hangup_watchdog: threading.Timer | None = None
        #: The alert rules' states, evaluated on every snapshot and every tick.
        self.alerts = Evaluator(alerts)
        self._firing: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ lifecycle

    def get_default_screen(self) -> Screen[None]:
        return Dashboard(split_urls(self.url)[0], self.clock, insecure=is_insecure(self._tls))

    def _match_no_color_filter(self) -> None:
        """Under NO_COLOR draw with no colour codes at all, whatever the theme.

        Textual's NO_COLOR filters keep greys or default-colour codes (see colourless.py).
        """
        if not self.no_color:
            return
        for i, flt in enumerate(self._filters):
            if isinstance(flt, NoColor | Monochrome):
                self._filters[i] = Colourless()

    def on_load(self) -> None:
        # Connect before the screen is built: the handshake and the server's first messages
        # overlap with mounting, and the first frame can already show figures.
        if self._connect and self.client is None:
            self.client = MetricsClient(
                self.url,
                self.post_message,
                token=self._token,
                tls=self._tls,
                max_retries=self._max_retries,
            )
            self.run_worker(self.client.run(), name="metrics-client", exclusive=True)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)
        if self._notice:
            self.notify(self._notice, timeout=8, markup=False)
        if not self.is_headless:
            self._watch_terminal()

    def _watch_terminal(self) -> None:
        """Exit when the terminal goes away (ssh drop, tmux kill) instead of spinning."""
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hangup)
        try:
            poller = select.poll()
            poller.register(sys.__stdin__.fileno(), 0)  # type: ignore[union-attr]
            self._hup_poll = poller
        except (AttributeError, OSError, ValueError):
            self._hup_poll = None

    def _hangup(self) -> None:
        # Shutdown still writes to the terminal, and with the terminal gone that has been seen
        # to block for good (the output thread's queue never drains). Nothing is left to
        # restore on a vanished terminal, so a watchdog ends the process if a clean exit has
        # not happened in time.
        if self._hangup_watchdog is None:
            self._hangup_watchdog = threading.Timer(HANGUP_GRACE, os._exit, args=(129,))
            self._hangup_watchdog.daemon = True
            self._hangup_watchdog.start()
        self.exit(return_code=129)

    def _terminal_gone(self) -> bool:
        if self._hup_poll is None:
            return False
        try:
            events_ = self._hup_poll.poll(0)
        except OSError:
            return True
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events_)

    def _tick(self) -> None:
        """1 Hz: age text and staleness; nothing else runs while the feed is quiet."""
        if self._terminal_gone():
            self._hangup()
            return
        now = self.clock()
        if self.alerts.rules:
            self._alert_states(self.alerts.evaluate(now))
        self.now = now

    # ------------------------------------------------------------------ derived state

    def _check_stale(self) -> None:
        self.stale = is_stale(self.status, self.last_update, self.interval, self.now)

    # Staleness follows these four; the dashboard watches ``stale`` itself.
    watch_status = watch_last_update = watch_interval = watch_now = _check_stale

    def watch_latest(self, latest: Metrics | None) -> None:
        if not self.paused:
            self.shown = latest

    def watch_points(self, points: tuple[Metrics, ...]) -> None:
        if not self.paused:
            self.shown_points = points

    def watch_paused(self, paused: bool) -> None:
        shown = self.shown
        self.shown_at = shown.timestamp if paused and shown is not None else None
        if not paused:  # catch up with everything that arrived meanwhile
            self.shown = self.latest
            self.shown_points = self.points
            if self.range is not None:  # a range view's refresh waited for the pause to end
                self.range_drawn = (self.range, self.range_points)

    @property
    def animating(self) -> bool:
        return self._animate and self.animation_level != "none"

    @property
    def status_line(self) -> StatusLine:
        return self._dashboard().query_one(StatusLine)

    def _dashboard(self) -> Screen[None]:
        if not self.screen_stack:  # shutting down
            raise NoMatches("no dashboard")
        return self.screen_stack[0]

    # ------------------------------------------------------------------ alerts

    def _alert_states(self, states: list[RuleState]) -> None:
        """New states: ring for a rule that starts firing (with ``bell``), then show them."""
        firing = frozenset(s.rule.name for s in states if s.state is State.FIRING)
        if any(s.rule.bell and s.rule.name not in self._firing for s in states if s.active):
            self.bell()
        self._firing = firing
        rows: dict[str, dict[str, str]] = {}
        for s in self.alerts.firing():  # critical first: it wins a row both rules name
            rows.setdefault(s.rule.figure.card, {}).setdefault(s.rule.figure.attr, s.rule.severity)
        self.alert_rows = rows
        self.alert = self._alert_note()
        if isinstance(self.screen, AlertsScreen):
            self.screen.redraw()

    def _alert_note(self) -> AlertNote | None:
        firing = self.alerts.firing()
        if not firing:
            return None
        top = firing[0]
        return AlertNote(top.rule.name, top.rule.severity, top.since or 0.0, len(firing) - 1)

    # ------------------------------------------------------------------ messages

    def on_metrics_updated(self, message: MetricsUpdated) -> None:
        if message.interval is not None:
            self.interval = message.interval
        # The age's two ends move together, the far one first: set the other way round, the line
        # would read "updated 1s ago" in between and repaint for nothing.
        self.last_update = self.now = self.clock()
        if self.alerts.rules:
            self._alert_states(self.alerts.observe(message.metrics, self.last_update))
        if message.kind != "change":
            self.points = (*self.points, message.metrics)[-CHART_POINTS:]
        self.latest = message.metrics

    def on_history_received(self, message: HistoryReceived) -> None:
        self.now = self.clock()
        self.interval = message.interval
        self.points = tuple(message.snapshots[-CHART_POINTS:])

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self.now = self.clock()
        self.status = message.status
        if message.url is not None:  # failed over: the status line names the URL it is on
            with contextlib.suppress(NoMatches):
                self.status_line.where = where(message.url)

    def on_server_error(self, message: ServerError) -> None:
        self.notify(f"{message.code}: {message.text}", title="Server error", severity="error")

    # ------------------------------------------------------------------ actions

    def action_reconnect(self) -> None:
        """Reconnect now: skips the backoff wait, leaves Offline, or restarts a live link."""
        if self.client is not None:
            self.client.reconnect_now()
            self.notify("Reconnecting…", timeout=2)

    def action_toggle_pause(self) -> None:
        self.now = self.clock()
        self.paused = not self.paused

    def action_alerts(self) -> None:
        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen(lambda: self.alerts.states, self.clock))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Reconnect now", "Skip the wait and connect again", self.action_reconnect
        )
        yield SystemCommand(
            "Pause / resume", "Freeze or unfreeze the display", self.action_toggle_pause
        )
        yield SystemCommand("Keys and status help", "Show the help screen", self.action_help)
        yield SystemCommand("Alert rules", "Every rule, its state and value", self.action_alerts)
        for key, action in RANGE_KEYS:
            name = PRESETS[key].label if key in PRESETS else "live figures"
            yield SystemCommand(
                f"Show {name}",
                f"Charts over {name} (key {self.key_for(action)})",
                functools.partial(self.action_range, key),
            )
        yield SystemCommand(
            "Show a date range…",
            f"2026-11-01..2026-11-15, yesterday, … (key {self.key_for('range')})",
            self.action_range_input,
        )
        yield SystemCommand(
            "Export the charts to CSV",
            f"What the charts show, to a file (key {self.key_for('export')})",
            self.action_export,
        )

    def key_for(self, action: str) -> str:
        """The first key bound to a binding id, as the help writes it ("q", "ctrl+q", "?")."""
        return self.keys_for(action)[0]

    def keys_for(self, action: str) -> list[str]:
        """The keys bound to a binding id, as the help writes them."""
        if action in self.keymap:
            return [key_label(key) for key in self.keymap[action].split(",")]
        binding = next(b for b in self.BINDINGS if isinstance(b, Binding) and b.id == action)
        return [binding.key_display or key_label(binding.key)]

    # ------------------------------------------------------------------ for tests and status

    @property
    def connected(self) -> bool:
        return self.status.state is ConnState.LIVE

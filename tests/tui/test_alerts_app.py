"""Alert rules in the monitor: a real server whose figures move through /ws/ingest, the card
row, the status line, the bell, the ``a`` list, the footer, and NO_COLOR."""

from __future__ import annotations

import io
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from metrics_tui import formatting
from metrics_tui.alerts import State, parse_rules
from metrics_tui.app import ALERTS_KEY_WIDTH, MetricsApp
from metrics_tui.cli import main
from metrics_tui.colourless import Colourless
from metrics_tui.messages import ConnState, Status
from metrics_tui.screens.alerts import AlertsScreen
from metrics_tui.widgets.cards import MetricCard
from metrics_tui.widgets.status import AlertNote, fit, status_parts

from . import test_config
from .conftest import ServerHandle, wait_until
from .test_config import Recorder, refused, write_config
from .test_snapshots import LATEST, NOW, feed_live, make_app
from .test_status_truth import fitted

RULES = """
[[alerts]]
name = "stuck payments"
metric = "transactions.pending"
above = 0
severity = "critical"
bell = true

[[alerts]]
name = "any failure"
metric = "transactions.failed"
above = 0

[[alerts]]
name = "failures climbing"
metric = "rate(transactions.failed, 5m)"
above = 3
"""


def rules(text: str = RULES) -> list[Any]:
    return parse_rules(tomllib.loads(text)["alerts"])


class Ingest:
    """A producer on the server's /ws/ingest: each batch waits for its ack."""

    def __init__(self, server: ServerHandle) -> None:
        self.url = server.url.replace("/ws/metrics", "/ws/ingest")
        self.n = 0

    async def send(self, *events: dict[str, Any]) -> None:
        self.n += 1
        async with websockets.connect(self.url) as ws:
            await ws.send(json.dumps({"type": "events", "id": self.n, "events": list(events)}))
            ack = json.loads(await ws.recv())
        assert ack["type"] == "ack" and ack["accepted"] == len(events), ack


def list_text(app: MetricsApp) -> str:
    """The ``a`` screen's text, unwrapped."""
    console = Console(width=200, file=io.StringIO(), no_color=True)
    with console.capture() as captured:
        console.print(app.screen.query_one("#rules", Static).content, markup=False)
    return captured.get()


def line(app: MetricsApp) -> str:
    return app.status_line.render().plain


def row(app: MetricsApp, card: str, label: str) -> str:
    text = app.screen_stack[0].query_one(f"#{card}", MetricCard).render().plain
    return next(r for r in text.splitlines() if r.startswith(label))


async def test_an_alert_fires_and_clears_with_a_real_server(server: ServerHandle) -> None:
    ingest = Ingest(server)
    app = MetricsApp(server.url, animate=False, alerts=rules())
    bells: list[float] = []
    async with app.run_test(size=(100, 30)):
        app.bell = lambda: bells.append(app.clock())  # type: ignore[method-assign]
        await wait_until(lambda: app.latest is not None, what="the first snapshot")
        states = {s.rule.name: s.state for s in app.alerts.states}
        assert states == {
            "stuck payments": State.OK,
            "any failure": State.OK,
            "failures climbing": State.UNKNOWN,  # no value from 5 minutes ago yet
        }
        assert "ALERT" not in line(app)
        assert "!" not in row(app, "transactions", "Pending")

        await ingest.send(
            {
                "type": "transaction",
                "id": "t1",
                "status": "pending",
                "amount": "9.00",
                "userId": "u",
            }
        )
        await wait_until(lambda: "ALERT stuck payments" in line(app), what="the alert")
        # Waited for, not asserted at once: the server may send an interval sample taken
        # before the change after it, and the cards show it until the next one.
        await wait_until(lambda: row(app, "transactions", "Pending").endswith("1 !!"))
        assert "!" not in row(app, "transactions", "Failed")
        assert len(bells) == 1

        # Still firing on the next snapshots: no second bell.
        await ingest.send({"type": "user_activity", "userId": "u"})
        await wait_until(lambda: app.latest.active_users.current == 1, what="the next update")
        assert len(bells) == 1 and "ALERT stuck payments" in line(app)

        # t1 fails: it leaves pending, so the critical rule clears and the warning fires.
        await ingest.send({"type": "transaction", "id": "t1", "status": "failed"})
        await wait_until(lambda: "ALERT any failure" in line(app), what="the warning alone")
        assert "stuck" not in line(app) and "+" not in line(app)
        await wait_until(lambda: row(app, "transactions", "Failed").endswith("1 !"))
        await wait_until(lambda: "!" not in row(app, "transactions", "Pending"))
        assert len(bells) == 1  # the warning has no bell

        await ingest.send(
            {
                "type": "transaction",
                "id": "t2",
                "status": "pending",
                "amount": "1.00",
                "userId": "u",
            }
        )
        # A second rule fires: the line names the critical one and counts the other.
        await wait_until(lambda: "ALERT stuck payments" in line(app), what="the critical again")
        assert "+1" in line(app)
        assert len(bells) == 2  # it started firing again

        await ingest.send({"type": "transaction", "id": "t2", "status": "completed"})
        await wait_until(lambda: "stuck" not in line(app), what="the critical to clear")
        assert "!" not in row(app, "transactions", "Pending")


async def test_the_line_says_how_long_it_has_been_firing() -> None:
    now = [1000.0]
    app = MetricsApp("ws://x:1/ws/metrics", clock=lambda: now[0], connect=False, animate=False,
                     alerts=rules())  # fmt: skip
    async with app.run_test(size=(100, 30)) as pilot:
        await feed_live(pilot)  # 12 pending, 28 failed: both plain rules fire
        assert "ALERT stuck payments 0s +1" in line(app)
        now[0] += 125
        app._tick()
        assert "ALERT stuck payments 2m05s +1" in line(app)


async def test_a_opens_the_list_of_every_rule_and_closes_it() -> None:
    app = make_app()
    app.alerts.__init__(rules())  # type: ignore[misc]
    async with app.run_test(size=(80, 24)) as pilot:
        await feed_live(pilot)
        await pilot.press("a")
        assert isinstance(app.screen, AlertsScreen)
        text = list_text(app)
        for words in (
            "stuck payments",
            "transactions.pending > 0",
            "CRITICAL 0s",
            "any failure",
            "WARNING 0s",
            "failures climbing",
            "rate(transactions.failed, 5m) > 3",
            "unknown",
            "no value from 5m ago yet",
        ):
            assert words in text, (words, text)
        await pilot.press("a")
        assert not isinstance(app.screen, AlertsScreen)
        await pilot.press("a")
        await pilot.press("escape")
        assert not isinstance(app.screen, AlertsScreen)


async def test_a_without_rules_says_how_to_add_them() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, AlertsScreen)
        assert "[[alerts]]" in list_text(app)


def footer_keys(app: MetricsApp) -> list[FooterKey]:
    return [k for k in app.screen.query_one(Footer).query(FooterKey) if k.display]


@pytest.mark.parametrize("width", [40, ALERTS_KEY_WIDTH, 50, 60, 80])
async def test_the_footer_names_a_when_there_are_rules_and_room(width: int) -> None:
    app = make_app()
    app.alerts.__init__(rules())  # type: ignore[misc]
    async with app.run_test(size=(width, 15)) as pilot:
        await feed_live(pilot)
        keys = footer_keys(app)
        assert ("a" in {k.key for k in keys}) == (width >= ALERTS_KEY_WIDTH)
        footer = app.screen.query_one(Footer)
        for key in keys:
            assert footer.region.contains_region(key.region), (key.key, key.region)
        await pilot.press("a")  # works where the footer has no room to name it
        assert isinstance(app.screen, AlertsScreen)


async def test_the_footer_has_no_a_without_rules() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed_live(pilot)
        assert "a" not in {k.key for k in footer_keys(app)}


async def test_no_color_keeps_the_alert_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under NO_COLOR every colour goes (test_manners.py checks the bytes): the markers and
    the words stay."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    app.alerts.__init__(rules())  # type: ignore[misc]
    async with app.run_test(size=(80, 24)) as pilot:
        await feed_live(pilot)
        assert any(isinstance(f, Colourless) for f in app._filters)
        assert "ALERT stuck payments 0s +1" in line(app)
        assert row(app, "transactions", "Pending").endswith("12 !!")
        assert row(app, "transactions", "Failed").endswith("28 !")
        assert "!" not in row(app, "transactions", "Total")


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(ConnState),
    attempt=st.integers(0, 120),
    age=st.floats(0, 40 * 86400),
    stale=st.booleans(),
    paused=st.booleans(),
    insecure=st.booleans(),
    name=st.text(st.characters(codec="ascii", categories=["L", "Zs"]), min_size=1, max_size=60),
    firing_for=st.floats(0, 40 * 86400),
    more=st.integers(0, 30),
    width=st.integers(38, 200),
)
def test_the_alert_always_fits_and_never_goes(
    state: ConnState,
    attempt: int,
    age: float,
    stale: bool,
    paused: bool,
    insecure: bool,
    name: str,
    firing_for: float,
    more: int,
    width: int,
) -> None:
    """From 40 columns up the alert stays on the line (at worst as its mark, !!), with the age
    of the figures."""
    parts = status_parts(
        Status(state, attempt, 1010.0, "connection refused"),
        1000.0,
        age=age,
        stale=stale,
        interval=5.0,
        paused=paused,
        shown_at=datetime(2025, 11, 4, 10, 30, tzinfo=UTC) if paused else None,
        insecure=insecure,
        alert=AlertNote(name, "critical", 1000.0 - firing_for, more),
    )
    _, text = fitted(parts, width)
    assert cell_len(text) <= width, text
    assert ("ALERT" in text or "!!" in text) and formatting.age(age) in text, text
    if width >= 50:
        assert "ALERT" in text, text


def test_the_alert_gives_way_in_order() -> None:
    note = AlertNote("payment failures", "critical", 875.0, 2)
    parts = status_parts(Status(ConnState.LIVE), 1000.0, age=1, stale=False, interval=5.0,
                         alert=note)  # fmt: skip

    def at(width: int) -> str:
        return "|".join(c for c in fit(parts, width) if c)

    assert at(80) == "Live ●|ALERT payment failures 2m05s +2|updated 1s ago|every 5s"
    assert at(60) == "Live ●|ALERT payment failures 2m05s +2|updated 1s ago"
    assert at(50) == "Live ●|ALERT payment failures 2m05s +2|1s ago"
    assert at(41) == "Live ●|ALERT payment failures +2|1s ago"
    assert at(40) == "Live ●|ALERT payment failures +2|1s"
    assert at(30) == "Live ●|ALERT (3)|1s"
    assert at(20) == "Live ●|ALERT|1s"
    assert at(12) == "Live ●|!!|1s"


def test_snapshot_a_firing_critical_alert(snap_compare) -> None:  # type: ignore[no-untyped-def]
    """80x24: the critical row in red with !!, the warning row in yellow with !, the line
    naming the critical rule, firing for 2m05s, and one more."""
    app = make_app()
    app.alerts.__init__(rules())  # type: ignore[misc]
    app.alerts.observe(LATEST, NOW - 125)  # firing since 2m05s before the frozen clock
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed_live)


def test_snapshot_the_alert_list(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app = make_app()
    app.alerts.__init__(rules())  # type: ignore[misc]
    app.alerts.observe(LATEST, NOW - 125)
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed_live, press=["a"])


# --------------------------------------------------------------------------- from the file

#: $XDG_CONFIG_HOME for a test, with MetricsApp replaced by a recorder (test_config.py).
home = test_config.home


def test_the_files_rules_reach_the_monitor(home: Path) -> None:
    write_config(home, RULES)
    assert main([]) == 0
    handed = Recorder.seen["alerts"]
    assert [r.name for r in handed] == ["stuck payments", "any failure", "failures climbing"]
    assert handed == tuple(rules())


def test_a_rule_naming_an_unknown_metric_is_refused_at_start(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(home, RULES.replace('"transactions.failed"', '"transactions.faild"'))
    line = refused(capsys, [])
    assert line.startswith(
        f"{path}, line 11: alert #2 \"any failure\", key 'metric': unknown figure "
        "'transactions.faild' (figures: revenue.total, "
    ), line
    assert Recorder.seen == {}  # the monitor never started


def test_a_rule_without_a_name_is_placed_at_its_table(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(home, '\n[[alerts]]\nmetric = "transactions.failed"\nabove = 0\n')
    line = refused(capsys, [])
    assert line == f"{path}, line 2: alert #1, key 'name': missing: every rule needs a name"

"""Keys keep working after the pane goes below the minimum size and back (a tmux user's day).

The Pilot tests drive the app's own resize path; the pty test goes through the real terminal
driver (TIOCSWINSZ + SIGWINCH, as tmux's resize-window does), which Pilot bypasses.
"""

from __future__ import annotations

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot

from metrics_tui.app import MetricsApp
from metrics_tui.layout import MIN_HEIGHT, MIN_WIDTH
from metrics_tui.messages import ConnState
from metrics_tui.screens.help import HelpScreen
from metrics_tui.widgets.status import StatusLine

from .conftest import Pty, ServerHandle, connection_log, free_port, wait_until

BIG = (120, 40)
SMALL = (30, 10)  # below MIN_WIDTH x MIN_HEIGHT both ways, as in the report


def shows_too_small(app: MetricsApp) -> bool:
    """The notice has room on screen and the status line has none (display: none)."""
    dashboard = app.screen_stack[0]
    notice = dashboard.query_one("#too-small")
    return notice.region.area > 0 and dashboard.query_one(StatusLine).region.area == 0


async def shrink_and_grow(pilot: Pilot, small: tuple[int, int] = SMALL) -> None:
    app = pilot.app
    assert isinstance(app, MetricsApp)
    await pilot.resize_terminal(*small)
    await wait_until(lambda: shows_too_small(app), what="the too-small notice")
    w, h = small
    assert f"have {w}x{h}" in str(app.screen_stack[0].query_one("#too-small").render())
    await pilot.resize_terminal(*BIG)
    await wait_until(lambda: not shows_too_small(app), what="the dashboard back")


async def press_every_key(pilot: Pilot, seen: list[ConnState]) -> None:
    """p, r, ?, escape, ctrl+p, escape and q, each checked by its effect; ends with the exit."""
    app = pilot.app
    assert isinstance(app, MetricsApp)
    await pilot.press("p")
    await wait_until(lambda: app.paused, within=2, what="p to pause")
    assert "PAUSED" in str(app.status_line.render())
    assert app.status_line.region.area > 0
    await pilot.press("p")
    await wait_until(lambda: not app.paused, within=2, what="p to resume")
    seen.clear()
    await pilot.press("r")
    await wait_until(lambda: ConnState.CONNECTING in seen, within=2, what="r to reconnect")
    await pilot.press("question_mark")
    await wait_until(lambda: isinstance(app.screen, HelpScreen), within=2, what="? to open help")
    await pilot.press("escape")
    await wait_until(lambda: not isinstance(app.screen, HelpScreen), within=2, what="help closed")
    await pilot.press("ctrl+p")
    await wait_until(lambda: isinstance(app.screen, CommandPalette), within=2, what="palette")
    await pilot.press("escape")
    await wait_until(lambda: not isinstance(app.screen, CommandPalette), within=2, what="closed")
    await pilot.press("q")
    await wait_until(
        lambda: app._exit_renderables is not None or not app.is_running, within=2, what="q"
    )


async def live_app(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, MetricsApp)
    await wait_until(lambda: app.connected and app.latest is not None, what="live figures")


async def test_keys_work_after_too_small_and_back(server: ServerHandle) -> None:
    seen, hook = connection_log()
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=BIG, message_hook=hook) as pilot:
        await live_app(pilot)
        await shrink_and_grow(pilot)
        await press_every_key(pilot, seen)
    assert app.return_code == 0


async def test_keys_work_after_repeated_shrink_and_grow(server: ServerHandle) -> None:
    """Too narrow, too short, both, and one column/row short of the minimum, in a row."""
    seen, hook = connection_log()
    app = MetricsApp(server.url, animate=False)
    smalls = [SMALL, (MIN_WIDTH - 1, 40), (120, MIN_HEIGHT - 1), (1, 1), SMALL]
    async with app.run_test(size=BIG, message_hook=hook) as pilot:
        await live_app(pilot)
        for small in smalls:
            await shrink_and_grow(pilot, small)
        await press_every_key(pilot, seen)
    assert app.return_code == 0


@pytest.mark.parametrize(
    ("key", "modal", "shrinks"), [("question_mark", HelpScreen, 2), ("ctrl+p", CommandPalette, 1)]
)
async def test_modal_open_through_too_small_and_back(
    server: ServerHandle, key: str, modal: type, shrinks: int
) -> None:
    """Help (twice through, as in the report) and the command palette survive it, and close."""
    seen, hook = connection_log()
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=BIG, message_hook=hook) as pilot:
        await live_app(pilot)
        await pilot.press(key)
        await wait_until(lambda: isinstance(app.screen, modal), within=2, what="opened")
        for _ in range(shrinks):
            await shrink_and_grow(pilot)
        assert isinstance(app.screen, modal)
        await pilot.press("escape")
        await wait_until(lambda: not isinstance(app.screen, modal), within=2, what="closed")
        await press_every_key(pilot, seen)
    assert app.return_code == 0


async def test_keys_pressed_while_too_small(server: ServerHandle) -> None:
    """The notice says "q quits": p and ? work there too, and all of it survives growing back."""
    seen, hook = connection_log()
    app = MetricsApp(server.url, animate=False)
    async with app.run_test(size=BIG, message_hook=hook) as pilot:
        await live_app(pilot)
        await pilot.resize_terminal(*SMALL)
        await wait_until(lambda: shows_too_small(app), what="the too-small notice")
        await pilot.press("p")
        await wait_until(lambda: app.paused, within=2, what="p while too small")
        await pilot.press("question_mark")
        await wait_until(lambda: isinstance(app.screen, HelpScreen), within=2, what="help")
        await pilot.resize_terminal(*BIG)
        await wait_until(lambda: not shows_too_small(app), what="the dashboard back")
        await pilot.press("escape")
        await wait_until(lambda: not isinstance(app.screen, HelpScreen), within=2, what="closed")
        assert "PAUSED" in str(app.status_line.render())
        await pilot.press("p")
        await wait_until(lambda: not app.paused, within=2, what="resumed")
        await press_every_key(pilot, seen)
    assert app.return_code == 0


# ---------------------------------------------------------------------- a real terminal


#: Drawn by the dashboard only: not in the help text, the status line or the footer.
DASHBOARD = b"Transactions"


def test_q_quits_after_too_small_and_back_in_a_real_terminal() -> None:
    term = Pty("--url", f"ws://127.0.0.1:{free_port()}/ws/metrics", size=BIG)
    try:
        term.read_until(b"econnecting", within=20)  # up, and the feed is retrying
        for _ in range(2):
            term.resize(SMALL)
            term.read_until(b"have 30x10")
            term.resize(BIG)
            term.read_until(DASHBOARD)
        term.press(b"r")
        term.read_until(b"Reconnecting\xe2\x80\xa6")  # its notice
        term.press(b"?")
        term.read_until(b"metrics-tui help")
        # ? closes it too (escape is left to the Pilot tests: a lone ESC byte is held for the
        # parser's escape delay, and its frame cannot be told from help's in the byte stream).
        # The help screen is modal and swallows p, so PAUSED also proves that help has gone.
        term.press(b"?")
        term.press(b"p")
        term.read_until(b"PAUSED")
        term.press(b"q")
        assert term.wait_exit() == 0, "q did not end the monitor"
    finally:
        term.close()

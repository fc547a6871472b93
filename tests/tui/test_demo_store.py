"""``metrics-tui --demo`` writes to a temporary database unless --db is given, and says where."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from metrics_tui.app import MetricsApp

from .conftest import free_port


def run_in(cwd: Path, *args: str) -> tuple[int, str, str]:
    """``metrics-tui ARGS`` run in ``cwd``, without any METRICS_* settings of this shell."""
    done = subprocess.run(
        [sys.executable, "-m", "metrics_tui", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("METRICS_")},
    )
    return done.returncode, done.stdout, done.stderr


def test_demo_once_leaves_nothing_behind(tmp_path: Path) -> None:
    code, out, err = run_in(tmp_path, "--demo", "--once", "--json")
    assert code == 0, err
    assert json.loads(out)["revenue"]
    found = re.fullmatch(r"metrics-tui: demo data in (\S+), removed on exit\n", err)
    assert found, err
    assert not Path(found[1]).exists()
    assert list(tmp_path.iterdir()) == []


def test_demo_with_db_uses_it(tmp_path: Path) -> None:
    code, _, err = run_in(tmp_path, "--demo", "--db", "x.db", "--once", "--json")
    assert code == 0, err
    assert err == "metrics-tui: demo data in x.db\n"
    assert (tmp_path / "x.db").exists()
    assert not (tmp_path / "metrics.db").exists()


def test_db_needs_demo(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    code, _, err = run_in(tmp_path, "--url", url, "--db", "x.db", "--once")
    assert code == 2 and "--db needs --demo" in err
    assert list(tmp_path.iterdir()) == []


async def test_the_monitor_shows_the_notice() -> None:
    app = MetricsApp("ws://127.0.0.1:1/ws/metrics", connect=False, notice="Demo data in /x")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert [n.message for n in app._notifications] == ["Demo data in /x"]

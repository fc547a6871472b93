"""``metrics-server --demo`` keeps its fake revenue out of ./metrics.db, where a real server
started later in the same directory would show it as real."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

STARTUP = 15.0  # a cold interpreter on a loaded machine


def serve_demo(python: str, port: int, *args: str, env: dict[str, str], cwd: Path) -> str:
    """Run ``metrics-server --demo`` until it answers /healthz, stop it with SIGTERM, and
    return its stderr. While it runs, check the database it names holds the demo's events."""
    proc = subprocess.Popen(
        [python, "-m", "metrics_server", "--demo", "--port", str(port), *args],
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not answer /healthz in time")
            time.sleep(0.05)
        db, lines = "", []
        assert proc.stderr is not None
        for line in proc.stderr:  # the demo's first batch is in before /healthz answers
            lines.append(line)
            if found := re.search(r"db=(\S+)", line):
                db = found[1]
                break
        db_path = db if Path(db).is_absolute() else str(cwd / db)
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] > 0
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=10)
        assert proc.returncode == 0, rest
        return "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_uses_a_temporary_database_and_says_where(
    python, cli_env, tmp_path: Path, free_port: int
) -> None:
    err = serve_demo(python, free_port, env=cli_env, cwd=tmp_path)
    found = re.search(r"demo data goes to (\S+), removed on exit", err)
    assert found, err
    db = Path(found[1])
    assert db.parent != tmp_path
    assert not db.parent.exists()  # removed on exit, with its -wal and -shm
    assert list(tmp_path.iterdir()) == []  # no ./metrics.db


@pytest.mark.parametrize("how", ["--db", "METRICS_DB"])
def test_demo_with_db_keeps_its_data_there(
    python, cli_env, tmp_path: Path, free_port: int, how: str
) -> None:
    if how == "--db":
        err = serve_demo(python, free_port, "--db", "x.db", env=cli_env, cwd=tmp_path)
    else:
        env = {**cli_env, "METRICS_DB": "x.db"}
        err = serve_demo(python, free_port, env=env, cwd=tmp_path)
    assert "db=x.db" in err and "removed on exit" not in err
    assert (tmp_path / "x.db").exists()
    assert not (tmp_path / "metrics.db").exists()

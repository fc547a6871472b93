"""``metrics-server --demo`` keeps its fake revenue out of ./metrics.db, where a real server
started later in the same directory would show it as real."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bench._common import ServerProcess, block_until


def serve_demo(port: int, *args: str, env: dict[str, str], cwd: Path) -> str:
    """Run ``metrics-server --demo`` until it answers /healthz, stop it with SIGTERM, and
    return its stderr. While it runs, check the database it names holds the demo's events."""
    flags = ["--demo", "--port", str(port), *args]
    with ServerProcess(port, *flags, env=env, cwd=cwd) as server:
        server.wait_ready()
        found = block_until(lambda: re.search(r"db=(\S+)", server.stderr), what="db= logged")
        db_path = found[1] if Path(found[1]).is_absolute() else str(cwd / found[1])
        with sqlite3.connect(db_path) as conn:  # the demo's first batch is in before /healthz
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] > 0
        assert server.stop() == 0, server.stderr
        return server.stderr


def test_demo_uses_a_temporary_database_and_says_where(
    cli_env, tmp_path: Path, free_port: int
) -> None:
    err = serve_demo(free_port, env=cli_env, cwd=tmp_path)
    found = re.search(r"demo data goes to (\S+), removed on exit", err)
    assert found, err
    db = Path(found[1])
    assert db.parent != tmp_path
    assert not db.parent.exists()  # removed on exit, with its -wal and -shm
    assert list(tmp_path.iterdir()) == []  # no ./metrics.db


@pytest.mark.parametrize("how", ["--db", "METRICS_DB"])
def test_demo_with_db_keeps_its_data_there(
    cli_env, tmp_path: Path, free_port: int, how: str
) -> None:
    if how == "--db":
        err = serve_demo(free_port, "--db", "x.db", env=cli_env, cwd=tmp_path)
    else:
        env = {**cli_env, "METRICS_DB": "x.db"}
        err = serve_demo(free_port, env=env, cwd=tmp_path)
    assert "db=x.db" in err and "removed on exit" not in err
    assert (tmp_path / "x.db").exists()
    assert not (tmp_path / "metrics.db").exists()

"""``--store URL`` and ``--broker URL`` as a user meets them: what each URL means, and one
line (exit 2 for a malformed URL, 1 for a store that cannot be opened) when it is wrong."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from metrics_server.cli import parse_config
from metrics_server.store import open_store, parse_store_url
from metrics_server.store.base import StoreError

STARTUP = 15.0


def run(python: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "metrics_server", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=STARTUP,
    )


@pytest.mark.parametrize(
    ("url", "db", "store"),
    [
        ("sqlite:///metrics.db", "metrics.db", None),  # relative: to the working directory
        ("sqlite:///data/m.db", "data/m.db", None),
        ("sqlite:////var/lib/m.db", "/var/lib/m.db", None),  # a fourth slash: absolute
        ("sqlite:///with%20space.db", "with space.db", None),
        ("postgresql://u@db.example:5432/metrics", "metrics.db", "postgresql://u@db.example:5432/metrics"),
        ("postgres://u@db.example/metrics", "metrics.db", "postgres://u@db.example/metrics"),
    ],
)  # fmt: skip
def test_store_urls(url: str, db: str, store: str | None) -> None:
    config = parse_config(["--store", url])
    assert (config.db, config.store) == (db, store)


def test_db_is_an_alias_and_flags_beat_the_environment(monkeypatch) -> None:
    assert parse_config(["--db", "x.db"]).db == parse_config(["--store", "sqlite:///x.db"]).db
    monkeypatch.setenv("METRICS_STORE", "postgresql://u@h/d")
    monkeypatch.setenv("METRICS_DB", "ignored.db")
    assert parse_config([]).store == "postgresql://u@h/d"  # METRICS_STORE beats METRICS_DB
    assert (parse_config(["--db", "y.db"]).db, parse_config(["--db", "y.db"]).store) == (
        "y.db",
        None,
    )
    monkeypatch.delenv("METRICS_STORE")
    assert parse_config([]).db == "ignored.db"
    monkeypatch.setenv("METRICS_BROKER", "redis://r:6379/0")
    assert parse_config([]).broker == "redis://r:6379/0"
    assert parse_config(["--broker", "rediss://r:6380/1"]).broker == "rediss://r:6380/1"


def test_demo_on_postgresql_uses_no_temporary_file() -> None:
    config = parse_config(["--demo", "--store", "postgresql://u@h/d"])
    assert config.store == "postgresql://u@h/d" and config.db == "metrics.db"


@pytest.mark.parametrize(
    "args",
    [
        ["--store", "mysql://u@h/d"],
        ["--store", "metrics.db"],  # a path is --db's, or sqlite:///metrics.db
        ["--store", "sqlite://host/m.db"],
        ["--store", "sqlite:///"],
        ["--store", "postgresql://u@h:port/d"],
        ["--store", "postgresql://u@h:99999/d"],
        ["--broker", "http://r:6379"],
        ["--broker", "redis://r:notaport"],
        ["--store", "sqlite:///a.db", "--db", "b.db"],
    ],
)
def test_a_malformed_url_exits_2_in_one_line(python, cli_env, tmp_path, args) -> None:
    result = run(python, *args, env=cli_env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("metrics-server: error:")
    assert not list(tmp_path.iterdir())  # nothing made


def test_a_malformed_env_url_exits_2(python, cli_env, tmp_path) -> None:
    result = run(python, env={**cli_env, "METRICS_STORE": "redis://x"}, cwd=tmp_path)
    assert result.returncode == 2 and "METRICS_STORE" in result.stderr


def test_a_sqlite_url_makes_the_file_it_names(python, cli_env, tmp_path) -> None:
    """Proof by refusal: a second server on the same file (through --db) is turned away."""
    from metrics_server.store import SQLiteStore

    held = SQLiteStore(tmp_path / "sub" / "m.db")
    try:
        for url in ("sqlite:///sub/m.db", f"sqlite:///{tmp_path}/sub/m.db"):
            result = run(python, "--store", url, env=cli_env, cwd=tmp_path)
            assert result.returncode == 1 and "is in use" in result.stderr, result.stderr
    finally:
        held.close()


def test_an_unreachable_postgresql_is_one_line_and_exit_1(python, cli_env, tmp_path, free_port):
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port}/test"
    result = run(python, "--store", url, env=cli_env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot open PostgreSQL store" in lines[0] and f":{free_port}" in lines[0]
    assert "hunter2" not in result.stderr  # the password is never shown


def test_without_psycopg_the_error_names_the_extra(python, cli_env, tmp_path) -> None:
    shim = tmp_path / "shim" / "psycopg"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named psycopg')\n")
    env = {**cli_env, "PYTHONPATH": str(shim.parent)}
    result = run(python, "--store", "postgresql://u@127.0.0.1/d", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "metrics-server: the PostgreSQL store needs psycopg: pip install 'metrics-tui[scale]'"
    ]


def test_the_default_install_needs_no_scale_extra(python, cli_env, tmp_path) -> None:
    code = (
        "import sys, metrics_server.app, metrics_server.cli, metrics_tui.cli, metrics_tui.app\n"
        "from metrics_server.store import open_store\n"
        "open_store('sqlite:///m.db').close()\n"
        "extra = ('psycopg', 'psycopg_pool', 'redis')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in extra]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [python, "-c", code], env=cli_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_open_store_refuses_a_malformed_url() -> None:
    with pytest.raises(StoreError, match="unknown store"):
        open_store("ftp://x/y")
    assert parse_store_url("sqlite:///:memory:") == ("sqlite", ":memory:")


def test_print_config_leaves_out_the_store_password(python, cli_env, tmp_path) -> None:
    url = "postgresql://metrics:hunter2@db.example:5432/metrics"
    result = run(python, "--store", url, "--print-config", env=cli_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "# store: postgresql://metrics:***@db.example:5432/metrics" in result.stdout

"""The command line as a user meets it: flags, env vars, one-line errors, graceful signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench._common import ServerProcess, free_port, run_to_end
from metrics_server.cli import parse_config

# --------------------------------------------------------------------------- quick exits


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_exit_zero(cli_env, tmp_path, flag) -> None:
    result = run_to_end(flag, env=cli_env, cwd=tmp_path)
    assert result.returncode == 0
    assert "metrics-server" in result.stdout
    assert not (tmp_path / "metrics.db").exists()  # nothing opened for a question


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "abc"],
        ["--port", "70000"],
        ["--tz", "Mars/Base"],
        ["--interval", "-1"],
        ["--interval", "0"],
        ["--interval", "nan"],
        ["--history", "0"],
        ["--push-interval", "-0.5"],
        ["--no-such-flag"],
    ],
)
def test_bad_flag_exits_2_without_traceback(cli_env, tmp_path, args) -> None:
    result = run_to_end(*args, env=cli_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert args[0] in result.stderr  # says which flag is wrong


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("METRICS_PORT", "abc"),
        ("METRICS_TZ", "Mars/Base"),
        ("METRICS_INTERVAL", "-1"),
        ("METRICS_DEMO", "maybe"),
    ],
)
def test_bad_env_var_exits_2_without_traceback(cli_env, tmp_path, var, value) -> None:
    result = run_to_end(env={**cli_env, var: value}, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # one error line, naming the variable (not the flag the value never came from)
    assert f"error: environment variable {var}: " in result.stderr.splitlines()[-1]
    assert not (tmp_path / "metrics.db").exists()


def test_port_in_use_is_one_line_and_exit_1(cli_env, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_end(
            "--port", str(port), "--db", str(tmp_path / "m.db"), env=cli_env, cwd=tmp_path
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize("where", ["/proc/nope/x.db", "a-directory"])
def test_unusable_db_is_one_line_and_exit_1(cli_env, tmp_path, free_port, where) -> None:
    db = tmp_path if where == "a-directory" else Path(where)
    result = run_to_end("--port", str(free_port), "--db", str(db), env=cli_env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text", ["0", "0.0", "0.00", "0e0"])
def test_push_interval_zero_in_any_spelling(text) -> None:
    assert parse_config(["--push-interval", text]).push_interval == 0


@pytest.mark.parametrize(
    ("value", "on"),
    [
        *[("1", True), ("true", True), ("yes", True)],
        *[("", False), ("0", False), ("false", False), ("False", False), ("no", False)],
        ("off", False),
    ],
)
def test_demo_env_var(monkeypatch, value, on) -> None:
    monkeypatch.setenv("METRICS_DEMO", value)
    assert parse_config([]).demo is on


def test_flags_override_env_vars(monkeypatch) -> None:
    monkeypatch.setenv("METRICS_PORT", "4000")
    monkeypatch.setenv("METRICS_TZ", "Europe/Paris")
    config = parse_config(["--port", "4001"])
    assert (config.port, config.tz) == (4001, "Europe/Paris")


# --------------------------------------------------------------------------- running server


async def test_env_vars_configure_the_server(cli_env, tmp_path, free_port) -> None:
    db = tmp_path / "from-env.db"
    env = {**cli_env, "METRICS_PORT": str(free_port), "METRICS_DB": str(db)}
    env["METRICS_HISTORY"] = "2"
    env["METRICS_INTERVAL"] = "0.1"
    with ServerProcess(free_port, env=env, cwd=tmp_path) as server:
        await server.ready()
        assert db.exists()

        async def history_is_full() -> dict:
            while True:  # history fills at METRICS_INTERVAL; METRICS_HISTORY caps it
                async with connect(f"ws://127.0.0.1:{free_port}/ws/metrics") as ws:
                    history = json.loads(await ws.recv())
                if len(history["data"]) >= 2:
                    return history
                await asyncio.sleep(0.1)

        history = await asyncio.wait_for(history_is_full(), 5)
        assert len(history["data"]) == 2
        assert server.stop(within=5) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_shuts_down_gracefully(cli_env, tmp_path, free_port, sig) -> None:
    db = tmp_path / "m.db"
    args = ["--port", str(free_port), "--db", str(db), "--interval", "3600"]
    with ServerProcess(free_port, *args, env=cli_env, cwd=tmp_path) as server:
        await server.ready()
        base = f"ws://127.0.0.1:{free_port}"
        async with connect(f"{base}/ws/metrics") as sub, connect(f"{base}/ws/ingest") as prod:
            await sub.recv()  # history
            await sub.recv()  # current
            events = [{"type": "content_view", "contentId": f"c{i}"} for i in range(25)]
            await prod.send(json.dumps({"type": "events", "id": 1, "events": events}))
            assert json.loads(await prod.recv())["type"] == "ack"

            server.proc.send_signal(sig)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(sub.recv(), 5)
            assert sub.close_code == 1001
        assert server.stop(sig, within=5) == 0
        assert "Traceback" not in server.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 25


async def test_second_server_on_one_db_is_refused_until_the_first_dies(cli_env, tmp_path) -> None:
    """One line naming the file and the holder's PID, exit 1; ``kill -9`` leaves no stale lock."""
    db = tmp_path / "x.db"
    ports = [free_port(), free_port()]
    flags = ["--db", str(db)]
    with ServerProcess(
        ports[0], "--port", str(ports[0]), *flags, env=cli_env, cwd=tmp_path
    ) as first:
        await first.ready()
        refused = await asyncio.to_thread(
            run_to_end, "--port", str(ports[1]), *flags, env=cli_env, cwd=tmp_path
        )
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert str(db) in lines[0] and f"pid {first.pid}" in lines[0], lines[0]
        # SIGKILL: no clean-up runs, the kernel drops the lock
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    with ServerProcess(
        ports[1], "--port", str(ports[1]), *flags, env=cli_env, cwd=tmp_path
    ) as second:
        await second.ready()
        assert second.stop() == 0

"""The command line as a user meets it: flags, env vars, one-line errors, graceful signals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from metrics_server.cli import parse_config

STARTUP = 15.0  # a cold interpreter on a loaded machine


def run(python: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """A command expected to end by itself (help, version, refusals)."""
    return subprocess.run(
        [python, "-m", "metrics_server", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=STARTUP,
    )


async def spawn(
    python: str, *args: str, env: dict[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        python,
        "-m",
        "metrics_server",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_healthy(proc: asyncio.subprocess.Process, port: int) -> None:
    """Poll /healthz against a deadline; fail fast with stderr if the process died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP
    async with httpx.AsyncClient(timeout=1) as http:
        while True:
            if proc.returncode is not None:
                err = await proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"server exited {proc.returncode}: {err.decode()}")
            try:
                resp = await http.get(f"http://127.0.0.1:{port}/healthz")
                if resp.status_code == 200 and resp.json() == {"status": "ok"}:
                    return
            except httpx.TransportError:
                pass
            if loop.time() > deadline:
                pytest.fail("server did not answer /healthz in time")
            await asyncio.sleep(0.05)


async def reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


# --------------------------------------------------------------------------- quick exits


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_exit_zero(python, cli_env, tmp_path, flag) -> None:
    result = run(python, flag, env=cli_env, cwd=tmp_path)
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
def test_bad_flag_exits_2_without_traceback(python, cli_env, tmp_path, args) -> None:
    result = run(python, *args, env=cli_env, cwd=tmp_path)
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
def test_bad_env_var_exits_2_without_traceback(python, cli_env, tmp_path, var, value) -> None:
    result = run(python, env={**cli_env, var: value}, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # one error line, naming the variable (not the flag the value never came from)
    assert f"error: environment variable {var}: " in result.stderr.splitlines()[-1]
    assert not (tmp_path / "metrics.db").exists()


def test_port_in_use_is_one_line_and_exit_1(python, cli_env, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            python, "--port", str(port), "--db", str(tmp_path / "m.db"), env=cli_env, cwd=tmp_path
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize("where", ["/proc/nope/x.db", "a-directory"])
def test_unusable_db_is_one_line_and_exit_1(python, cli_env, tmp_path, free_port, where) -> None:
    db = tmp_path if where == "a-directory" else Path(where)
    result = run(python, "--port", str(free_port), "--db", str(db), env=cli_env, cwd=tmp_path)
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


async def test_env_vars_configure_the_server(python, cli_env, tmp_path, free_port) -> None:
    db = tmp_path / "from-env.db"
    env = {**cli_env, "METRICS_PORT": str(free_port), "METRICS_DB": str(db)}
    env["METRICS_HISTORY"] = "2"
    env["METRICS_INTERVAL"] = "0.1"
    proc = await spawn(python, env=env, cwd=tmp_path)
    try:
        await wait_healthy(proc, free_port)
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
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        await reap(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_shuts_down_gracefully(python, cli_env, tmp_path, free_port, sig) -> None:
    db = tmp_path / "m.db"
    args = ["--port", str(free_port), "--db", str(db), "--interval", "3600"]
    proc = await spawn(python, *args, env=cli_env, cwd=tmp_path)
    try:
        await wait_healthy(proc, free_port)
        base = f"ws://127.0.0.1:{free_port}"
        async with connect(f"{base}/ws/metrics") as sub, connect(f"{base}/ws/ingest") as prod:
            await sub.recv()  # history
            await sub.recv()  # current
            events = [{"type": "content_view", "contentId": f"c{i}"} for i in range(25)]
            await prod.send(json.dumps({"type": "events", "id": 1, "events": events}))
            assert json.loads(await prod.recv())["type"] == "ack"

            proc.send_signal(sig)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(sub.recv(), 5)
            assert sub.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert "Traceback" not in stderr
    finally:
        await reap(proc)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 25


async def test_second_server_on_one_db_is_refused_until_the_first_dies(
    python, cli_env, tmp_path
) -> None:
    """One line naming the file and the holder's PID, exit 1; ``kill -9`` leaves no stale lock."""
    db = tmp_path / "x.db"
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    first = await spawn(python, "--port", str(ports[0]), "--db", str(db), env=cli_env, cwd=tmp_path)
    second: asyncio.subprocess.Process | None = None
    try:
        await wait_healthy(first, ports[0])
        refused = await asyncio.to_thread(
            run, python, "--port", str(ports[1]), "--db", str(db), env=cli_env, cwd=tmp_path
        )
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert str(db) in lines[0] and f"pid {first.pid}" in lines[0], lines[0]

        first.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        await first.wait()
        second = await spawn(
            python, "--port", str(ports[1]), "--db", str(db), env=cli_env, cwd=tmp_path
        )
        await wait_healthy(second, ports[1])
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 5) == 0
    finally:
        await reap(first)
        if second is not None:
            await reap(second)

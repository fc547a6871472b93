"""The command line, run as a user would: a subprocess against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal

from metrics_protocol.wire import decode_data, encode_data, loads
from metrics_tui.cli import main

from .conftest import TOKEN, Cert, ServerHandle, free_port
from .test_app_live import EVENTS

SEED_SHAPE = {
    "revenue": {"total", "today", "thisWeek", "thisMonth"},
    "activeUsers": {"current", "today", "peak24h"},
    "transactions": {"total", "pending", "completed", "failed"},
    "content": {"totalViews", "totalPurchases", "conversionRate"},
}


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metrics_tui",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_once_json_prints_the_seed_schema(server: ServerHandle) -> None:
    await server.service.ingest(EVENTS)
    code, out, err = await run_cli("--once", "--json", "--url", server.url)
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {*SEED_SHAPE, "timestamp"}
    for group, keys in SEED_SHAPE.items():
        assert set(data[group]) == keys
    exact = loads(out)
    assert exact["revenue"]["total"] == Decimal("1212.75")
    assert exact["transactions"]["failed"] == 1
    assert out.strip() == encode_data(decode_data(exact))


async def test_once_table_shows_currency(server: ServerHandle) -> None:
    await server.service.ingest(EVENTS)
    code, out, _ = await run_cli("--once", env={"METRICS_WS_URL": server.url, "NO_COLOR": "1"})
    assert code == 0
    assert "$1,212.75" in out
    assert "Transactions" in out and "failed" in out


async def test_once_against_dead_url_exits_1_with_one_line() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    code, out, err = await run_cli("--once", "--url", url)
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert url in err


async def test_once_with_token_from_flag_or_env(token_server: ServerHandle) -> None:
    await token_server.service.ingest(EVENTS)
    code, out, err = await run_cli("--once", "--json", "--url", token_server.url, "--token", TOKEN)
    assert code == 0, err
    assert loads(out)["revenue"]["total"] == Decimal("1212.75")
    code, out, err = await run_cli(
        "--once", "--json", "--url", token_server.url, env={"METRICS_TOKEN": TOKEN}
    )
    assert code == 0, err


async def test_once_refused_token_exits_1_with_one_line(token_server: ServerHandle) -> None:
    for extra in (["--token", "wrong"], []):
        code, out, err = await run_cli("--once", "--url", token_server.url, *extra)
        assert code == 1, extra
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert "unauthorized" in err.lower()
        assert "wrong" not in err  # the token itself is never echoed


async def test_once_over_tls(tls_server: ServerHandle, cert: Cert) -> None:
    once = ("--once", "--json", "--url", tls_server.url)
    env = {"METRICS_TOKEN": TOKEN}
    code, out, err = await run_cli(*once, "--cafile", cert.certfile, env=env)
    assert code == 0, err
    assert err == "" and set(json.loads(out)) == {*SEED_SHAPE, "timestamp"}
    code, _, err = await run_cli(*once, env={**env, "METRICS_CAFILE": cert.certfile})
    assert code == 0, err
    code, _, err = await run_cli(*once, "--insecure", env=env)
    assert code == 0, err
    assert "not verified" in err and "--insecure" in err
    code, _, err = await run_cli(*once, env=env)
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "certificate verify failed" in err


def test_usage_errors_exit_2(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wss = "wss://127.0.0.1:1/ws/metrics"
    for argv in (
        ["--json"],
        ["--url", "http://x"],
        ["--url", wss, "--cafile", str(tmp_path / "missing.pem")],
        ["--url", wss, "--cafile", __file__],  # not a certificate
        ["--url", wss, "--cafile", __file__, "--insecure"],
        ["--url", "ws://127.0.0.1:1/ws/metrics", "--insecure"],
        ["--demo", "--insecure"],
        ["--max-retries", "-1"],
        ["--theme", "no-such-theme"],
        ["--bogus"],
    ):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 2, argv
        else:
            raise AssertionError(f"{argv} should be a usage error")
    assert capsys.readouterr().err


def test_version_and_help(capsys) -> None:  # type: ignore[no-untyped-def]
    for argv in (["--version"], ["--help"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "metrics-tui" in out and "--max-retries" in out and "--demo" in out

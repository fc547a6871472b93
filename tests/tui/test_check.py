"""``metrics-tui --once --check``: a monitoring plugin against a real server.

Each exit code as Nagios and Icinga read it (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), one line
on stdout with performance data, nothing on stderr, quick when there is no server.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from metrics_protocol.figures import SCHEMA
from metrics_tui.alerts import perf_label

from .conftest import TOKEN, ServerHandle, free_port
from .test_cli import run_cli

RULES = """
[[alerts]]
name = "payment failures"
metric = "transactions.failed"
above = 0
severity = "critical"

[[alerts]]
name = "pending pile-up"
metric = "transactions.pending"
above = 0
for = "5m"

[[alerts]]
name = "failures climbing"
metric = "rate(transactions.failed, 5m)"
above = 3
"""

#: label=value[UOM];warn;crit;min;max, one item per figure.
PERF_ITEM = re.compile(r"^[a-z0-9_]+=-?\d+(\.\d+)?%?(;[^; ]*){0,4}$")


def pending(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "transaction", "id": f"p{i}", "status": "pending", "amount": "2.50", "userId": "u"}
        for i in range(n)
    ]


def assert_plugin_line(out: str, status: str) -> str:
    """One line, ``METRICS <STATUS> - text | perfdata`` with an item per figure."""
    assert out.endswith("\n") and out.count("\n") == 1, out
    head, bar, perf = out.strip().partition(" | ")
    assert head.startswith(f"METRICS {status} - "), out
    assert bar and "|" not in head and "|" not in perf, out
    items = perf.split(" ")
    assert [i.partition("=")[0] for i in items] == [perf_label(f) for f in SCHEMA.figures]
    assert all(PERF_ITEM.match(i) for i in items), items
    return head


async def check(tmp_path: Path, *args: str, rules: str = RULES) -> tuple[int, str]:
    """``--check`` with the rules in a configuration file, as a plugin would be run."""
    config = tmp_path / "config.toml"
    config.write_text(rules)
    code, out, err = await run_cli("--config", str(config), *args)
    assert err == "", err
    return code, out


async def test_ok_with_perfdata_and_no_stderr(server: ServerHandle) -> None:
    await server.service.ingest([{"type": "user_activity", "userId": "u1"}])
    code, out, err = await run_cli("--once", "--check", "--url", server.url)
    assert (code, err) == (0, "")
    head = assert_plugin_line(out, "OK")
    assert head == "METRICS OK - no alert rules"
    assert "active_users_current=1" in out and "revenue_total=0.00" in out
    # --check alone implies --once.
    code, out2, err = await run_cli("--check", "--url", server.url)
    assert (code, err) == (0, "") and out2.partition(" | ")[0] == head


async def test_ok_warning_and_critical_from_the_rules(server: ServerHandle, tmp_path: Path) -> None:
    code, out = await check(tmp_path, "--check", "--url", server.url)
    assert code == 0
    head = assert_plugin_line(out, "OK")
    assert head == (
        "METRICS OK - 2 rules ok; 1 rate/stale rule skipped (they need the live monitor)"
    )

    await server.service.ingest(pending(2))
    code, out = await check(tmp_path, "--check", "--url", server.url)
    assert code == 1
    head = assert_plugin_line(out, "WARNING")
    # for = "5m" is left to the scheduler's retries: one snapshot cannot show it.
    assert head.startswith(
        "METRICS WARNING - pending pile-up (warning): transactions.pending = 2 (> 0)"
    )
    assert "transactions_pending=2;0" in out  # the warning threshold as a Nagios range

    await server.service.ingest([{"type": "transaction", "id": "p0", "status": "failed"}])
    code, out = await check(tmp_path, "--once", "--check", "--url", server.url)
    assert code == 2
    head = assert_plugin_line(out, "CRITICAL")
    assert head.startswith(
        "METRICS CRITICAL - payment failures: transactions.failed = 1 (> 0); pending pile-up"
    )
    assert "transactions_failed=1;;0" in out


async def test_unknown_when_nothing_listens_and_quick() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    started = time.monotonic()
    code, out, err = await run_cli("--once", "--check", "--url", url, "--timeout", "2")
    assert (code, err) == (3, "")
    assert out.count("\n") == 1 and "|" not in out
    assert out.startswith(f"METRICS UNKNOWN - cannot get metrics from {url}: ")
    assert "refused" in out
    assert time.monotonic() - started < 10


async def test_unknown_when_the_token_is_refused(token_server: ServerHandle) -> None:
    for extra in ([], ["--token", "wrong"]):
        code, out, err = await run_cli("--check", "--url", token_server.url, *extra)
        assert (code, err) == (3, ""), out
        assert out.startswith("METRICS UNKNOWN - ") and "check --token" in out
        assert "wrong" not in out
    code, out, err = await run_cli("--check", "--url", token_server.url, "--token", TOKEN)
    assert (code, err) == (0, "")
    assert_plugin_line(out, "OK")


@pytest.mark.parametrize(
    "args",
    [
        ("--check", "--json"),
        ("--check", "--timeout", "soon"),
        ("--check", "--url", "http://x"),
        ("--check", "--no-such-flag"),
    ],
)
async def test_a_usage_error_is_unknown_on_stdout(args: tuple[str, ...]) -> None:
    code, out, err = await run_cli(*args)
    assert (code, err) == (3, "")
    assert out.startswith("METRICS UNKNOWN - metrics-tui: ") and out.count("\n") == 1, out


async def test_a_named_server_from_the_file(server: ServerHandle, tmp_path: Path) -> None:
    """``metrics-tui --check prod``: the server and the rules from one file."""
    rules = RULES + f'\n[servers.prod]\nurl = "{server.url}"\n'
    await server.service.ingest([{"type": "transaction", "id": "f", "status": "failed",
                                  "amount": "1.00", "userId": "u"}])  # fmt: skip
    code, out = await check(tmp_path, "--check", "prod", rules=rules)
    assert code == 2
    assert_plugin_line(out, "CRITICAL")


async def test_a_bad_rule_is_unknown_with_its_line(tmp_path: Path) -> None:
    bad = RULES.replace('metric = "transactions.pending"', 'metric = "transactions.pendng"')
    code, out = await check(tmp_path, "--check", rules=bad)
    assert code == 3 and out.count("\n") == 1
    assert out.startswith(
        f"METRICS UNKNOWN - metrics-tui: {tmp_path / 'config.toml'}, line 10: "
        "alert #2 \"pending pile-up\", key 'metric': unknown figure 'transactions.pendng'"
    ), out

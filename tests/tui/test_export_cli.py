"""``metrics-tui export`` as a user runs it: a subprocess against a server that answers ranges."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import pty
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from metrics_protocol.wire import HISTORY_PATH, RANGE_CSV_COLUMNS, decode_range, loads

from .conftest import free_port, history_requests

NOVEMBER = ("--from", "2026-11-01", "--to", "2026-12-01", "--step", "1d")


async def export(*args: str, stderr: int | None = None) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``metrics-tui export ARGS`` (stderr to ``stderr`` when
    given: then the returned stderr is empty)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    env["METRICS_TUI_CONFIG"] = ""  # no configuration file of the machine's
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metrics_tui",
        "export",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), (err or b"").decode()


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_a_month_by_day_to_stdout(range_server: Any) -> None:
    code, out, err = await export("--url", range_server.url, *NOVEMBER)
    assert code == 0 and err == ""
    table = rows(out)
    assert out.splitlines()[0] == ",".join(RANGE_CSV_COLUMNS)
    assert [r["start"][:10] for r in table] == [f"2026-11-{d:02d}" for d in range(1, 31)]
    assert all(r["start"].endswith("+01:00") for r in table)  # Paris days, offset written
    assert all(len(r["revenue"].rsplit(".", 1)[1]) == 2 for r in table)
    assert history_requests(range_server) == 1  # one request over REST
    # Byte for byte what the server itself writes for that range.
    async with httpx.AsyncClient() as http:
        params = {"from": "2026-11-01", "to": "2026-12-01", "step": "1d", "format": "csv"}
        theirs = await http.get(range_server.http_url + HISTORY_PATH, params=params)
    assert out == theirs.text


async def test_piped_and_to_a_file_are_the_same(range_server: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "november.csv"
    target.parent.mkdir()
    code, piped, err = await export("--url", range_server.url, *NOVEMBER)
    assert code == 0
    code, out, err = await export("--url", range_server.url, *NOVEMBER, "-o", str(target))
    assert code == 0 and out == "" and err == ""
    assert target.read_bytes().decode() == piped
    assert os.listdir(target.parent) == ["november.csv"]  # no temporary file left


async def test_json_holds_the_same_exact_points(range_server: Any) -> None:
    code, out, _ = await export("--url", range_server.url, *NOVEMBER, "--format", "json")
    assert code == 0
    answer = decode_range(loads(out))
    assert (answer.start.isoformat(), answer.end.isoformat(), answer.step, answer.tz) == (
        "2026-11-01T00:00:00+01:00",
        "2026-12-01T00:00:00+01:00",
        "1d",
        "Europe/Paris",
    )
    _, text, _ = await export("--url", range_server.url, *NOVEMBER)
    for row, p in zip(rows(text), answer.points, strict=True):
        assert Decimal(row["revenue"]) == p.revenue
        assert datetime.fromisoformat(row["start"]) == p.start
    assert json.loads(out)["points"][0]["revenue"] == float(answer.points[0].revenue)


async def test_a_long_range_comes_in_pages(range_server: Any) -> None:
    """Ten days by the minute (with the night Paris leaves summer time): 14,460 buckets in
    requests of at most 5,000, joined without a gap or a repeat."""
    args = ("--url", range_server.url, "--from", "2026-10-20", "--to", "2026-10-30", "--step", "1m")
    code, out, err = await export(*args)
    assert code == 0 and err == ""  # piped: no progress bar
    starts = [datetime.fromisoformat(r["start"]) for r in rows(out)]
    assert len(starts) == 10 * 1440 + 60
    assert len(set(starts)) == len(starts) and starts == sorted(starts)
    assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(starts))
    # The server refuses more than 5,000 points a request (400): three pages answered.
    assert history_requests(range_server) == 3 and history_requests(range_server, 400) == 0


async def test_a_terminal_gets_a_progress_bar(range_server: Any) -> None:
    args = ("--url", range_server.url, "--from", "2026-10-20", "--to", "2026-10-30", "--step", "1m")
    leader, follower = pty.openpty()
    screen = bytearray()
    loop = asyncio.get_running_loop()

    def drain() -> None:
        try:
            screen.extend(os.read(leader, 65536))
        except OSError:
            loop.remove_reader(leader)

    loop.add_reader(leader, drain)
    try:
        code, out, _ = await export(*args, stderr=follower)
    finally:
        os.close(follower)
        await asyncio.sleep(0.05)
        loop.remove_reader(leader)
        os.close(leader)
    assert code == 0
    assert len(rows(out)) == 10 * 1440 + 60  # the data itself is untouched
    drawn = screen.decode(errors="replace")
    assert "points" in drawn and "/14460" in drawn  # rich's bar: done/expected


async def test_server_down_is_exit_1_with_one_line() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/metrics"
    code, out, err = await export("--url", url, *NOVEMBER)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("metrics-tui export: cannot get the range from")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "2026-11-01", "--to", "2026-12-01"), "--step is required"),
        (("--to", "2026-12-01", "--step", "1d"), "--from is required"),
        ((*NOVEMBER[:4], "--step", "2d"), "not a step: '2d'"),
        (("--from", "2026-12-01", "--to", "2026-11-01", "--step", "1d"), "--from must be before"),
        (("--from", "2026-11-31", "--to", "2026-12-01", "--step", "1d"), "not a date"),
        ((*NOVEMBER, "--format", "xml"), "not a format"),
        ((*NOVEMBER, "-o", "/nonexistent/dir/out.csv"), "no such directory"),
    ],
)
async def test_bad_arguments_are_exit_2(
    range_server: Any, args: tuple[str, ...], says: str
) -> None:
    code, out, err = await export("--url", range_server.url, *args)
    assert code == 2 and out == "" and says in err
    assert history_requests(range_server) == 0  # refused before asking


async def test_a_range_the_server_refuses_is_exit_2(range_server: Any) -> None:
    """The server's reason, in one line (its ranges start in 1970)."""
    args = ("--from", "1960-01-01", "--to", "1960-02-01", "--step", "1d")
    code, out, err = await export("--url", range_server.url, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "'from' must be from 1970-01-01" in err
    assert history_requests(range_server, 400) == 1


async def test_the_monitor_refuses_an_export_dir_that_is_not_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metrics_tui",
        "--export-dir",
        str(tmp_path / "missing"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "METRICS_TUI_CONFIG": ""},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2 and out == b""
    assert f"--export-dir: not a directory: '{tmp_path / 'missing'}'" in err.decode()

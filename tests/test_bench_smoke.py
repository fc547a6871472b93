"""The benches in bench/, run with tiny sizes so that they keep working. No timing targets here
(the full runs are separate commands, see docs/PERFORMANCE.md), but each bench's own invariants:
without them its figures mean nothing (every subscriber got the updates, acked == stored, ...)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import (
    _common,
    fanout,
    history,
    ingest,
    latency,
    memory,
    message_size,
    monitor,
    scaleout,
    slow_subscriber,
    snapshot,
    soak,
)


def test_percentile_and_machine() -> None:
    assert _common.percentile([3, 1, 2, 4], 50) == 2
    assert _common.percentile([1.0], 99) == 1.0
    assert math.isnan(_common.percentile([], 50))
    m = _common.machine()
    assert int(m["nproc"]) >= 1 and m["python"].count(".") == 2


def test_message_size() -> None:
    row = message_size.run(20, verbose=False)
    assert 300 < row["message_bytes"] < 2048
    assert row["wire_deflate_mean"] < row["wire_plain_mean"]


def test_fanout() -> None:
    rows = fanout.run((20,), interval=0.2, window=0.5, windows=1, settle=0.2, verbose=False)
    assert rows[0]["open_srv"] == rows[0]["open_ref"] == 20
    # Costs are per frame received: every subscriber got updates from both servers (0.5 s at
    # 5 updates a second: two or three each).
    assert rows[0]["frames_srv"] >= 2 * 20 and rows[0]["frames_ref"] >= 2 * 20, rows[0]


def test_memory() -> None:
    out = memory.run(30, settle=0.5, verbose=False)
    assert {"metrics-server_kb", "ref-none_kb", "ref-deflate_kb"} <= out.keys()
    assert out["wire_deflate"] < out["wire_plain"]


def test_latency() -> None:
    out = latency.run(subscribers=5, rate=200, batch=20, duration=0.4, rounds=1, verbose=False)
    for res in out.values():
        # Every subscriber got every batch's figures. (From the ack, a message that came
        # first counts as 0 ms: most do at this rate, so p50 may be 0.)
        assert res["n"] > 0 and res["missing"] == 0 and res["p99"] >= res["p50"]


def test_ingest() -> None:
    out = ingest.run(duration=0.4, rounds=1, producers=2, single=False, verbose=False)
    assert out["eps"] > 0 and out["ref_eps"] > 0
    assert out["stored"] == out["acked"] > 0  # every acknowledged event is on disk


def test_snapshot() -> None:
    out = snapshot.run(10_000, 100_000, blocks=3, calls=20, rest_calls=5, verbose=False)
    assert out["small_us"] > 0 and out["big_us"] > 0 and out["rest_big_p50_us"] > 0


def test_history() -> None:
    out = history.run(2_000, 20_000, blocks=2, calls=2, rounds=3, verbose=False)
    assert out["30dat1d_big_us"] > 0 and out["24hat1m_http_big_us"] > 0
    assert out["backfill_big_s"] > 0


@pytest.mark.timeout(60)
def test_slow_subscriber() -> None:
    out = slow_subscriber.run(subscribers=3, duration=0.5, rounds=1, verbose=False)
    # The others got every message, with and without the client that stopped reading.
    assert out["alone_missing"] == out["stuck_missing"] == 0, out
    assert 0 < out["alone_p50"] <= out["alone_p99"] and 0 < out["stuck_p50"] <= out["stuck_p99"]
    assert out["pushed_mb"] > 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_monitor(capsys: pytest.CaptureFixture[str]) -> None:
    out = monitor.run(window=0.5, settle=0.2)  # raises unless both apps drew their figures
    assert 0 < out["first_figures_s"] < 20 and 0 < out["ref_first_paint_s"] < 20
    assert 20 < out["rss_mb"] < 1000, out  # a Python process with Textual in it
    lines = capsys.readouterr().out
    for figure in ("CPU over", "RSS: monitor", "first figures on screen"):
        assert figure in lines, lines


async def test_soak(capsys: pytest.CaptureFixture[str]) -> None:
    """A few seconds of it: its RSS verdict needs minutes, but not what it checks on the way."""
    await soak.run(subscribers=10, rate=100, duration=3)
    lines = capsys.readouterr().out
    assert "every subscriber got every message: yes" in lines, lines
    assert "every subscriber saw the final totalViews: True" in lines, lines
    assert "errors: 0; server exit code 0" in lines, lines
    cut = re.search(r"(\d+) cut off by the server", lines)
    assert cut and int(cut[1]) > 0, lines  # the ping flooder was, at least once


def test_ingest_on_postgres(postgres) -> None:
    out = ingest.run_pg(postgres.url, duration=0.4, rounds=1, producers=2, verbose=False)
    assert out["eps"] > 0 and out["copy_eps"] > 0 and out["many_eps"] > 0
    assert out["stored"] == out["acked"] > 0  # every acknowledged event is committed


def test_snapshot_on_postgres(postgres) -> None:
    out = snapshot.run(
        10_000, 30_000, blocks=2, calls=10, rest_calls=3, store=postgres.url, verbose=False
    )
    assert out["small_us"] > 0 and out["big_us"] > 0 and out["rest_big_p50_us"] > 0


def test_history_on_postgres(postgres) -> None:
    out = history.run(2_000, 20_000, blocks=2, calls=2, rounds=3, store=postgres.url, verbose=False)
    assert out["30dat1d_big_us"] > 0 and out["24hat1m_http_big_us"] > 0
    assert out["backfill_big_s"] > 0


def test_scaleout(postgres, redis_url) -> None:
    """One server and two behind one private Redis hold a handful of subscribers: every
    subscriber got every broadcast (a step with a missing receipt would not count)."""
    held = scaleout.capacity(postgres.url, "redis-server", {1: [10], 2: [20]}, 10.0, 0.5)
    assert held == {1: 10, 2: 20}


def test_scaleout_cpu_quota(postgres, redis_url) -> None:
    """``--cpu-quota``: a process placed is in a cgroup of its own with that quota, the climb
    runs with each server capped, and every cgroup is gone afterwards."""
    try:
        quota = scaleout.CpuQuota(0.5)
    except scaleout.CgroupUnavailable as e:
        pytest.skip(str(e))
    before = set(quota.root.glob("metrics-bench-*"))
    with quota, subprocess.Popen(["sleep", "30"]) as proc:
        group = quota.place(proc.pid)
        assert f"/{group.name}\n" in Path(f"/proc/{proc.pid}/cgroup").read_text()
        limit = "cpu.max" if quota.v2 else "cpu.cfs_quota_us"
        assert (group / limit).read_text().split()[0] == "50000"
        assert scaleout.throttling(group)[0] >= 0
        proc.kill()
    assert not group.exists()
    held = scaleout.capacity(postgres.url, "redis-server", {1: [10], 2: [20]}, 10.0, 0.5, 0.5)
    assert held == {1: 10, 2: 20}
    assert set(quota.root.glob("metrics-bench-*")) == before


# ---- --baseline: the code of another src/ tree, driven by the same bench in the same run (here
# this checkout's own src/, given as a path: the subprocesses take it from PYTHONPATH)

SRC = str(_common.ROOT / "src")


def test_memory_baseline() -> None:
    out = memory.run(20, settle=0.3, baseline=SRC, verbose=False)
    assert out["baseline_kb"] > 0 and out["metrics-server_kb"] > 0


def test_latency_baseline() -> None:
    out = latency.run(
        subscribers=3, rate=200, batch=20, duration=0.4, rounds=1, baseline=SRC, verbose=False
    )
    for push in (0.25, 0.0):
        for res in (out[push], out["baseline", push]):
            assert res["n"] > 0 and res["missing"] == 0, res


def test_snapshot_baseline() -> None:
    out = snapshot.run(
        10_000, 30_000, blocks=2, calls=10, rest_calls=3, baseline=SRC, verbose=False
    )
    assert out["base_small_us"] > 0 and out["base_big_us"] > 0
    assert out["base_rest_small_p50_us"] > 0 and out["base_rest_big_p50_us"] > 0


def test_message_size_in_another_tree() -> None:
    row = _common.run_in_tree(SRC, "bench.message_size", "--tree-side", "20")
    assert row == message_size.run(20, verbose=False)


@pytest.mark.timeout(60)
def test_slow_subscriber_baseline() -> None:
    out = slow_subscriber.run(subscribers=3, duration=0.5, rounds=1, baseline=SRC, verbose=False)
    assert out["baseline_alone_missing"] == out["baseline_stuck_missing"] == 0, out
    assert out["baseline_alone_p99"] > 0 and out["baseline_stuck_p99"] > 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_monitor_baseline() -> None:
    # 2 s: at least two updates, each several clock ticks of CPU, so an idle window never reads 0.
    out = monitor.run(window=2.0, settle=0.2, baseline=SRC, verbose=False)
    assert 0 < out["base_first_figures_s"] < 20 and 20 < out["base_rss_mb"] < 1000, out
    assert out["base_cpu_ratio"] > 0

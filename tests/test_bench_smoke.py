"""The benches in bench/, run with tiny sizes so that they keep working (no timing targets here:
the full runs are separate commands, see docs/PERFORMANCE.md)."""

from __future__ import annotations

import math
import shutil

import pytest

from bench import (
    _common,
    fanout,
    ingest,
    latency,
    memory,
    message_size,
    monitor,
    slow_subscriber,
    snapshot,
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
    assert rows[0]["srv_us"] >= 0 and rows[0]["ref_us"] >= 0


def test_memory() -> None:
    out = memory.run(30, settle=0.5, verbose=False)
    assert {"metrics-server_kb", "ref-none_kb", "ref-deflate_kb"} <= out.keys()
    assert out["wire_deflate"] < out["wire_plain"]


def test_latency() -> None:
    out = latency.run(subscribers=5, rate=200, batch=20, duration=0.4, rounds=1, verbose=False)
    for res in out.values():
        assert res["n"] > 0 and res["missing"] == 0 and res["p99"] >= res["p50"] >= 0


def test_ingest() -> None:
    out = ingest.run(duration=0.4, rounds=1, producers=2, single=False, verbose=False)
    assert out["eps"] > 0 and out["ref_eps"] > 0


def test_snapshot() -> None:
    out = snapshot.run(10_000, 100_000, blocks=3, calls=20, rest_calls=5, verbose=False)
    assert out["small_us"] > 0 and out["big_us"] > 0 and out["rest_big_p50_us"] > 0


@pytest.mark.timeout(60)
def test_slow_subscriber() -> None:
    out = slow_subscriber.run(subscribers=3, duration=0.5, rounds=1, verbose=False)
    assert out["alone_p99"] >= 0 and out["stuck_p99"] >= 0 and out["pushed_mb"] > 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_monitor() -> None:
    out = monitor.run(window=0.5, settle=0.2, verbose=False)
    assert out["first_figures_s"] > 0 and out["rss_mb"] > 0 and out["cpu_ratio"] >= 0

"""Start-up never dies on a stored row: a row that cannot count is named and skipped, and a
counter no figure can be trusted with stops the server with one line and exit code 1.

The databases are written with sqlite3 directly, the way earlier versions wrote them: one
event dated 0001-01-01T00:00:00Z left a revenue bucket with no calendar day in New York (every
later start died with a traceback), and 923 batches of huge amounts left a REAL counter."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from metrics_server.store import SQLiteStore

GO_ZERO_TIME = -62135596800.0  # 0001-01-01T00:00:00Z


def write_rows(db: Path, *statements: tuple[str, tuple]) -> None:
    SQLiteStore(db).close()  # the schema, as a server would create it
    with sqlite3.connect(db) as conn:
        for sql, args in statements:
            conn.execute(sql, args)


def test_a_poisoned_revenue_bucket_is_named_and_skipped(run_cli, db_path: Path) -> None:
    write_rows(
        db_path,
        # What one {"ts":"0001-01-01T00:00:00Z"} completed transaction of 5.00 left behind.
        (
            "INSERT INTO events (ts, type, txn_id, status, amount_cents)"
            " VALUES (?, 'transaction', 'x', 'completed', 500)",
            (GO_ZERO_TIME,),
        ),
        ("INSERT INTO transactions VALUES ('x', 'completed', 500, NULL, NULL, ?)", (GO_ZERO_TIME,)),
        ("UPDATE counters SET value = 1 WHERE name IN ('txn_total', 'completed')", ()),
        ("UPDATE counters SET value = 500 WHERE name = 'revenue_cents'", ()),
        ("INSERT INTO revenue_buckets VALUES (?, 500)", (int(GO_ZERO_TIME // 900),)),
        # And a history row that is not a snapshot.
        ("INSERT INTO history (ts, data) VALUES (0, 'not json')", ()),
    )
    srv = run_cli("--tz", "America/New_York").wait_ready()
    data = httpx.get(srv.url("/api/v1/analytics/realtime-metrics", "http"), timeout=5).json()
    assert data["data"]["revenue"]["total"] == 5.0  # the total keeps it: it was a sale
    assert data["data"]["revenue"]["thisMonth"] == 0.0
    assert data["data"]["transactions"]["completed"] == 1
    assert srv.stop() == 0
    lines = srv.stderr.splitlines()
    assert "Traceback" not in srv.stderr, srv.stderr
    bucket = [line for line in lines if "revenue bucket -69039552" in line]
    assert len(bucket) == 1 and "WARNING" in bucket[0], srv.stderr
    assert "no calendar day in America/New_York" in bucket[0]
    assert any("history row 1 of 1" in line for line in lines), srv.stderr


def test_a_counter_past_64_bits_refuses_start_with_one_line(run_cli, db_path: Path) -> None:
    # SQLite turned the sum into a REAL when it left the 64-bit range.
    write_rows(
        db_path,
        ("UPDATE counters SET value = 9.2233720368547758e18 WHERE name = ?", ("revenue_cents",)),
    )
    srv = run_cli()
    assert srv.proc.wait(15) == 1
    lines = srv.stderr.strip().splitlines()
    assert len(lines) == 1, srv.stderr
    assert lines[0].startswith("metrics-server: cannot start from ")
    assert str(db_path) in lines[0] and "'revenue_cents' holds 9.223372036854776e+18" in lines[0]

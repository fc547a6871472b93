"""The alert engine (metrics_tui.alerts) on its own: no Textual, no server, a clock of numbers."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from metrics_protocol.figures import SCHEMA
from metrics_tui.alerts import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    Evaluator,
    RuleError,
    State,
    check_report,
    format_duration,
    parse_duration,
    parse_rules,
    perfdata,
)

T0 = datetime(2025, 11, 4, 10, 30, tzinfo=UTC)


def snap(**quantities: int) -> Any:
    """A full snapshot; every rollups quantity is 0 unless given (cents for money)."""
    q = dict.fromkeys(SCHEMA.sources(), 0)
    q.update(quantities)
    return SCHEMA.snapshot(q, T0)


def rules(text: str) -> list[Any]:
    return parse_rules(tomllib.loads(text)["alerts"])


def one(metric: str, **keys: Any) -> Evaluator:
    table = {"name": "r", "metric": metric, **keys}
    return Evaluator(parse_rules([table]))


def state_at(ev: Evaluator, now: float) -> Any:
    return ev.evaluate(now)[0]


# --------------------------------------------------------------------------- parsing

ISSUE_EXAMPLE = """
[[alerts]]
name = "payment failures"
metric = "transactions.failed"     # any figure, by its dotted wire path
above = 0                          # or: below = N
severity = "critical"              # or "warning"
for = "0s"                         # optional: must hold this long before it fires

[[alerts]]
name = "failures climbing"
metric = "rate(transactions.failed, 5m)"
above = 3

[[alerts]]
name = "revenue frozen"
metric = "stale( revenue.total , 15m )"
bell = true
"""


def test_the_issues_example_parses() -> None:
    failures, climbing, frozen = rules(ISSUE_EXAMPLE)
    assert (failures.name, failures.figure.column, failures.function) == (
        "payment failures",
        "transactions.failed",
        "value",
    )
    assert failures.above == 0 and failures.below is None and failures.severity == "critical"
    assert failures.hold == 0 and not failures.bell
    assert (climbing.function, climbing.window, climbing.above) == ("rate", 300.0, 3)
    assert climbing.severity == "warning"  # the default
    assert (frozen.function, frozen.window, frozen.figure.column) == (
        "stale",
        900.0,
        "revenue.total",
    )
    assert frozen.bell


def test_every_figure_of_the_table_is_a_metric() -> None:
    """Derived from the figure table: a figure added there is a metric here with no list."""
    for f in SCHEMA.figures:
        for metric in (f.column, f"rate({f.column}, 1m)"):
            (rule,) = parse_rules([{"name": "n", "metric": metric, "below": 1}])
            assert rule.figure == f


def test_thresholds_are_exact_decimals() -> None:
    (rule,) = parse_rules([{"name": "n", "metric": "revenue.today", "below": 12.1}])
    assert rule.below == Decimal("12.1")


F = "transactions.failed"


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"metric": "transactions.failed", "above": 0}, "name", "missing"),
        ({"name": "", "metric": "transactions.failed", "above": 0}, "name", "non-empty"),
        ({"name": "x", "above": 0}, "metric", "missing"),
        ({"name": "x", "metric": "transactions.faild", "above": 0}, "metric", "unknown figure"),
        ({"name": "x", "metric": "failed", "above": 0}, "metric", "unknown figure"),
        ({"name": "x", "metric": "rate(transactions.faild, 5m)", "above": 0}, "metric", "unknown"),
        ({"name": "x", "metric": "rate(transactions.failed, 5 min)", "above": 0}, "metric", "dur"),
        ({"name": "x", "metric": "rate(transactions.failed, 0s)", "above": 0}, "metric", "longer"),
        ({"name": "x", "metric": "rate(transactions.failed)", "above": 0}, "metric", "cannot"),
        ({"name": "x", "metric": "avg(transactions.failed, 5m)", "above": 0}, "metric", "cannot"),
        ({"name": "x", "metric": F, "above": 0, "below": 5}, "below", "both"),
        ({"name": "x", "metric": "transactions.failed"}, None, "above = N or below = N"),
        ({"name": "x", "metric": "stale(revenue.total, 5m)", "above": 0}, "above", "leave out"),
        ({"name": "x", "metric": "transactions.failed", "above": "0"}, "above", "number"),
        ({"name": "x", "metric": "transactions.failed", "above": True}, "above", "number"),
        ({"name": "x", "metric": "transactions.failed", "above": float("nan")}, "above", "finite"),
        ({"name": "x", "metric": F, "above": 0, "severity": "page"}, "severity", "warning"),
        ({"name": "x", "metric": F, "above": 0, "for": "5"}, "for", "duration"),
        ({"name": "x", "metric": F, "above": 0, "for": 5}, "for", "quotes"),
        ({"name": "x", "metric": F, "above": 0, "for": "-5s"}, "for", "duration"),
        ({"name": "x", "metric": F, "above": 0, "bell": "yes"}, "bell", "true"),
        ({"name": "x", "metric": F, "above": 0, "colour": "red"}, "colour", "unknown key"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_naming_the_rule_and_the_key(
    table: dict[str, Any], key: str | None, words: str
) -> None:
    good = {"name": "fine", "metric": "revenue.total", "above": 1}
    with pytest.raises(RuleError) as caught:
        parse_rules([good, table])
    err = caught.value
    assert (err.index, err.key) == (1, key)
    text = str(err)
    assert text.startswith("alert #2")
    if table.get("name"):
        assert f'"{table["name"]}"' in text
    if key is not None:
        assert f"key {key!r}" in text
    assert words in text
    assert "\n" not in text


def test_two_rules_with_one_name_are_refused() -> None:
    table = {"name": "dup", "metric": "revenue.total", "above": 1}
    with pytest.raises(RuleError, match=r'alert #2 "dup", key \'name\''):
        parse_rules([table, table])


def test_durations() -> None:
    assert parse_duration("0s") == 0
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1w") == 604800
    for bad in ("", "5", "5 m", "m", "1.5m", "-1s", "5M"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    for seconds in (0, 1, 59, 60, 61, 300, 5400, 86400 + 1, 0.25):
        assert parse_duration(format_duration(seconds)) == seconds


# --------------------------------------------------------------------------- plain rules


def test_exactly_at_the_threshold_does_not_hold() -> None:
    above = one("transactions.failed", above=2)
    assert above.observe(snap(txn_failed=2), 0)[0].state is State.OK
    assert above.observe(snap(txn_failed=3), 1)[0].state is State.FIRING
    below = one("revenue.today", below=12.5)
    assert below.observe(snap(revenue_today_cents=1250), 0)[0].state is State.OK
    assert below.observe(snap(revenue_today_cents=1249), 1)[0].state is State.FIRING


def test_unknown_until_the_first_snapshot() -> None:
    ev = one("transactions.failed", above=0)
    s = state_at(ev, 5)
    assert (s.state, s.value, s.why) == (State.UNKNOWN, None, "no data yet")


def test_for_elapsed_exactly_fires() -> None:
    ev = one("transactions.failed", above=0, **{"for": "30s"})
    ev.observe(snap(txn_failed=1), 100)
    s = state_at(ev, 129.999)
    assert (s.state, s.since) == (State.PENDING, 100)
    s = state_at(ev, 130)
    assert (s.state, s.since) == (State.FIRING, 130)
    # Still firing, since the same moment, on later snapshots with the condition holding.
    assert ev.observe(snap(txn_failed=4), 200)[0].since == 130


def test_for_starts_again_when_the_condition_lapses() -> None:
    ev = one("transactions.failed", above=0, **{"for": "30s"})
    ev.observe(snap(txn_failed=1), 0)
    ev.observe(snap(txn_failed=0), 20)
    ev.observe(snap(txn_failed=1), 25)
    assert state_at(ev, 50).state is State.PENDING  # 25 s since it held again, not 50
    assert state_at(ev, 55).state is State.FIRING


def test_a_firing_rule_clears() -> None:
    ev = one("transactions.pending", above=10, severity="critical")
    assert ev.observe(snap(txn_pending=11), 0)[0].state is State.FIRING
    assert ev.firing()[0].rule.name == "r"
    cleared = ev.observe(snap(txn_pending=10), 5)[0]
    assert (cleared.state, cleared.since, cleared.value) == (State.OK, None, 10)
    assert ev.firing() == []


def test_a_snapshot_older_than_one_taken_is_left_out() -> None:
    """Seen from a real server: an interval sample, taken before a change, broadcast after
    it. Taking it would clear the rule and fire it again (a second bell)."""
    ev = one("transactions.pending", above=0)
    ev.observe(replace(snap(txn_pending=1), timestamp=T0), 0)
    settled = ev.observe(replace(snap(txn_pending=0), timestamp=T0 + timedelta(seconds=2)), 1)
    assert settled[0].state is State.OK
    late = ev.observe(replace(snap(txn_pending=1), timestamp=T0 + timedelta(seconds=1)), 2)
    assert late[0].state is State.OK and late[0].value == 0
    # The same time again is not older: taken.
    same = ev.observe(replace(snap(txn_pending=3), timestamp=T0 + timedelta(seconds=2)), 3)
    assert same[0].value == 3


def test_a_left_out_group_keeps_the_last_value() -> None:
    ev = one("transactions.failed", above=0)
    ev.observe(snap(txn_failed=1), 0)
    only_revenue = SCHEMA.metrics(T0, revenue=snap().revenue)
    assert ev.observe(only_revenue, 1)[0].value == 1


def test_firing_lists_critical_first_then_longest_firing() -> None:
    ev = Evaluator(
        rules(
            """
            [[alerts]]
            name = "w-old"
            metric = "transactions.failed"
            above = 0
            [[alerts]]
            name = "c-new"
            metric = "transactions.pending"
            above = 0
            severity = "critical"
            [[alerts]]
            name = "w-new"
            metric = "transactions.total"
            above = 0
            """
        )
    )
    ev.observe(snap(txn_failed=1), 0)
    ev.observe(snap(txn_failed=1, txn_pending=1, txn_total=1), 10)
    assert [s.rule.name for s in ev.firing()] == ["c-new", "w-old", "w-new"]


# --------------------------------------------------------------------------- rate


def test_rate_is_unknown_until_the_window_is_covered() -> None:
    ev = one("rate(transactions.failed, 5m)", above=2)
    ev.observe(snap(txn_failed=0), 1000)
    ev.observe(snap(txn_failed=5), 1100)
    s = state_at(ev, 1299)
    assert (s.state, s.value) == (State.UNKNOWN, None) and "5m ago" in s.why
    s = state_at(ev, 1300)  # a value from exactly 5 minutes ago now exists
    assert (s.state, s.value) == (State.FIRING, 5)


def test_rate_is_the_change_since_the_value_as_of_the_window_start() -> None:
    ev = one("rate(transactions.failed, 60s)", above=2)
    for t, v in [(0, 0), (10, 1), (30, 2), (50, 3), (70, 4), (90, 5)]:
        ev.observe(snap(txn_failed=v), t)
    # At 90 the window starts at 30, where the value was 2.
    assert state_at(ev, 90).value == 3
    # At 100 (no new sample) it starts at 40: the value then was still 2 (set at 30).
    assert state_at(ev, 100).value == 3
    # At 110 it starts at 50, value 3: the change is 2, not above 2.
    s = state_at(ev, 110)
    assert (s.value, s.state) == (2, State.OK)


def test_rate_over_a_window_with_gaps() -> None:
    """A gap (the monitor was away) keeps the last value seen before it, as for a figure
    that did not change: the change over the window counts from that value."""
    ev = one("rate(transactions.failed, 60s)", above=0)
    ev.observe(snap(txn_failed=2), 0)
    ev.observe(snap(txn_failed=3), 5)
    # Nothing from 5 to 200: at 200 the window starts at 140, where 3 was the last value seen.
    ev.observe(snap(txn_failed=7), 200)
    assert state_at(ev, 200).value == 4
    assert state_at(ev, 259).value == 4
    # From 260 on the window starts after the 7 arrived: no change.
    s = state_at(ev, 260)
    assert (s.value, s.state) == (0, State.OK)


def test_rate_of_money_is_exact() -> None:
    ev = one("rate(revenue.total, 1m)", above=0.2)
    ev.observe(snap(revenue_cents=10), 0)
    ev.observe(snap(revenue_cents=30), 30)
    s = state_at(ev, 60)
    # $0.30 - $0.10 as floats is 0.19999999999999998: exactly 0.20 is not above 0.2.
    assert s.value == Decimal("0.20") and s.state is State.OK
    ev.observe(snap(revenue_cents=31), 61)
    assert state_at(ev, 61).state is State.FIRING


def test_a_reset_makes_the_rate_negative_and_fires_no_above_rule() -> None:
    """A count that starts again from zero (a new database; ``today`` at midnight) reads as
    the fall it is: an ``above`` rule stays quiet, a ``below = 0`` rule sees it."""
    ev = Evaluator(
        rules(
            """
            [[alerts]]
            name = "failures climbing"
            metric = "rate(transactions.failed, 60s)"
            above = 0
            [[alerts]]
            name = "count went backwards"
            metric = "rate(transactions.failed, 60s)"
            below = 0
            """
        )
    )
    ev.observe(snap(txn_failed=40), 0)
    ev.observe(snap(txn_failed=41), 30)
    ev.observe(snap(txn_failed=0), 70)  # the reset; the value as of 20 was 40
    ev.observe(snap(txn_failed=2), 80)
    climbing, backwards = ev.evaluate(80)
    assert climbing.value == -38 and climbing.state is State.OK
    assert backwards.state is State.FIRING
    # Once the window has passed the reset, the rate counts from zero again.
    climbing, backwards = ev.evaluate(131)
    assert climbing.value == 2 and climbing.state is State.FIRING
    assert backwards.state is State.OK


def test_rate_keeps_only_what_its_window_needs() -> None:
    ev = one("rate(transactions.failed, 60s)", above=0)
    for t in range(10_000):
        ev.observe(snap(txn_failed=t), float(t))
    series = ev._series["transactions.failed"]
    assert len(series.changes) <= 62
    assert state_at(ev, 9999).value == 60
    # A figure that does not change keeps one entry, however many updates come.
    flat = one("rate(transactions.failed, 60s)", above=0)
    for t in range(1000):
        flat.observe(snap(txn_failed=5), float(t))
    assert len(flat._series["transactions.failed"].changes) == 1


def test_rate_agrees_with_brute_force() -> None:
    """Against a scan of every sample kept, for random streams and windows."""
    import random

    rnd = random.Random(12)
    for _ in range(200):
        window = rnd.choice([1, 5, 30, 60])
        ev = one(f"rate(transactions.failed, {window}s)", above=0)
        samples: list[tuple[float, int]] = []
        now = 0.0
        for _ in range(rnd.randint(1, 40)):
            t = now + rnd.choice([0, 0.5, 1, 1, 2, 7, 40])  # the clock never goes back
            v = max(0, (samples[-1][1] if samples else 0) + rnd.randint(-2, 3))
            samples.append((t, v))
            ev.observe(snap(txn_failed=v), t)
            now = t + rnd.choice([0, 0, 0.5, 3])
            before = [v for ts, v in samples if ts <= now - window]
            want = None if not before else samples[-1][1] - before[-1]
            assert state_at(ev, now).value == want


# --------------------------------------------------------------------------- stale


def test_stale_after_the_window_without_a_change() -> None:
    ev = one("stale(revenue.total, 15m)")
    ev.observe(snap(revenue_cents=100), 0)
    s = state_at(ev, 899)
    assert s.state is State.UNKNOWN and "watched for less than 15m" in s.why
    s = state_at(ev, 900)  # 15 minutes exactly
    assert (s.state, s.value, s.since) == (State.FIRING, True, 900)


def test_stale_with_a_figure_that_changes_and_changes_back() -> None:
    ev = one("stale(revenue.total, 60s)")
    ev.observe(snap(revenue_cents=100), 0)
    ev.observe(snap(revenue_cents=200), 30)
    ev.observe(snap(revenue_cents=100), 40)  # back to where it was: still a change
    assert state_at(ev, 60).value is False  # not unknown: it was seen to change
    assert state_at(ev, 99).state is State.OK
    s = state_at(ev, 100)
    assert (s.state, s.since) == (State.FIRING, 100)
    # Updates with the same figure do not count as changes...
    assert ev.observe(snap(revenue_cents=100), 120)[0].state is State.FIRING
    # ...a new figure clears it.
    assert ev.observe(snap(revenue_cents=101), 130)[0].state is State.OK


def test_stale_for_counts_from_when_it_became_stale() -> None:
    ev = one("stale(revenue.total, 60s)", **{"for": "30s"})
    ev.observe(snap(revenue_cents=1), 0)
    ev.observe(snap(revenue_cents=2), 10)
    # First evaluated late, at 85: stale since 70, so pending until 100.
    s = state_at(ev, 85)
    assert (s.state, s.since) == (State.PENDING, 70)
    assert state_at(ev, 100).since == 100


# --------------------------------------------------------------------------- --check


def test_perfdata_has_one_valid_item_per_figure() -> None:
    m = snap(revenue_cents=123450, users_active=57, txn_completed=1, views=3)
    text = perfdata(m)
    items = text.split(" ")
    assert len(items) == len(SCHEMA.figures)
    labels = [i.partition("=")[0] for i in items]
    assert labels[0] == "revenue_total" and "active_users_current" in labels
    assert "content_conversion_rate" in labels
    assert "revenue_total=1234.50" in items and "active_users_current=57" in items
    assert "content_conversion_rate=33.33%" in items
    # label=value[UOM];[warn];[crit];[min];[max]; labels without spaces or quotes need none.
    item = re.compile(r"^[a-z0-9_]+=-?\d+(\.\d+)?(%|s|ms|us|B|KB|MB|TB|c)?(;[^; ]*){0,4}$")
    assert all(item.match(i) for i in items), items


def test_perfdata_carries_the_plain_rules_thresholds_as_nagios_ranges() -> None:
    rs = rules(
        """
        [[alerts]]
        name = "a"
        metric = "transactions.failed"
        above = 0
        severity = "critical"
        [[alerts]]
        name = "b"
        metric = "transactions.failed"
        above = -1
        [[alerts]]
        name = "c"
        metric = "revenue.today"
        below = 100
        [[alerts]]
        name = "d"
        metric = "rate(transactions.total, 1m)"
        above = 5
        """
    )
    items = perfdata(snap(), rs).split()
    assert "transactions_failed=0;~:-1;0" in items
    assert "revenue_today=0.00;100:" in items
    assert "transactions_total=0" in items  # a rate's threshold is not the figure's


def test_check_report_codes_and_lines() -> None:
    rs = rules(
        """
        [[alerts]]
        name = "payment failures"
        metric = "transactions.failed"
        above = 0
        severity = "critical"
        for = "10m"
        [[alerts]]
        name = "queue | backlog"
        metric = "transactions.pending"
        above = 5
        [[alerts]]
        name = "climbing"
        metric = "rate(transactions.failed, 5m)"
        above = 0
        """
    )
    code, line = check_report(snap(), rs)
    assert code == OK
    assert line.startswith("METRICS OK - 2 rules ok; 1 rate/stale rule skipped")
    code, line = check_report(snap(txn_pending=6), rs)
    assert code == WARNING
    assert line.startswith("METRICS WARNING - queue / backlog (warning): transactions.pending = 6")
    assert line.count("|") == 1
    code, line = check_report(snap(txn_pending=6, txn_failed=2), rs)
    assert code == CRITICAL  # for = "10m" is left to the scheduler's retries
    head = line.partition(" | ")[0]
    assert head.startswith("METRICS CRITICAL - payment failures: transactions.failed = 2 (> 0); ")
    assert "queue / backlog (warning)" in head
    assert check_report(snap(), [])[1].startswith("METRICS OK - no alert rules | revenue_total=")
    partial = SCHEMA.metrics(T0, revenue=snap().revenue)
    code, line = check_report(partial, rs)
    assert code == UNKNOWN and "transactions.failed unknown" in line


def test_the_example_rules_parse() -> None:
    """The [[alerts]] of examples/metrics-tui.toml, uncommented, are rules."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "examples" / "metrics-tui.toml").read_text()
    section = text.split("# Alert rules", 1)[1]
    toml = "\n".join(ln[1:] for ln in section.splitlines() if re.match(r"#[\[a-z]", ln))
    parsed = rules(toml)
    assert [r.function for r in parsed] == ["value", "rate", "stale"]

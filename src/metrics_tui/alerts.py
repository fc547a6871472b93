"""Alert rules: parsed from the config file's ``[[alerts]]`` tables, evaluated on snapshots.

Pure code: no Textual, no I/O, no clock. The caller stamps each snapshot with the time it
arrived (``Evaluator.observe(m, at)``) and asks for the rules' states at a time of its choosing
(``Evaluator.evaluate(now)``), both on one clock (the monitor's monotonic clock; plain numbers in
tests). ``metrics-tui --once --check`` uses the same rules on one snapshot (``check_states``).

A rule watches one figure of the figure table by its dotted wire path (``transactions.failed``)
or a value derived from one:

* ``rate(x, 5m)``: x now minus x as it was 5 minutes ago, the last value seen at or before
  then. Signed: it is negative when x fell, whether a gauge went down (``pending``, ``current``)
  or a count started again from zero (``today`` at midnight, a new database; a server restart
  keeps its counts). The table does not say which figures only grow, so no fall is taken for a
  reset: a rule ``above`` a positive number never fires on one, and ``below = 0`` catches it.
  Unknown until the monitor has a value from at least the window's length ago. Over a gap in
  the samples (the monitor was disconnected) the value before the gap stands for the gap, as it
  does for a figure that did not change.
* ``stale(x, 15m)``: true when x has not changed for 15 minutes (15 minutes exactly counts).
  Unknown until x has been watched for that long, unless it changed meanwhile (then false).

Conditions are strict: ``above = 0`` holds for 1, not for 0; ``below = 5`` for 4, not for 5.
A ``stale`` rule takes neither: it holds while the figure is stale. A rule holds from the first
time its condition is seen to hold (for ``stale``, from the exact moment it became stale); it
is *pending* until it has held for ``for``, then *firing* (``for`` elapsed exactly fires).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Literal

from metrics_protocol.figures import SCHEMA
from metrics_protocol.schema import COUNT, MONEY, PERCENT, Figure, Schema, money_text, snake_case

Severity = Literal["warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("warning", "critical")
Function = Literal["value", "rate", "stale"]

#: The keys of an ``[[alerts]]`` table.
KEYS = ("name", "metric", "above", "below", "severity", "for", "bell")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_DERIVED = re.compile(r"^\s*(rate|stale)\s*\(\s*([^,()\s]+)\s*,\s*([^,()]*?)\s*\)\s*$")


class RuleError(ValueError):
    """A rule that cannot be used. ``index`` (0-based position in ``[[alerts]]``) and ``key``
    (None when the whole table is at fault) let a config loader point at the line."""

    def __init__(self, index: int, name: str | None, key: str | None, reason: str) -> None:
        self.index = index
        self.name = name
        self.key = key
        self.reason = reason
        where = f"alert #{index + 1}" + (f' "{name}"' if name else "")
        super().__init__(f"{where}, key {key!r}: {reason}" if key else f"{where}: {reason}")


def parse_duration(text: Any) -> float:
    """``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` -> seconds (Prometheus's units, w the
    longest). Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f'must be a duration in quotes, like "30s", "5m" or "1h", not {text!r}')
    spec = text.strip()
    if not spec or _DURATION.sub("", spec):
        raise ValueError(f'not a duration: {text!r} (like "30s", "5m", "1h30m")')
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(spec))


def format_duration(seconds: float) -> str:
    """The shortest spelling ``parse_duration`` reads back: ``5m``, ``1h30m``, ``90s``."""
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    left, out = int(seconds), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, left = divmod(left, size)
        out += f"{n}{unit}" if n else ""
    return out or "0s"


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule, checked: its figure exists, exactly one of above/below (none for stale)."""

    name: str
    #: The metric as written in the file, for messages.
    metric: str
    figure: Figure
    function: Function = "value"
    #: The window of ``rate`` and ``stale``, in seconds.
    window: float = 0.0
    above: Decimal | None = None
    below: Decimal | None = None
    severity: Severity = "warning"
    #: Seconds the condition must hold before the rule fires.
    hold: float = 0.0
    #: Ring the terminal bell when it starts firing.
    bell: bool = False

    def holds(self, value: Decimal | bool) -> bool:
        if self.function == "stale":
            return bool(value)
        assert isinstance(value, Decimal)
        if self.above is not None:
            return value > self.above
        assert self.below is not None
        return value < self.below

    @property
    def condition(self) -> str:
        """``> 0``, ``< 100``, or ``stale`` for a stale rule."""
        if self.function == "stale":
            return "stale"
        return f"> {self.above}" if self.above is not None else f"< {self.below}"


def figures_by_path(schema: Schema = SCHEMA) -> dict[str, Figure]:
    """Every figure by its dotted wire path, from the figure table."""
    return {f.column: f for f in schema.figures}


def parse_rules(tables: Sequence[Mapping[str, Any]], schema: Schema = SCHEMA) -> list[Rule]:
    """The ``[[alerts]]`` tables of a config file as rules; raises RuleError for the first
    table at fault, naming it (position and name) and the key."""
    if not isinstance(tables, list | tuple):
        raise RuleError(0, None, None, "[[alerts]] must be an array of tables")
    known = figures_by_path(schema)
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        rule = _parse_rule(i, table, known)
        if rule.name in seen:
            raise RuleError(i, rule.name, "name", "another rule has this name")
        seen.add(rule.name)
        rules.append(rule)
    return rules


def _parse_rule(i: int, table: Any, known: Mapping[str, Figure]) -> Rule:
    if not isinstance(table, Mapping):
        raise RuleError(i, None, None, "must be a table")
    raw_name = table.get("name")
    name = raw_name.strip() if isinstance(raw_name, str) else None

    def error(key: str | None, reason: str) -> RuleError:
        return RuleError(i, name, key, reason)

    for key in table:
        if key not in KEYS:
            raise error(key, f"unknown key (the keys are {', '.join(KEYS)})")
    if raw_name is None:
        raise error("name", "missing: every rule needs a name")
    if not name:
        raise error("name", "must be a non-empty string")
    if "metric" not in table:
        raise error("metric", "missing: name a figure, e.g. transactions.failed")
    metric = table["metric"]
    if not isinstance(metric, str):
        raise error("metric", "must be a string")
    function: Function = "value"
    window = 0.0
    path = metric.strip()
    if derived := _DERIVED.match(metric):
        function, path, spec = derived.group(1), derived.group(2), derived.group(3)  # type: ignore[assignment]
        try:
            window = parse_duration(spec)
        except ValueError as exc:
            raise error("metric", f"{function}() window: {exc}") from None
        if window <= 0:
            raise error("metric", f"{function}() needs a window longer than 0")
    elif "(" in metric:
        raise error("metric", f"cannot read {metric!r}: use rate(FIGURE, 5m) or stale(FIGURE, 15m)")
    figure = known.get(path)
    if figure is None:
        raise error("metric", f"unknown figure {path!r} (figures: {', '.join(known)})")
    above = _threshold(table, "above", error)
    below = _threshold(table, "below", error)
    if function == "stale":
        if above is not None or below is not None:
            raise error(
                "above" if above is not None else "below",
                "stale() is true or false: leave out above and below",
            )
    elif above is not None and below is not None:
        raise error("below", "give above or below, not both (make two rules for a band)")
    elif above is None and below is None:
        raise error(None, "needs above = N or below = N")
    severity = table.get("severity", "warning")
    if severity not in SEVERITIES:
        raise error("severity", f'must be "warning" or "critical", not {severity!r}')
    try:
        hold = parse_duration(table.get("for", "0s"))
    except ValueError as exc:
        raise error("for", str(exc)) from None
    bell = table.get("bell", False)
    if not isinstance(bell, bool):
        raise error("bell", f"must be true or false, not {bell!r}")
    return Rule(name, metric.strip(), figure, function, window, above, below, severity, hold, bell)


def _threshold(table: Mapping[str, Any], key: str, error: Any) -> Decimal | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(key, f"must be a number, not {value!r}")
    try:
        # repr: a float's shortest spelling, so 12.5 is Decimal("12.5"), not its binary value.
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:  # pragma: no cover - every finite float has a repr Decimal reads
        raise error(key, f"not a number: {value!r}") from None
    if not number.is_finite():
        raise error(key, f"must be a finite number, not {value!r}")
    return number


# --------------------------------------------------------------------------- evaluation


class State(Enum):
    OK = "ok"
    #: The condition holds, ``for`` has not elapsed yet.
    PENDING = "pending"
    FIRING = "firing"
    #: No value: no snapshot yet, or a window not yet covered.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RuleState:
    rule: Rule
    state: State
    #: The rule's value: the figure, its change (rate) or whether it is stale; None if unknown.
    value: Decimal | bool | None = None
    #: Since when it is pending (the condition first held) or firing (``for`` after that).
    since: float | None = None
    #: Why it is unknown.
    why: str = ""

    @property
    def active(self) -> bool:
        return self.state is State.FIRING


@dataclass(slots=True)
class _Series:
    """What the rules need of one figure: changes within the longest rate window, and when
    the figure last changed (for stale)."""

    window: float
    #: (time, value) at each change, oldest first: the value as of time T is the last entry
    #: at or before T. An unchanged value adds nothing, so memory grows with the changes in
    #: one window, not with the updates (a busy feed sends one a second).
    changes: deque[tuple[float, Decimal]] = field(default_factory=deque)
    first_at: float | None = None
    changed_at: float | None = None
    last: Decimal | None = None

    def add(self, at: float, value: Decimal) -> None:
        if self.first_at is None:
            self.first_at = at
        if value != self.last:
            if self.last is not None:
                self.changed_at = at
            self.last = value
            if self.window:
                self.changes.append((at, value))
        self.prune(at)

    def prune(self, now: float) -> None:
        # Keep the newest change at or before the window's start: it is the value as of then.
        start = now - self.window
        while len(self.changes) >= 2 and self.changes[1][0] <= start:
            self.changes.popleft()

    def rate(self, now: float, window: float) -> Decimal | None:
        start = now - window
        if self.last is None or self.first_at is None or self.first_at > start:
            return None
        then = next(v for t, v in reversed(self.changes) if t <= start)
        return self.last - then

    def stale_since(self, window: float) -> float | None:
        """When the figure became (or will become) stale; None while that cannot be told."""
        if self.first_at is None:
            return None
        if self.changed_at is None:  # never seen to change: stale once watched that long
            return self.first_at + window
        return self.changed_at + window


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


class Evaluator:
    """Each rule's state over a stream of snapshots. Feed it with ``observe`` as snapshots
    arrive and ask ``evaluate`` (as often as the display needs: it is cheap)."""

    def __init__(self, rules: Iterable[Rule], schema: Schema = SCHEMA) -> None:
        self.rules = tuple(rules)
        self.schema = schema
        windows: dict[str, float] = {}
        for r in self.rules:
            w = r.window if r.function == "rate" else 0.0
            windows[r.figure.column] = max(windows.get(r.figure.column, 0.0), w)
        self._series = {path: _Series(w) for path, w in windows.items()}
        self._figures = {r.figure.column: r.figure for r in self.rules}
        #: Per rule: when its condition started to hold (None: it does not hold).
        self._held: dict[int, float | None] = {}
        #: The server time of the newest snapshot taken: an older one that arrives after it
        #: (an interval sample broadcast after a later change) is not taken back to.
        self._newest: Any = None
        self._states: list[RuleState] = [
            RuleState(r, State.UNKNOWN, why="no data yet") for r in self.rules
        ]

    def observe(self, m: Any, at: float) -> list[RuleState]:
        """Take a snapshot that arrived at ``at``; returns the states then. A snapshot older
        (by its own timestamp) than one already taken is left out: it would flap a rule that
        the newer one settled (and ring its bell again)."""
        stamp = getattr(m, "timestamp", None)
        if stamp is not None and self._newest is not None and stamp < self._newest:
            return self.evaluate(at)
        self._newest = stamp if stamp is not None else self._newest
        for path, series in self._series.items():
            value = self.schema.value(m, self._figures[path])
            if value is not None:  # a group the subscription left out keeps its last value
                series.add(at, _decimal(value))
        return self.evaluate(at)

    def evaluate(self, now: float) -> list[RuleState]:
        """Every rule's state at ``now``. Times never go back: ``now`` is at or after every
        earlier ``at`` and ``now`` (what is older than a window is forgotten)."""
        for series in self._series.values():
            series.prune(now)
        self._states = [self._state(i, r, now) for i, r in enumerate(self.rules)]
        return self._states

    @property
    def states(self) -> list[RuleState]:
        """The states as last evaluated."""
        return self._states

    def _state(self, i: int, rule: Rule, now: float) -> RuleState:
        series = self._series[rule.figure.column]
        value: Decimal | bool | None
        onset: float | None = None
        if rule.function == "value":
            value = series.last
            why = "no data yet"
        elif rule.function == "rate":
            value = series.rate(now, rule.window)
            why = f"no value from {format_duration(rule.window)} ago yet"
        else:
            since = series.stale_since(rule.window)
            if since is None:
                value, why = None, "no data yet"
            elif since <= now:
                value, onset = True, since
            elif series.changed_at is None:
                value, why = None, f"watched for less than {format_duration(rule.window)}"
            else:
                value = False
        if value is None:
            self._held[i] = None
            return RuleState(rule, State.UNKNOWN, why=why)
        if not rule.holds(value):
            self._held[i] = None
            return RuleState(rule, State.OK, value)
        held = self._held.get(i)
        if held is None:
            held = self._held[i] = onset if onset is not None else now
        fires_at = held + rule.hold
        if now >= fires_at:
            return RuleState(rule, State.FIRING, value, fires_at)
        return RuleState(rule, State.PENDING, value, held)

    def firing(self) -> list[RuleState]:
        """The firing rules, critical first, then the longest firing first."""
        out = [s for s in self._states if s.state is State.FIRING]
        return sorted(out, key=lambda s: (s.rule.severity != "critical", s.since))


# --------------------------------------------------------------------------- presentation


def value_text(state: RuleState) -> str:
    """The rule's value as a person reads it: ``3``, ``$12.50``, ``+4``, ``stale``, ``?``."""
    v = state.value
    if v is None:
        return "?"
    if isinstance(v, bool):
        return "stale" if v else "changing"
    kind = state.rule.figure.kind
    text = money_text(v) if kind != COUNT else str(v)
    text = {MONEY: f"${text}", PERCENT: f"{text}%"}.get(kind, text)
    if state.rule.function == "rate" and v >= 0:
        text = "+" + text
    return text.replace("$-", "-$")


def perf_label(figure: Figure) -> str:
    """A figure's performance-data label: ``revenue_today``, ``active_users_current``."""
    return f"{snake_case(figure.group)}_{figure.attr}"


def _range(rule: Rule) -> str:
    """A plain rule's threshold as a Nagios range (alert outside it; ends included)."""
    if rule.above is not None:
        return f"{rule.above}" if rule.above >= 0 else f"~:{rule.above}"
    return f"{rule.below}:"


def perfdata(m: Any, rules: Sequence[Rule] = (), schema: Schema = SCHEMA) -> str:
    """Nagios performance data, one item per figure of the table (those in the snapshot):
    ``label=value[UOM];[warn];[crit]``, with the first warning and critical thresholds of the
    plain rules on that figure."""
    items: list[str] = []
    for f in schema.figures:
        v = schema.value(m, f)
        if v is None:
            continue
        text = str(v) if f.kind == COUNT else money_text(v)
        uom = "%" if f.kind == PERCENT else ""
        limits = [
            next(
                (
                    _range(r)
                    for r in rules
                    if r.figure == f and r.function == "value" and r.severity == sev
                ),
                "",
            )
            for sev in SEVERITIES
        ]
        item = f"{perf_label(f)}={text}{uom}"
        if any(limits):
            item += ";" + ";".join(limits).rstrip(";")
        items.append(item)
    return " ".join(items)


# --------------------------------------------------------------------------- --check

#: The monitoring-plugin exit codes (Nagios, Icinga, Sensu, Zabbix's agent).
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS_WORDS = ("OK", "WARNING", "CRITICAL", "UNKNOWN")


def plugin_text(text: str) -> str:
    """Text safe in a plugin's line: ``|`` starts performance data, a line break a new line."""
    return re.sub(r"[|\x00-\x1f\x7f]", "/", text)


def check_states(m: Any, rules: Sequence[Rule], schema: Schema = SCHEMA) -> list[RuleState]:
    """The plain rules' states on one snapshot, as ``--check`` sees them: ``for`` is left to
    the scheduler's own retries (Nagios' max_check_attempts, Icinga's soft states), since one
    snapshot cannot show a condition holding for a while. ``rate`` and ``stale`` rules need a
    series; they are left out here (``check_report`` counts them as skipped)."""
    plain = [r for r in rules if r.function == "value"]
    return Evaluator([replace(r, hold=0.0) for r in plain], schema).observe(m, 0.0)


def check_report(m: Any, rules: Sequence[Rule], schema: Schema = SCHEMA) -> tuple[int, str]:
    """The exit code and the one line of ``--check`` for snapshot ``m``."""
    states = check_states(m, rules, schema)
    skipped = len(rules) - len(states)
    firing = [s for s in states if s.state is State.FIRING]
    firing.sort(key=lambda s: s.rule.severity != "critical")
    unknown = [s for s in states if s.state is State.UNKNOWN]
    if any(s.rule.severity == "critical" for s in firing):
        code = CRITICAL
    elif firing:
        code = WARNING
    elif unknown:
        code = UNKNOWN
    else:
        code = OK
    notes = [
        f"{s.rule.name}{'' if s.rule.severity == 'critical' else ' (warning)'}: "
        f"{s.rule.metric} = {value_text(s)} ({s.rule.condition})"
        for s in firing
    ]
    notes += [f"{s.rule.name}: {s.rule.metric} unknown ({s.why})" for s in unknown]
    if not firing and not unknown:
        ok = len(states)
        notes.append(f"{ok} rule{'' if ok == 1 else 's'} ok" if rules else "no alert rules")
    if skipped:
        notes.append(
            f"{skipped} rate/stale rule{'' if skipped == 1 else 's'} skipped "
            "(they need the live monitor)"
        )
    text = plugin_text("; ".join(notes))
    return code, f"METRICS {STATUS_WORDS[code]} - {text} | {perfdata(m, rules, schema)}"


def unknown_line(reason: str) -> str:
    """``--check``'s line when there is no snapshot to judge (no server, refused token)."""
    return f"METRICS UNKNOWN - {plugin_text(reason)}"

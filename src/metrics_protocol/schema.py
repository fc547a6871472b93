"""The machinery behind the figure table: a :class:`Schema` built from :class:`Figure` rows.

A schema generates the snapshot's dataclasses (one per group, and :class:`Metrics` over them)
and derives from the same rows the encoder, the decoder, the mapping from the server's
quantities to a snapshot, and the CSV columns. The monitor derives its cards and the ``--once``
table from the rows too, so a new figure is one new row (see ``figures.py``).

Standard library only. Money and rates travel as JSON numbers written with exactly two
decimals from :class:`~decimal.Decimal` values, so a reader that parses floats as ``Decimal``
gets the exact figure back.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

CENT = Decimal("0.01")

MONEY = "money"
COUNT = "count"
PERCENT = "percent"
#: money: integer cents on the server, two decimals on the wire; count: a non-negative
#: integer; percent: a derived :class:`Rate`, two decimals on the wire.
FigureKind = Literal["money", "count", "percent"]


class ProtocolError(ValueError):
    """A message that does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A derived figure: ``numerator / denominator x 100`` to the cent (half up), 0.00 when
    the denominator is 0. Both name quantities that the server's rollups provide."""

    numerator: str
    denominator: str


@dataclass(frozen=True, slots=True)
class Card:
    """A block of figures in the monitor; ``accent`` colours its first row in ``--once``."""

    id: str
    title: str
    accent: str
    #: Changed figures count up to their new value (money); counts just jump.
    count_up: bool = False


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a snapshot: where it travels, what it is, where it shows, where it comes
    from."""

    #: The wire key of its group (also the channel that subscribes to it), e.g. "revenue".
    group: str
    #: Its wire key inside the group, e.g. "total"; the Python attribute is its snake_case.
    key: str
    kind: FigureKind
    #: Card labels, longest first: a narrow card takes the longest set that fits every row.
    #: The first is the long label (``--once`` writes it in lower case).
    labels: tuple[str, ...]
    #: The id of the card it shows on.
    card: str
    #: The rollups quantity it is (an integer; cents for money), or a derived :class:`Rate`.
    source: str | Rate
    #: Shown in the error colour while it is non-zero.
    alert: bool = False
    #: Carries the live pulse on its card.
    pulse: bool = False

    @property
    def attr(self) -> str:
        return snake_case(self.key)

    @property
    def column(self) -> str:
        """Its CSV column: the path of its value in the ``data`` object."""
        return f"{self.group}.{self.key}"


def snake_case(key: str) -> str:
    """``fooBar`` -> ``foo_bar``, ``last5m`` -> ``last5m``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def cents_to_decimal(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def percent_of(part: int, whole: int) -> Decimal:
    """``part / whole x 100`` to the cent, half up; 0.00 when ``whole`` is 0."""
    if whole == 0:
        return Decimal("0.00")
    return (Decimal(part) * 100 / Decimal(whole)).quantize(CENT, rounding=ROUND_HALF_UP)


def format_timestamp(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as the seed writes it."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ProtocolError("'timestamp' must be a string")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"bad timestamp {text!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts


def money_text(value: Decimal) -> str:
    """``125000.50``: a wire number with exactly two decimals (json.dumps would write a float's
    repr)."""
    return f"{value.quantize(CENT):f}"


# --------------------------------------------------------------------------- readers


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{key!r} must be an object")
    return value


def _int(parent: dict[str, Any], key: str) -> int:
    value = parent.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{key!r} must be a non-negative integer")
    return value


def _dec(parent: dict[str, Any], key: str) -> Decimal:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ProtocolError(f"{key!r} must be a number")
    return Decimal(str(value)).quantize(CENT)


# --------------------------------------------------------------------------- the schema


class Schema:
    """Everything derived from a table of figures (and the cards they show on).

    ``groups`` are the wire keys of the groups in table order (the snapshot's and the wire's
    order); ``metrics`` is the generated snapshot class, ``group_class(key)`` a group's.
    """

    def __init__(
        self, figures: Sequence[Figure], cards: Sequence[Card], *, module: str | None = None
    ) -> None:
        self.figures = tuple(figures)
        self.cards = tuple(cards)
        _check(self.figures, self.cards)
        self.groups: tuple[str, ...] = tuple(dict.fromkeys(f.group for f in self.figures))
        self._by_group = {g: tuple(f for f in self.figures if f.group == g) for g in self.groups}
        self._by_card = {c.id: tuple(f for f in self.figures if f.card == c.id) for c in self.cards}
        self.group_attrs = {g: snake_case(g) for g in self.groups}
        #: Each card's figures as (group attribute, figure attributes) in table order: what a
        #: monitor reads from every snapshot, without a lookup per figure.
        self.card_paths: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
            card: tuple(
                (self.group_attrs[g], tuple(f.attr for f in figs if f.group == g))
                for g in dict.fromkeys(f.group for f in figs)
            )
            for card, figs in self._by_card.items()
        }
        self._classes = {g: self._group_dataclass(g, module) for g in self.groups}
        self.metrics: type = dataclasses.make_dataclass(
            "Metrics",
            [("timestamp", datetime)]
            + [
                (self.group_attrs[g], f"{cls.__name__} | None", dataclasses.field(default=None))
                for g, cls in self._classes.items()
            ],
            frozen=True,
            slots=True,
        )
        self.metrics.__doc__ = "One snapshot; a group is None when a subscription left it out."
        _placed(self.metrics, module)
        #: Generated encoders, one per channel selection (there are at most 2**groups).
        self._encoders: dict[tuple[str, ...], Callable[[Any], str]] = {}
        self._encode_all = self._encoder(self.groups)
        self._decode = self._decoder()
        self._from_quantities = self._snapshot()

    # ---- declarations

    def group_class(self, group: str) -> type:
        return self._classes[group]

    def card_figures(self, card: str) -> tuple[Figure, ...]:
        return self._by_card[card]

    def value(self, m: Any, figure: Figure) -> Any:
        """The figure's value in snapshot ``m``; None when its group was left out."""
        group = getattr(m, self.group_attrs[figure.group])
        return None if group is None else getattr(group, figure.attr)

    def _group_dataclass(self, group: str, module: str | None) -> type:
        name = group[0].upper() + group[1:]
        fields = [(f.attr, "int" if f.kind == COUNT else "Decimal") for f in self._by_group[group]]
        cls = dataclasses.make_dataclass(name, fields, frozen=True, slots=True)
        cls.__doc__ = f"The {group!r} group of a snapshot."
        return _placed(cls, module)

    # ---- encoding, decoding, and the snapshot from the server's quantities
    # All three are generated from the table as Python source, once: an f-string per group with a
    # field per figure is as fast as the hand-written encoder it replaces (4.5 us for a full
    # snapshot; a generic loop over the figures took 6.8 us), and the decoder and the snapshot
    # are straight-line calls (a loop over the figures made the snapshot 4.9 us instead of 3.0).
    # Keys are checked ASCII identifiers, so they need no escaping in JSON or in the source.

    def _encoder(self, channels: tuple[str, ...]) -> Callable[[Any], str]:
        lines = ["def encode(m):", "    parts = []"]
        for group in channels:
            if group not in self._by_group:
                continue  # not a group of this schema: nothing to write
            fields = ",".join(
                f'"{f.key}":{{g.{f.attr}}}' if f.kind == COUNT else f'"{f.key}":{{_m(g.{f.attr})}}'
                for f in self._by_group[group]
            )
            lines += [
                f"    g = m.{self.group_attrs[group]}",
                "    if g is not None:",
                f"        parts.append(f'\"{group}\":{{{{{fields}}}}}')",
            ]
        lines += [
            '    parts.append(f\'"timestamp":"{_ts(m.timestamp)}"\')',
            "    return '{' + ','.join(parts) + '}'",
        ]
        return _compile(lines, "encode", _m=money_text, _ts=format_timestamp)

    def encode_data(self, m: Any, channels: Iterable[str] | None = None) -> str:
        """The ``data`` object of a metrics message, as JSON text: the groups in ``channels``
        (all by default, in the order given) that the snapshot has, then the timestamp."""
        if channels is None:
            return self._encode_all(m)
        key = channels if type(channels) is tuple else tuple(channels)
        encode = self._encoders.get(key)
        if encode is None:
            encode = self._encoders[key] = self._encoder(key)
        return encode(m)

    def _decoder(self) -> Callable[[dict[str, Any]], Any]:
        lines = ["def decode(data):"]
        for i, (group, figs) in enumerate(self._by_group.items()):
            args = ", ".join(f"{'_int' if f.kind == COUNT else '_dec'}(g, '{f.key}')" for f in figs)
            lines += [
                f"    if '{group}' in data:",
                f"        g = _obj(data, '{group}')",
                f"        v{i} = _cls{i}({args})",
                "    else:",
                f"        v{i} = None",
            ]
        groups = ", ".join(f"v{i}" for i in range(len(self.groups)))
        lines.append(f"    return Metrics(_ts(data.get('timestamp')), {groups})")
        return _compile(
            lines,
            "decode",
            Metrics=self.metrics,
            _obj=_obj,
            _int=_int,
            _dec=_dec,
            _ts=parse_timestamp,
            **{f"_cls{i}": cls for i, cls in enumerate(self._classes.values())},
        )

    def decode_data(self, data: Any) -> Any:
        """A ``data`` object (from a metrics or history message, or the REST body's ``data``)."""
        if not isinstance(data, dict):
            raise ProtocolError("'data' must be an object")
        return self._decode(data)

    # ---- from the server's rollups

    def _snapshot(self) -> Callable[[Mapping[str, int], datetime], Any]:
        def value(f: Figure) -> str:
            if isinstance(f.source, Rate):
                return f"_pct(q[{f.source.numerator!r}], q[{f.source.denominator!r}])"
            return f"_cents(q[{f.source!r}])" if f.kind == MONEY else f"q[{f.source!r}]"

        groups = ", ".join(
            f"_cls{i}({', '.join(value(f) for f in figs)})"
            for i, figs in enumerate(self._by_group.values())
        )
        lines = ["def snapshot(q, timestamp):", f"    return Metrics(timestamp, {groups})"]
        return _compile(
            lines,
            "snapshot",
            Metrics=self.metrics,
            _pct=percent_of,
            _cents=cents_to_decimal,
            **{f"_cls{i}": cls for i, cls in enumerate(self._classes.values())},
        )

    def sources(self) -> set[str]:
        """Every quantity the table reads (a server must provide all of them)."""
        out: set[str] = set()
        for f in self.figures:
            out.update(
                (f.source.numerator, f.source.denominator)
                if isinstance(f.source, Rate)
                else (f.source,)
            )
        return out

    def snapshot(self, quantities: Mapping[str, int], timestamp: datetime) -> Any:
        """A full snapshot from the server's quantities (integers; cents for money)."""
        return self._from_quantities(quantities, timestamp)

    # ---- CSV

    def csv_columns(self) -> tuple[str, ...]:
        """A CSV export's header: ``timestamp``, then each figure's ``group.key`` in table order."""
        return ("timestamp", *(f.column for f in self.figures))

    def csv_row(self, m: Any) -> list[str]:
        """One snapshot under :meth:`csv_columns`: wire numbers as text, "" for a left-out group."""
        row = [format_timestamp(m.timestamp)]
        for f in self.figures:
            v = self.value(m, f)
            row.append("" if v is None else str(v) if f.kind == COUNT else money_text(v))
        return row


def _compile(lines: list[str], name: str, **names: Any) -> Callable[..., Any]:
    """Define function ``name`` from source ``lines`` with ``names`` as its globals."""
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<metrics_protocol.schema: {name}>", "exec"), names)
    fn = names[name]
    fn.__source__ = source  # for a reader in a debugger
    return fn


def _placed(cls: type, module: str | None) -> type:
    # make_dataclass takes module= only from Python 3.12; the module that exports the class
    # is where pickle and repr look for it.
    if module is not None:
        cls.__module__ = module
    return cls


def _check(figures: Sequence[Figure], cards: Sequence[Card]) -> None:
    """Refuse a table that would write bad JSON or lose a figure, with the row at fault."""
    card_ids = [c.id for c in cards]
    if len(set(card_ids)) != len(card_ids):
        raise ValueError(f"card ids repeat: {card_ids}")
    seen: set[tuple[str, str]] = set()
    for f in figures:
        where = f"figure {f.group}.{f.key}"
        # Keys go into JSON and Python names unescaped: identifiers in ASCII only.
        for name in (f.group, f.key):
            if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(snake_case(name)):
                raise ValueError(f"{where}: {name!r} is not an ASCII identifier")
        if snake_case(f.group) == "timestamp":
            raise ValueError(f"{where}: a group cannot be called timestamp")
        if (f.group, f.attr) in seen:  # fooBar and foo_bar would be one attribute
            raise ValueError(f"{where} is declared twice")
        seen.add((f.group, f.attr))
        if f.kind not in (MONEY, COUNT, PERCENT):
            raise ValueError(f"{where}: unknown kind {f.kind!r}")
        if (f.kind == PERCENT) != isinstance(f.source, Rate):
            raise ValueError(f"{where}: a percent is a Rate, and a Rate is a percent")
        if f.card not in card_ids:
            raise ValueError(f"{where}: no card {f.card!r}")
        if not f.labels:
            raise ValueError(f"{where}: no label")
    for c in card_ids:
        # A card keys its rows by attribute: revenue.total and transactions.total cannot share.
        attrs = [f.attr for f in figures if f.card == c]
        if len(set(attrs)) != len(attrs):
            raise ValueError(f"card {c!r}: two figures would share a row key: {attrs}")
    groups = {f.group for f in figures}
    if len({snake_case(g) for g in groups}) != len(groups):
        raise ValueError(f"two groups would share an attribute: {sorted(groups)}")
    empty = [c for c in card_ids if not any(f.card == c for f in figures)]
    if empty:
        raise ValueError(f"cards without figures: {empty}")

"""Every setting declared once: name, flag, environment variable, type, default and help.

Each program declares a table of `Setting`s (``metrics_server/settings.py``,
``metrics_tui/settings.py``). From the table come the argparse parser, whose help line for each
flag names its environment variable and its default, and the values, resolved in this order:

    flag > environment variable > (a configuration file, later) > default

`parse` returns a `Config` that also says where each value came from (``config.origin(name)``),
which a program needs when an explicit flag means more than an inherited variable.

A configuration file is meant to slot in between the environment and the defaults: a TOML
table whose keys are the settings' names (the flag's words: ``--max-clients`` is
``max_clients``), each value checked with the setting's `parse` and refused with the key's
name; ``secret`` settings are redacted wherever settings are printed, ``switch`` settings take a
boolean, and settings without an environment variable (modes of one run, such as ``--once``)
are command-line only.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Turns text (a flag's argument, an environment variable) into a value; raises ValueError
#: with a reason that reads well after "argument --port: " or "METRICS_PORT: ".
Parse = Callable[[str], Any]

#: The epilog line that explains the brackets in the help.
ENV_NOTE = "A flag shown with [VARIABLE] can also be set from that environment variable."

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def text(value: str) -> str:
    return value


def boolean(value: str) -> bool:
    """A switch from the environment: 1/true/yes/on or 0/false/no/off, in any case."""
    word = value.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise ValueError(f"not a yes or no: {value!r} (use 1, true, yes, on or 0, false, no, off)")


def whole(low: int, high: int | None = None) -> Parse:
    """A whole number from ``low`` to ``high`` (no upper bound if None)."""

    def whole_number(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"not a whole number: {value!r}") from None
        if number < low or (high is not None and number > high):
            bounds = f"{low}-{high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bounds}, not {number}")
        return number

    return whole_number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not number > 0 or not math.isfinite(number):  # nan compares false: refused here too
        raise ValueError(f"must be a positive number, not {value}")
    return number


def non_negative_float(value: str) -> float:
    try:
        if float(value) == 0:  # any spelling of zero: 0, 0.00, 0e0
            return 0.0
    except ValueError:
        pass  # positive_float says why
    return positive_float(value)


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of one program.

    ``name`` is the config field, the argparse dest and the configuration file's key; the flag
    is derived from it (``max_clients`` -> ``--max-clients``). ``env`` is None only for a mode
    of one run (``--once``, ``--json``), which neither the environment nor a file may set.
    """

    name: str
    help: str
    env: str | None = None
    parse: Parse = text
    default: Any = None
    #: The help section ("access and limits"); None for the main options.
    group: str | None = None
    #: Settings with the same key here are mutually exclusive on the command line.
    exclusive: str | None = None
    #: A token: its value is never shown (help, errors, printed settings).
    secret: bool = False
    #: A flag without an argument (``--demo``); from the environment it takes a `boolean`.
    switch: bool = False
    metavar: str | None = None
    #: What the help says the default is, when the value itself says too little ("any").
    shown_default: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def from_env(self, value: str) -> Any:
        """The value of this setting's environment variable, or a SettingError naming it."""
        try:
            return boolean(value) if self.switch else self.parse(value)
        except ValueError as exc:
            reason = "not a valid value" if self.secret else str(exc)
            raise SettingError(f"environment variable {self.env}: {reason}") from None

    def help_line(self) -> str:
        """The help text with its environment variable and default, e.g. "port [METRICS_PORT]
        (default 3000)"."""
        line = self.help
        if self.env:
            line += f" [{self.env}]"
        shown = self.shown_default
        if shown is None and not (self.switch or self.secret or self.default is None):
            shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        if shown is not None:
            line += f" (default {shown})"
        return line.replace("%", "%%")  # argparse formats help with %


class SettingError(ValueError):
    """A value that cannot be used; the message names where it came from."""


class Config(argparse.Namespace):
    """Resolved settings by attribute (``config.port``); ``origin(name)`` says where each
    value came from: "flag", "env" or "default"."""

    def __init__(self) -> None:
        super().__init__()
        self._origins: dict[str, tuple[str, Setting]] = {}

    def origin(self, name: str) -> str:
        return self._origins[name][0]

    def source(self, name: str) -> str:
        """Where a value came from, for an error message: "--port" or "METRICS_PORT"."""
        origin, setting = self._origins[name]
        return f"environment variable {setting.env}" if origin == "env" else setting.flag


def build_parser(settings: Iterable[Setting], **kwargs: Any) -> argparse.ArgumentParser:
    """An argparse parser with one flag per setting, grouped as declared.

    No flag has a default: a flag that is absent leaves its setting unset, so `parse` can tell
    "given" from "defaulted" and let the environment fill the gap.
    """
    parser = argparse.ArgumentParser(**kwargs)
    groups: dict[str | None, Any] = {None: parser}
    exclusive: dict[str, Any] = {}
    for s in settings:
        if s.group not in groups:
            groups[s.group] = parser.add_argument_group(s.group)
        where = groups[s.group]
        if s.exclusive:
            if s.exclusive not in exclusive:
                exclusive[s.exclusive] = where.add_mutually_exclusive_group()
            where = exclusive[s.exclusive]
        common: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS}
        if s.switch:
            where.add_argument(s.flag, action="store_true", help=s.help_line(), **common)
        else:
            where.add_argument(
                s.flag,
                type=_for_argparse(s.parse),
                metavar=s.metavar,
                help=s.help_line(),
                **common,
            )
    return parser


def _for_argparse(parse: Parse) -> Parse:
    """argparse prints an ArgumentTypeError's own message; a ValueError would become "invalid
    whole_number value", which says less."""

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def resolve(
    settings: Iterable[Setting], config: Config, environ: Mapping[str, str] | None = None
) -> Config:
    """Fill every setting the command line left unset: from its environment variable if that
    is set and not empty, else from its default. Raises SettingError naming the variable.

    A variable is read only when its flag is absent, so a flag overrides a bad variable.
    """
    env = os.environ if environ is None else environ
    for s in settings:
        if hasattr(config, s.name):
            origin = "flag"
        elif s.env and env.get(s.env, ""):
            setattr(config, s.name, s.from_env(env[s.env]))
            origin = "env"
        else:
            setattr(config, s.name, s.default)
            origin = "default"
        config._origins[s.name] = (origin, s)
    return config


def parse(
    parser: argparse.ArgumentParser,
    settings: Iterable[Setting],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Flags, then the environment, then defaults; a bad value of either exits 2 with one
    line (argparse's usage and error), like any usage error."""
    config = parser.parse_args(argv, namespace=Config())
    try:
        return resolve(settings, config, environ)
    except SettingError as exc:
        parser.error(str(exc))

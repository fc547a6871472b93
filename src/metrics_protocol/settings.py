"""Every setting declared once: name, flag, environment variable, type, default and help.

Each program declares a table of `Setting`s (``metrics_server/settings.py``,
``metrics_tui/settings.py``). From the table come the argparse parser, whose help line for each
flag names its environment variable and its default, and the values, resolved in this order:

    flag > environment variable > configuration file > default

`parse` returns a `Config` that also says where each value came from (``config.origin(name)``),
which a program needs when an explicit flag means more than an inherited variable.

The configuration file is named by the setting called ``config`` (``--config FILE`` and its
variable), if the table has one. It is TOML, its keys the settings' names (the flag's words:
``--max-clients`` is ``max_clients``), each value of the setting's TOML type (`toml_type`) and
checked with its `parse`; anything else is refused with the file, the line and the key. A
``secret`` setting (a token) may be given as ``token_file = PATH`` (the file's content) or
``token_env = NAME`` (that variable's value), or as itself only in a file that no one but its
owner can read; secrets are never printed. Paths in a file (settings whose metavar is PATH or
FILE) start from the file's directory, ``~`` being the home directory. Settings without an
environment variable (modes of one run, such as ``--once``) are command-line only.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from metrics_protocol.configfile import (
    ConfigFile,
    ConfigFileError,
    KeyPath,
    dotted,
    toml_key,
    toml_value,
    type_name,
)

#: Turns text (a flag's argument, an environment variable) into a value; raises ValueError
#: with a reason that reads well after "argument --port: " or "METRICS_PORT: ".
Parse = Callable[[str], Any]

#: The epilog line that explains the brackets in the help.
ENV_NOTE = "A flag shown with [VARIABLE] can also be set from that environment variable."

#: The setting that names the configuration file; it cannot be set in the file itself.
CONFIG = "config"
#: How a secret can be given in a file without writing it there: ``token_file``, ``token_env``.
SECRET_FORMS = ("file", "env")

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


def toml_type(parse: Parse) -> type:
    """The TOML type a configuration file must give for a setting parsed by ``parse``: int for
    `whole`, float for the float parsers, str for everything else (a switch takes a bool)."""
    return getattr(parse, "toml_type", str)


def _typed(kind: type) -> Callable[[Parse], Parse]:
    def mark(parse: Parse) -> Parse:
        parse.toml_type = kind  # type: ignore[attr-defined]
        return parse

    return mark


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

    return _typed(int)(whole_number)


@_typed(float)
def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not number > 0 or not math.isfinite(number):  # nan compares false: refused here too
        raise ValueError(f"must be a positive number, not {value}")
    return number


@_typed(float)
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
    #: A one-letter flag as well as the long one ("-o").
    short: str | None = None
    #: A flag that may be given more than once: its values are joined with commas, as its
    #: variable spells a list (``--url A --url B`` is ``METRICS_WS_URL=A,B``).
    repeatable: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def in_file(self) -> bool:
        """Whether a configuration file may set it: not a mode of one run, not the file's name."""
        return self.env is not None and self.name != CONFIG

    @property
    def is_path(self) -> bool:
        """A file or directory name: in a configuration file, relative to the file."""
        return self.metavar in ("PATH", "FILE")

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


@dataclass(frozen=True, slots=True)
class FileValue:
    """A setting's value from a configuration file.

    ``load`` gives the value; for ``token_file`` / ``token_env`` it reads the file or variable
    only when called, so a flag or variable that overrides the file spares that read. ``shown``
    is the key and value ``--print-config`` may write back (None for a secret written in the
    file itself).
    """

    file: ConfigFile
    path: KeyPath
    load: Callable[[], Any] = field(repr=False)
    shown: tuple[str, Any] | None = field(repr=False)


class Config(argparse.Namespace):
    """Resolved settings by attribute (``config.port``); ``origin(name)`` says where each
    value came from: "flag", "env", "file" or "default" (a program may add its own, such as
    the monitor's named servers). ``settings_file`` is the configuration file read, if any."""

    def __init__(self) -> None:
        super().__init__()
        self._origins: dict[str, tuple[str, Setting]] = {}
        self._from_file: dict[str, FileValue] = {}
        self.settings_file: ConfigFile | None = None

    def origin(self, name: str) -> str:
        return self._origins[name][0]

    def set(self, s: Setting, value: Any, origin: str, where: FileValue | None = None) -> None:
        """Give ``s`` a value and record where it came from (``where``: its place in a file)."""
        setattr(self, s.name, value)
        self._origins[s.name] = (origin, s)
        if where is not None:
            self._from_file[s.name] = where
        else:
            self._from_file.pop(s.name, None)

    def file_value(self, name: str) -> FileValue | None:
        """The configuration file's entry a value came from, if it did."""
        return self._from_file.get(name)

    def source(self, name: str) -> str:
        """Where a value came from, for an error message: "--port", "environment variable
        METRICS_PORT" or "server.toml, line 3: port"."""
        origin, setting = self._origins[name]
        if (where := self._from_file.get(name)) is not None:
            return f"{where.file.where(where.path)}: {dotted(where.path)}"
        return f"environment variable {setting.env}" if origin == "env" else setting.flag

    def described(self, name: str) -> str:
        """Where a value came from, for --print-config: "flag --port", "file f.toml, line 3"."""
        origin, setting = self._origins[name]
        if (where := self._from_file.get(name)) is not None:
            return f"{origin} {where.file.where(where.path)}"
        if origin == "env":
            return f"environment variable {setting.env}"
        return f"flag {setting.flag}" if origin == "flag" else origin


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
        flags = (s.short, s.flag) if s.short else (s.flag,)
        if s.switch:
            where.add_argument(*flags, action="store_true", help=s.help_line(), **common)
        else:
            where.add_argument(
                *flags,
                action=_Joined if s.repeatable else "store",
                type=_for_argparse(s.parse),
                metavar=s.metavar,
                help=s.help_line(),
                **common,
            )
    return parser


class _Joined(argparse.Action):
    """A repeatable flag's values, joined with commas in the order given."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if before is None else f"{before},{values}")


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
    settings: Iterable[Setting],
    config: Config,
    environ: Mapping[str, str] | None = None,
    from_file: Mapping[str, FileValue] | None = None,
) -> Config:
    """Fill every setting the command line left unset: from its environment variable if that
    is set and not empty, else from the configuration file's values (`file_values`), else from
    its default. Raises SettingError naming the variable, ConfigFileError naming the file's line.

    A variable is read only when its flag is absent, so a flag overrides a bad variable.
    """
    env = os.environ if environ is None else environ
    layer = from_file or {}
    for s in settings:
        if s.name in config._origins:  # resolved already (the configuration file's name)
            continue
        if hasattr(config, s.name):
            config.set(s, getattr(config, s.name), "flag")
        elif s.env and env.get(s.env, ""):
            config.set(s, s.from_env(env[s.env]), "env")
        elif s.name in layer:
            config.set(s, layer[s.name].load(), "file", layer[s.name])
        else:
            config.set(s, s.default, "default")
    return config


def parse(
    parser: argparse.ArgumentParser,
    settings: Iterable[Setting],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    default_file: str | None = None,
    tables: Collection[str] = (),
) -> Config:
    """Flags, then the environment, then the configuration file, then defaults.

    A bad flag or variable exits 2 with one line (argparse's usage and error), like any usage
    error; a configuration file that cannot be used exits 2 with one line naming the file, the
    line and the key. The file is the ``config`` setting's (flag, then variable), else
    ``default_file``, which may be missing (an explicit one may not). ``tables`` are top-level
    tables the program reads itself from ``config.settings_file.data``.
    """
    settings = tuple(settings)
    env = os.environ if environ is None else environ
    config = parser.parse_args(argv, namespace=Config())
    try:
        layer: dict[str, FileValue] = {}
        named = next((s for s in settings if s.name == CONFIG), None)
        if named is not None:
            resolve([named], config, env)
            path = config.config if config.config is not None else default_file
            if path:  # --config '' reads no file, not even the default one
                config.settings_file = _read(path, explicit=config.config is not None)
                if config.settings_file is None:
                    config.config = None
                else:
                    config.config = path
                    layer = file_values(config.settings_file, settings, env, tables=tables)
        return resolve(settings, config, env, layer)
    except SettingError as exc:
        parser.error(str(exc))
    except ConfigFileError as exc:
        fail_in_file(parser, str(exc))


def _read(path: str, *, explicit: bool) -> ConfigFile | None:
    try:
        return ConfigFile.read(path)
    except FileNotFoundError:
        if explicit:
            raise ConfigFileError(f"{path}: no such file") from None
        return None


def fail_in_file(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """Exit 2 with one line, "prog: error: f.toml, line 3: ...": the usage has nothing to do
    with a file's mistake."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def refuse(parser: argparse.ArgumentParser, config: Config, name: str, message: str) -> NoReturn:
    """Exit 2 for a value that cannot be used, ``message`` already naming its source: one line
    if it came from a file, argparse's usage and error otherwise."""
    if config.file_value(name) is not None:
        fail_in_file(parser, message)
    parser.error(message)


# --------------------------------------------------------------------------- files


def file_values(
    file: ConfigFile,
    settings: Iterable[Setting],
    environ: Mapping[str, str] | None = None,
    *,
    tables: Collection[str] = (),
) -> dict[str, FileValue]:
    """The settings a configuration file gives, by name, each checked against its type.

    Raises ConfigFileError for an unknown key (with a suggestion), a key that belongs to the
    command line, a wrong type or value, or two forms of one secret. Top-level ``tables`` are
    left to the caller.
    """
    known = {s.name: s for s in settings}
    forms = {
        f"{s.name}_{form}": (s, form)
        for s in known.values()
        if s.secret and s.in_file
        for form in SECRET_FORMS
    }
    values: dict[str, FileValue] = {}
    for key, raw in file.data.items():
        if key in tables:
            continue
        path = (key,)
        if key in forms:
            s, form = forms[key]
        elif key in known and known[key].in_file:
            s, form = known[key], "value"
        elif key in known:
            raise file.error(path, f"{known[key].flag} is for the command line only")
        else:
            names = [*(n for n, s in known.items() if s.in_file), *forms, *tables]
            raise ConfigFileError(f"{file.where(path)}: {unknown_key(key, names)}")
        if s.name in values:
            raise file.error(path, f"give only one of {', '.join(secret_keys(s.name))}")
        values[s.name] = file_value(file, path, s, raw, form, environ)
    return values


def unknown_key(key: str, names: Iterable[str]) -> str:
    """ "unknown key 'max_client' (did you mean 'max_clients'?)"."""
    close = difflib.get_close_matches(key, list(names), n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def secret_keys(name: str) -> list[str]:
    return [f"{name}_{form}" for form in SECRET_FORMS] + [name]


def file_value(
    file: ConfigFile,
    path: KeyPath,
    s: Setting,
    raw: Any,
    form: str = "value",
    environ: Mapping[str, str] | None = None,
) -> FileValue:
    """One setting's value at ``path`` of a file. ``form`` is "value", or for a secret "file"
    (``token_file``: read the token from that file) or "env" (``token_env``: from that
    variable). Refusals are ConfigFileErrors naming the line and the key."""
    env = os.environ if environ is None else environ
    if form == "file":
        where = file.resolve_path(_string(file, path, raw))
        load = lambda: _secret_from_file(file, path, s, where)  # noqa: E731
        return FileValue(file, path, load, (path[-1], where))
    if form == "env":
        name = _string(file, path, raw)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise file.error(path, f"not an environment variable name: {name!r}")
        load = lambda: _secret_from_env(file, path, s, name, env)  # noqa: E731
        return FileValue(file, path, load, (path[-1], name))
    if s.secret and file.readable_by_others():
        raise file.error(
            path,
            f"a token in a file others can read (mode {file.mode:04o}): use "
            f"{s.name}_file or {s.name}_env, or make the file private (chmod 600 {file.path})",
        )
    try:
        value = from_toml(s, raw)
    except ValueError as exc:
        raise file.error(path, "not a valid value" if s.secret else str(exc)) from None
    if s.is_path and isinstance(value, str):
        value = file.resolve_path(value)
    return FileValue(file, path, lambda: value, None if s.secret else (path[-1], value))


def from_toml(s: Setting, raw: Any) -> Any:
    """A TOML value as the setting's value; ValueError says why not (a type, or the reason of
    the setting's own `parse`)."""
    want = bool if s.switch else toml_type(s.parse)
    wrong = ValueError(f"expected {_WANTED[want]}, not {type_name(raw)}")
    if isinstance(raw, bool) != (want is bool):
        raise wrong
    if want is bool:
        return raw
    if want is int:
        if not isinstance(raw, int):
            raise wrong
        return s.parse(str(raw))
    if want is float:
        if not isinstance(raw, int | float):
            raise wrong
        return s.parse(repr(float(raw)))
    if not isinstance(raw, str):
        raise wrong
    return s.parse(raw)


_WANTED = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _string(file: ConfigFile, path: KeyPath, raw: Any) -> str:
    if not isinstance(raw, str):
        raise file.error(path, f"expected a string, not {type_name(raw)}")
    if not raw:
        raise file.error(path, "expected a string, not an empty one")
    return raw


def _secret_from_file(file: ConfigFile, path: KeyPath, s: Setting, where: str) -> Any:
    try:
        with open(where, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise file.error(path, f"cannot read {where}: {reason}") from None
    if not token:
        raise file.error(path, f"{where} is empty")
    return _secret(file, path, s, token)


def _secret_from_env(
    file: ConfigFile, path: KeyPath, s: Setting, name: str, env: Mapping[str, str]
) -> Any:
    if not env.get(name, ""):
        raise file.error(path, f"environment variable {name} is not set")
    return _secret(file, path, s, env[name])


def _secret(file: ConfigFile, path: KeyPath, s: Setting, text_: str) -> Any:
    try:
        return s.parse(text_)
    except ValueError:
        raise file.error(path, "not a valid value") from None


# --------------------------------------------------------------------------- printing


def as_toml(
    settings: Iterable[Setting],
    config: Config,
    *,
    header: Sequence[str] = (),
    instead: Mapping[str, str] | None = None,
) -> str:
    """The resolved settings as a TOML configuration file that loads back to the same values:
    one line per setting, with a comment saying where its value came from.

    Paths are written absolute (the file may be read from elsewhere); secrets never: a secret
    that came from ``token_file`` or ``token_env`` is written as that reference, any other
    only as a comment. A setting without a value is a comment too (TOML has no null), as are
    those in ``instead`` (name -> why), whose value would not mean the same when loaded.
    """
    out = [f"# {line}" if line else "#" for line in header]
    for s in settings:
        if not s.in_file:
            continue
        value, origin = getattr(config, s.name), config.described(s.name)
        where = config.file_value(s.name)
        if instead and s.name in instead:
            out.append(f"# {s.name}: {instead[s.name]}")
        elif s.secret and where is not None and where.shown is not None:
            key, shown = where.shown
            out.append(f"{toml_key(key)} = {toml_value(shown)}  # {origin}")
        elif s.secret and value is not None:
            out.append(f"# {s.name}: set, not printed ({origin})")
        elif value is None:
            default = f" (default {s.shown_default})" if s.shown_default else ""
            out.append(f"# {s.name}: not set{default}")
        else:
            if s.is_path and isinstance(value, str):
                value = os.path.abspath(value)
            out.append(f"{toml_key(s.name)} = {toml_value(value)}  # {origin}")
    return "\n".join(out) + "\n"


def example_toml(
    settings: Iterable[Setting],
    *,
    header: Sequence[str] = (),
    samples: Mapping[str, Any] | None = None,
) -> str:
    """A configuration file documenting every setting a file may hold, each commented out at
    its default (or at a value from ``samples`` where it has none): "# " starts prose, "#"
    right before a key starts a line that can be uncommented as it is."""
    samples = samples or {}
    out = [f"# {line}" if line else "#" for line in header]
    for s in settings:
        if not s.in_file:
            continue
        out.append("")
        about = s.help_line().replace("%%", "%")
        if s.secret:
            about += (
                f". Give it as {s.name}_file = PATH (the token is that file's content) or "
                f"{s.name}_env = NAME (that environment variable's value); {s.name} = "
                "TOKEN itself is refused unless no one but the owner can read this file."
            )
        out.extend(_wrapped(about[0].upper() + about[1:]))
        if s.secret:
            out.append(f"#{s.name}_file = {toml_value(samples.get(s.name, s.name + '.txt'))}")
        elif s.default is None:
            out.append(f"#{s.name} = {toml_value(samples.get(s.name, _placeholder(s)))}")
        else:
            out.append(f"#{s.name} = {toml_value(s.default)}")
    return "\n".join(out) + "\n"


def _placeholder(s: Setting) -> Any:
    kind = toml_type(s.parse)
    if kind is int:
        return 10
    if kind is float:
        return 1.0
    return (s.metavar or "VALUE").lower()


def _wrapped(text_: str, width: int = 98) -> list[str]:
    import textwrap

    return [f"# {line}" for line in textwrap.wrap(text_, width - 2, break_on_hyphens=False)]

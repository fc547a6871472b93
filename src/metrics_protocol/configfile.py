"""A TOML configuration file that can say on which line each key is.

tomllib gives the data but no positions, and a refusal is only useful with a line number
("server.toml, line 7: unknown key 'max_client'"). `key_lines` finds them with a small scan of
the text: table headers (``[a.b]``, ``[[a]]``, counted per array) and ``key = ...`` lines, bare,
quoted or dotted keys alike, skipping the inside of multi-line strings. A key it cannot place (one
inside an inline table) is reported at the line of the nearest enclosing key or table.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: A path to a value: table names and keys, with the position of an array-of-tables entry.
KeyPath = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_KEY = rf"(?:{_BARE}|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
_DOTTED = rf"{_KEY}(?:[ \t]*\.[ \t]*{_KEY})*"
# Patterns as text, compiled (and cached by ``re``) on first use: most runs read no file, and
# the monitor's start-up should not pay for them.
_HEADER = rf"[ \t]*(\[\[?)[ \t]*({_DOTTED})[ \t]*\]"
_ASSIGN = rf"[ \t]*({_DOTTED})[ \t]*="
_STRING = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_AT = r" \((?:at line (\d+), column (\d+)|at end of document)\)$"


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; the message names the file and the line."""


def _key_parts(dotted: str) -> list[str]:
    """``a."b.c".d`` -> ["a", "b.c", "d"]; tomllib undoes the quoting."""
    import tomllib  # here and in read(): only a run that has a file pays for the import

    parts = re.findall(_KEY, dotted)
    return [p if re.fullmatch(_BARE, p) else next(iter(tomllib.loads(f"{p} = 0"))) for p in parts]


def key_lines(text: str) -> dict[KeyPath, int]:
    """The line (from 1) of each table header and key of a TOML document, by key path.

    An entry of an array of tables is a path step of its own: the second ``[[alerts]]`` table's
    ``name`` is ``("alerts", 1, "name")``. Dotted keys also give their prefixes a line.
    """
    lines: dict[KeyPath, int] = {}
    arrays: dict[KeyPath, int] = {}  # array-of-tables path -> entries so far
    table: KeyPath = ()
    in_string: str | None = None  # the delimiter of the multi-line string being skipped
    depth = 0  # brackets left open by a multi-line array being skipped
    for number, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2:
                in_string = None
            continue
        if depth > 0:
            depth += _brackets(line)
            continue
        if header := re.match(_HEADER, line):
            path: KeyPath = ()
            for part in _key_parts(header[2]):
                path = (*path, part)
                if path in arrays:  # [a.b] after [[a]] is inside a's latest entry
                    path = (*path, arrays[path] - 1)
            if header[1] == "[[":
                bare = path[:-1] if path and isinstance(path[-1], int) else path
                arrays[bare] = arrays.get(bare, 0) + 1
                path = (*bare, arrays[bare] - 1)
            table = path
            lines.setdefault(table, number)
            continue
        if assign := re.match(_ASSIGN, line):
            path = table
            for part in _key_parts(assign[1]):
                path = (*path, part)
                lines.setdefault(path, number)
            rest = line[assign.end() :]
            for quotes in ('"""', "'''"):
                if rest.count(quotes) % 2:
                    in_string = quotes
            if in_string is None:
                depth = max(0, _brackets(rest))
    return lines


def _brackets(value: str) -> int:
    """Brackets a line opens minus those it closes, outside strings and comments."""
    code = re.sub(_STRING, "", value).partition("#")[0]
    return code.count("[") - code.count("]")


@dataclass
class ConfigFile:
    """A parsed TOML file: its data, and where each key is for error messages."""

    path: str
    text: str = field(repr=False)
    data: dict[str, Any] = field(repr=False)
    mode: int | None = None  # the permission bits, None where they mean nothing (Windows)
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: str) -> ConfigFile:
        """Read and parse ``path``; raises ConfigFileError (OSError's reason, TOML syntax with
        its line, text that is not UTF-8) and FileNotFoundError for a missing file, which a
        caller may take as "no configuration"."""
        try:
            with open(path, "rb") as f:
                info = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ConfigFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigFileError(f"{path}, line {line}: not UTF-8 text") from None
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(_syntax_error(path, text, str(exc))) from None
        mode = None if os.name == "nt" else stat.S_IMODE(info.st_mode)
        return cls(path, text, data, mode, key_lines(text))

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, else of the nearest enclosing key or table that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def where(self, path: Sequence[str | int]) -> str:
        """ "server.toml, line 7" (or just the file when nothing places it)."""
        line = self.line(path)
        return f"{self.path}, line {line}" if line is not None else self.path

    def error(self, path: Sequence[str | int], reason: str) -> ConfigFileError:
        """ "server.toml, line 7: servers.prod.url: reason" for the value at ``path``."""
        return ConfigFileError(f"{self.where(path)}: {dotted(path)}: {reason}")

    def readable_by_others(self) -> bool:
        """Whether anyone but the owner may read the file (a group or world read bit)."""
        return self.mode is not None and bool(self.mode & (stat.S_IRGRP | stat.S_IROTH))

    def resolve_path(self, value: str) -> str:
        """A path written in the file: ``~`` is the home directory, and a relative path is
        taken from the file's own directory (not from wherever the program was started)."""
        value = os.path.expanduser(value)
        base = os.path.dirname(os.path.abspath(self.path))
        return os.path.normpath(os.path.join(base, value))


def dotted(path: Sequence[str | int]) -> str:
    """A key path as written in TOML: ``servers.prod.url``; ``alerts[1].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if re.fullmatch(_BARE, part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{name}" if out else name
    return out


def _syntax_error(path: str, text: str, message: str) -> str:
    """tomllib's message with its position moved to the front: "f.toml, line 3: Invalid
    value (column 9)"."""
    at = re.search(_AT, message)
    if at is None:
        return f"{path}: {message}"
    reason = message[: at.start()]
    if at[1] is None:  # "at end of document": the last line
        return f"{path}, line {max(1, len(text.splitlines()))}: {reason} (at the end of the file)"
    return f"{path}, line {at[1]}: {reason} (column {at[2]})"


# --------------------------------------------------------------------------- writing TOML


def toml_value(value: Any) -> str:
    """A scalar as TOML: strings with every control character escaped (TOML forbids them
    raw, DEL included), booleans in lower case, floats as Python writes them (``0.25``,
    ``1e-05``, both valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or ord(ch) == 0x7F:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_key(name: str) -> str:
    return name if re.fullmatch(_BARE, name) else toml_value(name)


#: How a TOML value is described in an error, by its Python type; bool before int, which it is.
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "true or false"),
    (int, "a whole number"),
    (float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def type_name(value: Any) -> str:
    """How a TOML value is described in an error: "a string", "a table", ..."""
    return next((name for t, name in _TYPE_NAMES if isinstance(value, t)), "a date or time")

"""The monitor's configuration file: defaults, named servers, key bindings and alert rules.

The file is ``$XDG_CONFIG_HOME/metrics-tui/config.toml`` (``~/.config/metrics-tui/config.toml``
without the variable), or ``--config FILE`` / ``METRICS_TUI_CONFIG``. Its top-level keys are the
settings' names (``url``, ``theme``, ``timeout``, ...), read by `metrics_protocol.settings`
between the environment and the defaults. Besides them:

* ``[servers.NAME]``: ``url`` (or a list of URLs to fail over between), one of ``token_env``
  / ``token_file`` (``token`` itself only in a file no one else can read), ``cafile`` or
  ``insecure``. ``metrics-tui NAME`` connects to it: what the entry says wins over the
  environment and the top-level keys, and only flags win over it; what it leaves out (a
  token) is not taken from elsewhere, so a token meant for one server never goes to another.
* ``[keys]``: binding id -> key(s), ``quit = "ctrl+q"`` (see `key_actions`).
* ``[[alerts]]``: the alert rules, kept as written in `MonitorConfig.alerts_raw` (a list of
  tables) for the rules' parser; `alert_line` places a rule's key for its refusals.

Every refusal is a ConfigFileError: one line with the file, the line and the key.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from metrics_protocol import settings
from metrics_protocol.configfile import ConfigFile, ConfigFileError, KeyPath, toml_value
from metrics_protocol.settings import FileValue
from metrics_tui.alerts import figures_by_path
from metrics_tui.settings import SETTINGS

#: Top-level tables that are not settings.
TABLES = ("servers", "keys", "alerts")
#: What a [servers.NAME] table may hold.
SERVER_KEYS = ("url", "token", "token_file", "token_env", "cafile", "insecure")
#: Keys whose meaning Textual fixes: ctrl+c and ctrl+q quit whatever the bindings say.
RESERVED = {"ctrl+c": "quit", "ctrl+q": "quit"}
MODIFIERS = ("ctrl", "alt", "shift", "meta", "super", "hyper")

_BY_NAME = {s.name: s for s in SETTINGS}


def default_path(environ: Mapping[str, str] | None = None) -> str:
    """$XDG_CONFIG_HOME/metrics-tui/config.toml; the XDG spec ignores a relative value."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return os.path.join(base, "metrics-tui", "config.toml")


@dataclass(frozen=True)
class Server:
    """A ``[servers.NAME]`` entry, checked; its token is read only when `token` is called."""

    name: str
    path: KeyPath
    values: dict[str, FileValue]

    def value(self, name: str) -> Any:
        entry = self.values.get(name)
        return entry.load() if entry is not None else None

    @property
    def url(self) -> str:
        return self.value("url")

    def token_source(self, environ: Mapping[str, str] | None = None) -> str:
        """Where the token comes from, never the token: "env PROD_TOKEN", "file PATH"."""
        entry = self.values.get("token")
        if entry is None:
            return "no token"
        if entry.shown is None:
            return "token in the config file"
        key, value = entry.shown
        if key == "token_env":
            env = os.environ if environ is None else environ
            return f"env {value}" + ("" if env.get(value) else " (not set)")
        return f"file {value}"


@dataclass
class MonitorConfig:
    """What the configuration file says besides the settings."""

    file: ConfigFile | None = None
    servers: dict[str, Server] = field(default_factory=dict)
    #: Binding id -> comma-separated Textual keys, for `App.set_keymap`.
    keys: dict[str, str] = field(default_factory=dict)
    #: The ``[[alerts]]`` tables as written, in order, for the alert rules' parser.
    alerts_raw: list[dict[str, Any]] = field(default_factory=list)

    def alert_line(self, index: int, key: str | None = None) -> str:
        """ "config.toml, line 12" for rule ``index`` (its ``key`` if given), for a refusal."""
        assert self.file is not None
        path: KeyPath = ("alerts", index) if key is None else ("alerts", index, key)
        return self.file.where(path)


def load(file: ConfigFile | None, environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """The servers, keys and alert tables of ``file`` (None: no file), each checked."""
    if file is None:
        return MonitorConfig()
    data = file.data
    servers = _table(file, ("servers",), data.get("servers", {}))
    keys = _table(file, ("keys",), data.get("keys", {}))
    alerts = data.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise file.error(("alerts",), "expected [[alerts]] tables")
    return MonitorConfig(
        file,
        {name: _server(file, name, entry, environ) for name, entry in servers.items()},
        _keymap(file, keys) if keys else {},
        alerts,
    )


def _table(file: ConfigFile, path: KeyPath, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise file.error(path, f"expected a table, as [{path[-1]}]")
    return value


def _server(file: ConfigFile, name: str, entry: Any, environ: Mapping[str, str] | None) -> Server:
    path: KeyPath = ("servers", name)
    entry = _table(file, path, entry)
    if "url" not in entry:
        raise file.error(path, "no url (every named server needs one)")
    values: dict[str, FileValue] = {}
    for key, raw in entry.items():
        where = (*path, key)
        if key not in SERVER_KEYS:
            message = settings.unknown_key(key, SERVER_KEYS)
            raise ConfigFileError(f"{file.where(where)}: {message} in [servers.{name}]")
        base, _, form = key.partition("_")
        if base == "token" and "token" in values:
            raise file.error(where, "give only one of token_env, token_file or token")
        setting = _BY_NAME[base if base == "token" else key]
        if key == "url" and isinstance(raw, list) and all(isinstance(u, str) for u in raw):
            raw = ",".join(raw)  # several URLs: the monitor fails over between them
        values[setting.name] = settings.file_value(
            file, where, setting, raw, form or "value", environ
        )
    url = values["url"].load()
    if "cafile" in values and "insecure" in values:
        raise file.error((*path, "insecure"), "give cafile or insecure, not both")
    for key in ("cafile", "insecure"):
        if key in values and values[key].load() and not url.startswith("wss://"):
            raise file.error((*path, key), "needs a wss:// url")
    return Server(name, path, values)


# --------------------------------------------------------------------------- keys


def key_actions() -> dict[str, str]:
    """The actions a ``[keys]`` table may rebind: binding id -> default keys, from the
    monitor's BINDINGS (a binding with an ``id`` is rebindable)."""
    from metrics_tui.app import MetricsApp

    out: dict[str, str] = {}
    for binding in MetricsApp.BINDINGS:
        if getattr(binding, "id", None):
            out[binding.id] = binding.key  # type: ignore[union-attr]
    return out


def _keymap(file: ConfigFile, table: dict[str, Any]) -> dict[str, str]:
    actions = key_actions()
    keymap: dict[str, str] = {}
    for action, raw in table.items():
        where = ("keys", action)
        if action not in actions:
            message = settings.unknown_key(action, actions)
            raise ConfigFileError(
                f"{file.where(where)}: {message.replace('key', 'action', 1)} in [keys]; "
                f"the actions are {', '.join(actions)}"
            )
        given = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(given, list) or not given or not all(isinstance(k, str) for k in given):
            raise file.error(where, 'expected a key ("ctrl+q"), or several ("q,ctrl+q")')
        keys = []
        for key in given:
            normal, problem = normalise_key(key.strip())
            if problem:
                raise file.error(where, problem)
            keys.append(normal)
        keymap[action] = ",".join(dict.fromkeys(keys))
    _check_clashes(file, {**actions, **keymap}, keymap)
    return keymap


def _check_clashes(file: ConfigFile, bound: dict[str, str], rebound: dict[str, str]) -> None:
    owner: dict[str, str] = {}
    for action, keys in bound.items():
        for key in keys.split(","):
            where = ("keys", action) if action in rebound else ("keys",)
            if RESERVED.get(key, action) != action:
                raise file.error(where, f"{key} always quits; choose another key")
            if key in owner:
                other = next(a for a in (action, owner[key]) if a in rebound)
                first = owner[key] if other == action else action
                raise file.error(
                    ("keys", other),
                    f"{key} is {first}'s key too; rebind {first} as well, or choose another",
                )
            owner[key] = action


def normalise_key(key: str) -> tuple[str, str | None]:
    """A key as Textual names it ("?" -> "question_mark", "ctrl+Q" kept as written), or why
    it is not a key: an unknown modifier, an unknown key name."""
    from textual.keys import KEY_NAME_REPLACEMENTS, Keys, _character_to_key, key_to_character

    if not key:
        return key, "an empty key name"
    *mods, base = key.split("+")
    for mod in mods:
        if mod not in MODIFIERS:
            return key, f"unknown modifier {mod!r} in {key!r} (use {', '.join(MODIFIERS)})"
    if len(base) == 1:
        if not base.isprintable() or base.isspace():
            return key, f"{key!r} is not a key name (space is 'space')"
        return "+".join([*mods, _character_to_key(base)]), None
    names = {k.value.rpartition("+")[2] for k in Keys} | {"space", "tab", "enter", "backspace"}
    # Textual's own names for some characters ("/" is "slash"), which key_to_character does
    # not turn back into the character.
    names |= set(KEY_NAME_REPLACEMENTS.values())
    if (base in names and not base.startswith("<")) or key_to_character(base) is not None:
        return key, None
    return key, f"unknown key name {base!r} in {key!r} (e.g. q, ctrl+q, f5, question_mark)"


# --------------------------------------------------------------------------- --list


def server_list(config: MonitorConfig, environ: Mapping[str, str] | None = None) -> str:
    """``--list``: one line per named server: name, URL, where its token comes from."""
    rows = [("NAME", "URL", "TOKEN")]
    rows += [(s.name, s.url, s.token_source(environ)) for s in config.servers.values()]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "".join(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}\n" for r in rows)


# --------------------------------------------------------------------------- the example


def example(actions: Mapping[str, str] | None = None) -> str:
    """examples/metrics-tui.toml: every key the file may hold (a test keeps it current)."""
    top = settings.example_toml(
        SETTINGS,
        header=[
            "metrics-tui configuration: every key, commented out at its default.",
            "Its place: $XDG_CONFIG_HOME/metrics-tui/config.toml (~/.config/metrics-tui/",
            "config.toml), or --config FILE (or METRICS_TUI_CONFIG=FILE); a missing file is",
            "fine. The top-level keys are the flags' names; a flag or an environment variable",
            "wins over them, they win over the defaults. Paths are taken from this file's",
            "directory (~ is your home). A mistake stops the monitor with its line (exit code",
            "2). Lines starting with # and a key can be uncommented as they are. [VARIABLE] is",
            "the environment variable that wins over a key. Modes of one run stay on the command",
            f"line: {', '.join(s.flag for s in SETTINGS if s.env is None)}.",
        ],
        samples={
            "token": "token.txt",
            "cafile": "ca.pem",
            "max_retries": 10,
            "theme": "ansi-dark",
            "export_dir": "~/exports",
        },
    )
    bound = key_actions() if actions is None else actions
    keys = "\n".join(f"#{action} = {toml_value(key)}" for action, key in bound.items())
    indent = "#               "
    figures = textwrap.fill(", ".join(figures_by_path()), 96, initial_indent=indent,
                            subsequent_indent=indent)  # fmt: skip
    return top + _SERVERS + _KEYS.format(keys=keys) + _ALERTS.format(figures=figures)


_SERVERS = """
# Named servers: metrics-tui NAME connects to [servers.NAME]; metrics-tui --list lists them.
# An entry's url, token, cafile and insecure win over the environment and the keys above (only
# flags win over them); a token it does not name is not sent. The token comes from token_env (an
# environment variable) or token_file (a file's content, surrounding whitespace removed); token
# = "..." itself is refused unless no one but this file's owner can read it (chmod 600).
# A list of URLs fails over between them: url = ["wss://a.example/ws/metrics", "wss://b...."].
#[servers.prod]
#url = "wss://metrics.example:3000/ws/metrics"
#token_env = "PROD_METRICS_TOKEN"
#
#[servers.staging]
#url = "wss://staging.example:3000/ws/metrics"
#token_file = "~/.config/metrics-tui/staging.token"
#cafile = "~/.config/metrics-tui/staging-ca.pem"
#
#[servers.lab]
#url = "wss://10.0.0.7:3000/ws/metrics"
#insecure = true
"""

_KEYS = """
# Keys: an action = a key ("ctrl+q", "f5", "question_mark" or "?"), or several ("q,ctrl+q").
# A rebound action loses its old key unless it is listed too; the footer and the help show the
# keys in use. ctrl+c and ctrl+q always quit.
#[keys]
{keys}
"""

_ALERTS = """
# Alert rules, any number of them, each an [[alerts]] table:
#   name      shown in the status line, the `a` list and --check's line; unique
#   metric    a figure by its dotted wire path, one of
{figures}
#             or rate(FIGURE, WINDOW): the change over the window (negative when it fell),
#             or stale(FIGURE, WINDOW): true when the figure has not changed for that long
#   above     fires while the value is above this number (strictly), or
#   below     fires while it is below it (strictly); one of the two, neither for stale()
#   severity  "warning" (the default) or "critical"
#   for       optional: how long it must hold before it fires ("0s", "30s", "5m", "1h30m")
#   bell      optional: ring the terminal bell when it starts firing (default false)
#[[alerts]]
#name = "payment failures"
#metric = "transactions.failed"
#above = 0
#severity = "critical"
#for = "0s"
#bell = true
#
#[[alerts]]
#name = "failures climbing"
#metric = "rate(transactions.failed, 5m)"
#above = 10
#
#[[alerts]]
#name = "quiet shop"
#metric = "stale(revenue.total, 15m)"
"""

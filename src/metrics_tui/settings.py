"""metrics-tui's settings: the one declaration behind its flags, env vars, help and the
top-level keys of its configuration file (config.py reads the rest of that file)."""

from __future__ import annotations

from urllib.parse import urlsplit

from metrics_protocol.settings import Setting, positive_float, whole
from metrics_protocol.wire import RANGE_STEPS as STEPS
from metrics_tui.history import endpoint_text, parse_endpoint
from metrics_tui.wire import DEFAULT_URL, split_urls, validate_ws_url

#: --once gives up after this many seconds; a server that accepts and never answers used to
#: hold it for 20 s (10 s for the WebSocket handshake, then 10 s more over REST).
ONCE_TIMEOUT = 5.0


def ws_url(value: str) -> str:
    """A ws:// or wss:// URL, or several separated by commas (the monitor fails over between
    them), all of one scheme; a refusal quotes a URL without its query, which may hold a token."""
    urls = split_urls(value)
    for url in urls:
        try:
            validate_ws_url(url)
        except ValueError as exc:
            bare = url.partition("?")[0]
            raise ValueError(str(exc).replace(repr(url), repr(bare))) from None
    if not urls:
        raise ValueError("no URL given")
    if len({urlsplit(u).scheme for u in urls}) > 1:
        raise ValueError("give every URL with the same scheme, ws:// or wss://")
    return ",".join(urls)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "config",
        "TOML file of defaults, named servers, keys and alerts; flags and variables win over it",
        env="METRICS_TUI_CONFIG",
        metavar="FILE",
        shown_default="$XDG_CONFIG_HOME/metrics-tui/config.toml, if it exists",
    ),
    Setting(
        "list",
        "list the named servers of the configuration file and exit",
        default=False,
        switch=True,
    ),
    Setting(
        "url",
        "WebSocket URL; give it more than once (or comma-separated) to fail over between them",
        env="METRICS_WS_URL",
        repeatable=True,
        parse=ws_url,
        default=DEFAULT_URL,
        exclusive="where",
        metavar="URL",
    ),
    Setting(
        "demo",
        "start a built-in metrics-server with demo traffic and watch it",
        default=False,
        switch=True,
        exclusive="where",
    ),
    Setting("token", "bearer token", env="METRICS_TOKEN", secret=True, metavar="TOKEN"),
    Setting(
        "cafile",
        "PEM CA certificate(s) to trust for wss://, for a private CA",
        env="METRICS_CAFILE",
        exclusive="trust",
        metavar="FILE",
    ),
    # No variable: turning certificate checks off must be visible in the command that does it,
    # not inherited by every command run from that shell.
    Setting(
        "insecure",
        "wss:// without verifying the server's certificate (flagged on screen)",
        default=False,
        switch=True,
        exclusive="trust",
    ),
    Setting("once", "print one snapshot and exit", default=False, switch=True),
    Setting("json", "with --once: print the JSON data object", default=False, switch=True),
    # No variable: a plugin's mode belongs in its command line, like --once.
    Setting(
        "check",
        "print one monitoring-plugin line from the alert rules (implies --once); exit 0 OK, "
        "1 WARNING, 2 CRITICAL, 3 UNKNOWN",
        default=False,
        switch=True,
    ),
    Setting(
        "timeout",
        "with --once: give up when no answer comes within SECONDS",
        env="METRICS_TIMEOUT",
        parse=positive_float,
        default=ONCE_TIMEOUT,
        metavar="SECONDS",
    ),
    # No variable: METRICS_DB is the server's, and demo traffic must never land in its database.
    Setting(
        "db",
        "with --demo: keep the demo's data in PATH",
        metavar="PATH",
        shown_default="a temporary file, removed on exit",
    ),
    Setting(
        "max_retries",
        "give up after N reconnect attempts; r retries again",
        env="METRICS_MAX_RETRIES",
        parse=whole(0),
        shown_default="retry forever",
        metavar="N",
    ),
    Setting(
        "theme",
        "colour theme, e.g. ansi-dark or ansi-light for tmux",
        env="METRICS_THEME",
        metavar="NAME",
    ),
    Setting(
        "export_dir",
        "where e writes the charts' CSV files",
        env="METRICS_EXPORT_DIR",
        metavar="PATH",
        shown_default="the current directory",
    ),
)


def endpoint(value: str) -> str:
    """A range end: a date or an ISO 8601 datetime, sent as written (normalised)."""
    return endpoint_text(parse_endpoint(value))


def step(value: str) -> str:
    if value not in STEPS:
        raise ValueError(f"not a step: {value!r} (use {', '.join(STEPS)})")
    return value


def export_format(value: str) -> str:
    if value not in ("csv", "json"):
        raise ValueError(f"not a format: {value!r} (use csv or json)")
    return value


#: The settings ``metrics-tui export`` takes as flags: the monitor's connection (``--url``,
#: ``--token``, ``--cafile``, ``--insecure``, and ``--config`` for their defaults), then what to
#: fetch. None of its own has a variable: a range is a choice of one run.
EXPORT_FLAGS: tuple[Setting, ...] = (
    *(s for s in SETTINGS if s.name in ("config", "url", "token", "cafile", "insecure")),
    Setting(
        "from",
        "start of the range: 2026-11-01, or an ISO 8601 datetime; without an offset it is in "
        "the server's --tz",
        parse=endpoint,
        metavar="WHEN",
        group="range (required)",
    ),
    Setting(
        "to",
        "end of the range, not included",
        parse=endpoint,
        metavar="WHEN",
        group="range (required)",
    ),
    Setting(
        "step",
        f"one point per STEP: {', '.join(STEPS)}",
        parse=step,
        metavar="STEP",
        group="range (required)",
    ),
    Setting(
        "format",
        "csv (a header, then a row per point) or json (the server's range message)",
        parse=export_format,
        default="csv",
        metavar="FORMAT",
        group="output",
    ),
    Setting(
        "output",
        "write to FILE instead of standard output",
        metavar="FILE",
        group="output",
        short="-o",
    ),
)
#: What ``metrics-tui export`` resolves: its flags, and the rest of the monitor's settings so
#: that a configuration file written for the monitor is read without complaint.
EXPORT_SETTINGS: tuple[Setting, ...] = (
    *EXPORT_FLAGS,
    *(s for s in SETTINGS if s not in EXPORT_FLAGS),
)

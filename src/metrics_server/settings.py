"""metrics-server's settings: the one declaration behind its flags, env vars, help and its
configuration file (``--config``; ``examples/metrics-server.toml`` is generated from it).

`ServerConfig` (app.py) stays a hand-written dataclass; tests/server/test_server_config.py checks it
against this table field for field.
"""

from __future__ import annotations

from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics_protocol.settings import (
    Setting,
    non_negative_float,
    positive_float,
    whole,
)
from metrics_protocol.wire import MAX_BATCH_BYTES

from .logs import log_format, log_level
from .store import parse_store_url

ACCESS = "access and limits"
LOGGING = "logging"


def time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def store_url(value: str) -> str:
    """sqlite:///PATH or postgresql://..., checked for shape only (no driver needed)."""
    parse_store_url(value)  # ValueError says what is wrong
    return value


def broker_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a port that is not a number raises ValueError
    except ValueError as exc:
        raise ValueError(f"malformed broker URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(
            f"a broker URL is redis://host:6379/0 or rediss://host:6379/0 (TLS), not {value!r}"
        )
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "config",
        "TOML file of settings, its keys the flags' names (max_clients = 500); flags and "
        "variables win over it",
        env="METRICS_CONFIG",
        metavar="FILE",
    ),
    Setting(
        "print_config",
        "print the settings in effect as TOML (tokens left out) and exit",
        default=False,
        switch=True,
    ),
    Setting("host", "address to listen on", env="METRICS_HOST", default="127.0.0.1"),
    Setting(
        "port",
        "port, 0 for any free one",
        env="METRICS_PORT",
        parse=whole(0, 65535),
        default=3000,
    ),
    Setting(
        "db",
        "SQLite database file",
        env="METRICS_DB",
        default="metrics.db",
        metavar="PATH",
        shown_default="./metrics.db; with --demo a temporary file, removed on exit",
    ),
    Setting(
        "store",
        "where events and figures are kept: sqlite:///relative.db, sqlite:////absolute.db or "
        "postgresql://user@host:5432/dbname, which several servers may share "
        "(docs/SCALING.md); --db PATH is the same as sqlite:///PATH",
        env="METRICS_STORE",
        parse=store_url,
        metavar="URL",
        shown_default="sqlite:///metrics.db",
    ),
    Setting(
        "broker",
        "a Redis URL, redis://host:6379/0 (rediss:// for TLS), for cross-instance fan-out "
        "(coming; for now recorded, so that servers sharing a PostgreSQL store agree on it)",
        env="METRICS_BROKER",
        parse=broker_url,
        metavar="URL",
    ),
    Setting(
        "interval",
        "seconds between metrics snapshots",
        env="METRICS_INTERVAL",
        parse=positive_float,
        default=5.0,
        metavar="SECONDS",
    ),
    Setting(
        "tz",
        "time zone of today/week/month",
        env="METRICS_TZ",
        parse=time_zone,
        default="UTC",
        metavar="ZONE",
    ),
    Setting(
        "history",
        "snapshots replayed to a new subscriber",
        env="METRICS_HISTORY",
        parse=whole(1, 10_000),
        default=20,
        metavar="N",
    ),
    Setting(
        "push_interval",
        "least seconds between change-driven pushes, 0 pushes every change",
        env="METRICS_PUSH_INTERVAL",
        parse=non_negative_float,
        default=0.25,
        metavar="SECONDS",
    ),
    Setting(
        "retention",
        "days of raw events to keep; older ones are pruned a few thousand at a time, and the "
        "figures and date ranges (kept in rollups) stay as they were",
        env="METRICS_RETENTION",
        parse=positive_float,
        metavar="DAYS",
        shown_default="keep every event",
    ),
    Setting("demo", "generate synthetic traffic", env="METRICS_DEMO", default=False, switch=True),
    Setting(
        "token",
        "required from subscribers and REST clients, as 'Authorization: Bearer TOKEN' or "
        "?token=TOKEN",
        env="METRICS_TOKEN",
        group=ACCESS,
        secret=True,
        metavar="TOKEN",
    ),
    Setting(
        "ingest_token",
        "required from producers on /ws/ingest",
        env="METRICS_INGEST_TOKEN",
        group=ACCESS,
        secret=True,
        metavar="TOKEN",
    ),
    Setting(
        "origins",
        "comma-separated Origin values browsers may connect from",
        env="METRICS_ORIGINS",
        group=ACCESS,
        metavar="ORIGINS",
        shown_default="any",
    ),
    Setting(
        "certfile",
        "PEM certificate (chain): serve wss:// and https://",
        env="METRICS_CERTFILE",
        group=ACCESS,
        metavar="FILE",
    ),
    Setting(
        "keyfile",
        "PEM private key, if not in --certfile",
        env="METRICS_KEYFILE",
        group=ACCESS,
        metavar="FILE",
    ),
    Setting(
        "max_clients",
        "subscribers at once; more get HTTP 503",
        env="METRICS_MAX_CLIENTS",
        parse=whole(1),
        default=10_000,
        group=ACCESS,
        metavar="N",
    ),
    Setting(
        "max_message_size",
        "largest message a subscriber may send, in bytes; larger closes with 1009",
        env="METRICS_MAX_MESSAGE_SIZE",
        parse=whole(1),
        default=64 * 1024,
        group=ACCESS,
        metavar="BYTES",
    ),
    Setting(
        "max_batch_size",
        "largest batch a producer may send, in bytes (the default fits 1000 events of the "
        "longest ids); larger closes with 1009",
        env="METRICS_MAX_BATCH_SIZE",
        parse=whole(1),
        default=MAX_BATCH_BYTES,
        group=ACCESS,
        metavar="BYTES",
    ),
    Setting(
        "rate_limit",
        "messages a second a subscriber may send (bursts of twice that); beyond it an error, "
        "then close 1008",
        env="METRICS_RATE_LIMIT",
        parse=positive_float,
        default=20.0,
        group=ACCESS,
        metavar="N",
    ),
    Setting(
        "log_format",
        "text for people, or json for log shippers: one object a line with ts, level, event "
        "and context",
        env="METRICS_LOG_FORMAT",
        parse=log_format,
        default="text",
        group=LOGGING,
        metavar="FORMAT",
    ),
    Setting(
        "log_level",
        "debug, info, warning or error: the least level logged; debug adds a line per "
        "subscriber connecting and leaving",
        env="METRICS_LOG_LEVEL",
        parse=log_level,
        default="info",
        group=LOGGING,
        metavar="LEVEL",
    ),
)

"""Log lines: readable text for people, or JSON for log shippers (one object a line).

Each line the server writes itself names an ``event`` (a short, stable snake_case name) and
carries its context (``conn``, ``peer``, ``route``, ``batch``, ``code``, ...) through `event()`.
In text the message alone is written, as it always was; in JSON the line is
``{"ts": ISO 8601 UTC, "level", "event", "message", ...context}``. Lines from other code (a
library's warning) get ``"event": "log"`` and their logger's name.

Nothing here sees a token: request paths are logged without their query string (``redact``),
and websockets' own logger is held at WARNING whatever ``--log-level`` says, because its debug
lines quote raw request headers (``Authorization: Bearer ...``) and request lines (``?token=``).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
#: The text format, as it has always been.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"

log = logging.getLogger("metrics_server")


def _choice(kind: str, choices: tuple[str, ...]) -> Any:
    def parse(value: str) -> str:
        word = value.strip().lower()
        if word not in choices:
            raise ValueError(f"unknown {kind} {value!r}; use one of {', '.join(choices)}")
        return word

    parse.__name__ = kind.replace(" ", "_")
    return parse


#: Settings' parsers: ``--log-level`` and ``--log-format``, in any case.
log_level = _choice("log level", LEVELS)
log_format = _choice("log format", FORMATS)


def event(
    level: int, name: str, message: str, *args: Any, exc_info: bool = False, **context: Any
) -> None:
    """One line from the server: ``message % args`` for people, ``name`` and ``context`` for
    machines. A context value of None is left out; ``exc_info`` adds the traceback."""
    if log.isEnabledFor(level):
        ctx = {k: v for k, v in context.items() if v is not None}
        log.log(level, message, *args, exc_info=exc_info, extra={"event": name, "context": ctx})


def peer(connection: Any) -> str | None:
    """``host:port`` of a connection's client (``[v6]:port`` for IPv6), or None."""
    address = getattr(connection, "remote_address", None)
    if not address:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def conn_id(connection: Any) -> str:
    """A short id for a connection, the same on its opening and closing lines."""
    return connection.id.hex[:12]


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a traceback goes into ``exc`` as text."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
        }
        if record.name != log.name:
            line["logger"] = record.name
        line["message"] = record.getMessage()
        for key, value in getattr(record, "context", {}).items():
            line.setdefault(key, value)  # never over ts, level or event
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(fmt: str = "text", level: str = "info") -> None:
    """Send the process's log lines to stderr in ``fmt`` from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Its debug lines quote raw headers (tokens); and one line per connection at info would
    # drown the log of a busy server: our own lines say what matters, at chosen levels.
    logging.getLogger("websockets").setLevel(logging.WARNING)

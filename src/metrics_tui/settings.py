"""metrics-tui's settings: the one declaration behind its flags, env vars and help."""

from __future__ import annotations

from metrics_protocol.settings import Setting, whole
from metrics_tui.wire import DEFAULT_URL, validate_ws_url

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "url",
        "WebSocket URL",
        env="METRICS_WS_URL",
        parse=validate_ws_url,
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
)

"""Command line: ``metrics-tui [--url URL] [--token TOKEN] [--once] [--json] [--demo] ...``.

Exit codes: 0 ok, 1 could not connect (``--once``), 2 usage error.
Textual is imported only for the interactive monitor, so ``--once`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from metrics_tui import __version__
from metrics_tui.wire import DEFAULT_URL, validate_ws_url

EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_USAGE = 2

#: --demo samples every 2 s so the charts visibly move within a minute.
DEMO_INTERVAL = 2.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="metrics-tui",
        description="Live terminal monitor for metrics-server.",
        epilog="Keys: q quit, r reconnect, p pause, ? help, ctrl+p commands and themes.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        default=None,
        help=f"WebSocket URL (env METRICS_WS_URL, default {DEFAULT_URL})",
    )
    where.add_argument(
        "--demo",
        action="store_true",
        help="start a built-in metrics-server with demo traffic and watch it",
    )
    p.add_argument("--token", default=None, help="bearer token (env METRICS_TOKEN)")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="with --once: print the JSON data object")
    p.add_argument(
        "--max-retries",
        type=_non_negative,
        default=None,
        metavar="N",
        help="give up after N reconnect attempts (default: retry forever); r retries again",
    )
    p.add_argument(
        "--theme",
        default=None,
        metavar="NAME",
        help="colour theme, e.g. ansi-dark or ansi-light for tmux",
    )
    p.add_argument("--version", action="version", version=f"metrics-tui {__version__}")
    return p


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _quiet_logging() -> None:
    """Library warnings must never reach the terminal the TUI is drawing on."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and not args.once:
        parser.error("--json needs --once")
    url = args.url or os.environ.get("METRICS_WS_URL") or DEFAULT_URL
    try:
        validate_ws_url(url)
    except ValueError as exc:
        parser.error(str(exc))
    token = args.token or os.environ.get("METRICS_TOKEN") or None
    if args.theme and not args.once:
        from textual.theme import BUILTIN_THEMES

        if args.theme not in BUILTIN_THEMES:
            parser.error(
                f"unknown theme {args.theme!r}; choose from {', '.join(sorted(BUILTIN_THEMES))}"
            )
    _quiet_logging()
    try:
        return asyncio.run(_run(args, url, token))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, url: str, token: str | None) -> int:
    if not args.demo:
        return await _watch(args, url, token)
    from metrics_server.app import MetricsServer, ServerConfig

    with tempfile.TemporaryDirectory(prefix="metrics-tui-demo-") as tmp:
        cfg = ServerConfig(
            host="127.0.0.1",
            port=0,
            db=os.path.join(tmp, "demo.db"),
            interval=DEMO_INTERVAL,
            tz="UTC",
            history=20,
            demo=True,
        )
        async with MetricsServer(cfg) as srv:
            return await _watch(args, srv.url, token)


async def _watch(args: argparse.Namespace, url: str, token: str | None) -> int:
    if args.once:
        return await _once(url, token, as_json=args.json)
    from metrics_tui.app import MetricsApp

    app = MetricsApp(url, token=token, max_retries=args.max_retries, theme=args.theme)
    await app.run_async()
    return app.return_code or 0


async def _once(url: str, token: str | None, *, as_json: bool) -> int:
    from metrics_tui.once import print_snapshot
    from metrics_tui.wire import fetch_once

    try:
        snapshot = await fetch_once(url, token)
    except Exception as exc:  # one line, never a traceback: scripts read this
        print(f"metrics-tui: cannot get metrics from {url}: {_reason(exc)}", file=sys.stderr)
        return EXIT_CONNECT
    print_snapshot(snapshot, as_json=as_json)
    return EXIT_OK


def _reason(exc: BaseException) -> str:
    text: Any = str(exc).strip() or exc.__class__.__name__
    return str(text).splitlines()[0]

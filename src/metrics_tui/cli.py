"""Command line: ``metrics-tui [--url URL] [--token T] [--cafile F | --insecure] [--once] ...``.

Exit codes: 0 ok, 1 could not connect (``--once``), 2 usage error.
Textual is imported only for the interactive monitor, so ``--once`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import tempfile
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from metrics_protocol import settings
from metrics_tui.settings import SETTINGS
from metrics_tui.wire import tls_context

EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_USAGE = 2

#: --demo samples every 2 s so the charts visibly move within a minute.
DEMO_INTERVAL = 2.0


def build_parser() -> argparse.ArgumentParser:
    p = settings.build_parser(
        SETTINGS,
        prog="metrics-tui",
        description="Live terminal monitor for metrics-server.",
        epilog=f"{settings.ENV_NOTE} Keys: q quit, r reconnect, p pause, ? help, ctrl+p "
        "commands and themes.",
    )
    p.add_argument("--version", action=_Version, help="show the version and exit")
    return p


class _Version(argparse.Action):
    """``--version``, with the version looked up only when asked for (it costs start-up time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from metrics_tui import __version__

        print(f"metrics-tui {__version__}")
        parser.exit()


def _quiet_logging() -> None:
    """Library warnings must never reach the terminal the TUI is drawing on."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = settings.parse(parser, SETTINGS, argv)
    if args.json and not args.once:
        parser.error("--json needs --once")
    url, token = args.url, args.token
    tls = _tls(parser, args, url)
    if args.theme and not args.once:
        from textual.theme import BUILTIN_THEMES

        if args.theme not in BUILTIN_THEMES:
            parser.error(
                f"{args.source('theme')}: unknown theme {args.theme!r}; "
                f"choose from {', '.join(sorted(BUILTIN_THEMES))}"
            )
    _quiet_logging()
    try:
        return asyncio.run(_run(args, url, token, tls))
    except KeyboardInterrupt:
        return 130


def _tls(parser: argparse.ArgumentParser, args: settings.Config, url: str) -> ssl.SSLContext | None:
    """The TLS context for a wss:// URL; a CA file that cannot be loaded is a usage error.

    An explicit --cafile or --insecure with a ws:// URL is refused (most likely wss:// was
    meant); METRICS_CAFILE is ignored there, since it may be set for other servers.
    """
    explicit = args.insecure or args.origin("cafile") == "flag"
    if explicit and (args.demo or urlsplit(url).scheme != "wss"):
        parser.error("--cafile and --insecure need a wss:// URL")
    cafile = None if args.insecure else args.cafile
    try:
        return tls_context(url, cafile=cafile, insecure=args.insecure)
    except (OSError, ssl.SSLError) as exc:
        parser.error(f"cannot load CA file {cafile!r}: {exc.strerror or exc}")


async def _run(
    args: argparse.Namespace, url: str, token: str | None, tls: ssl.SSLContext | None
) -> int:
    if not args.demo:
        return await _watch(args, url, token, tls)
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
            return await _watch(args, srv.url, token, None)


async def _watch(
    args: argparse.Namespace, url: str, token: str | None, tls: ssl.SSLContext | None
) -> int:
    if args.once:
        return await _once(url, token, tls, as_json=args.json)
    from metrics_tui.app import MetricsApp

    app = MetricsApp(url, token=token, tls=tls, max_retries=args.max_retries, theme=args.theme)
    await app.run_async()
    return app.return_code or 0


async def _once(url: str, token: str | None, tls: ssl.SSLContext | None, *, as_json: bool) -> int:
    from metrics_tui.once import print_snapshot
    from metrics_tui.wire import Unauthorized, fetch_once, is_insecure

    if is_insecure(tls):
        print("metrics-tui: warning: TLS certificate not verified (--insecure)", file=sys.stderr)
    where = url.partition("?")[0]  # a ?token= must not end up in logs
    try:
        snapshot = await fetch_once(url, token, tls=tls)
    except Unauthorized as exc:
        print(f"metrics-tui: {where}: {_reason(exc)}, check --token", file=sys.stderr)
        return EXIT_CONNECT
    except Exception as exc:  # one line, never a traceback: scripts read this
        print(f"metrics-tui: cannot get metrics from {where}: {_reason(exc)}", file=sys.stderr)
        return EXIT_CONNECT
    print_snapshot(snapshot, as_json=as_json)
    return EXIT_OK


def _reason(exc: BaseException) -> str:
    text: Any = str(exc).strip() or exc.__class__.__name__
    return str(text).splitlines()[0]

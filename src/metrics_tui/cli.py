"""Command line: ``metrics-tui [--url URL] [--token T] [--cafile F | --insecure] [--once] ...``.

Exit codes: 0 ok, 1 could not connect (``--once``), 2 usage error (also a terminal that cannot
draw the monitor: TERM=dumb; or --demo without the server). Textual is imported only for the
interactive monitor, so ``--once`` stays quick. No message ever shows the token.
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


def token_problem(token: str) -> str | None:
    """Why a token cannot be sent, or None. The reason never quotes the token.

    A bearer token travels in an HTTP header, where a line break would end the header (and
    websockets' refusal quoted the token up to it); httpx, used for REST, sends ASCII only.
    """
    if not token.isascii():
        return "holds a non-ASCII character"
    if not token.isprintable():
        return "holds a line break or another control character"
    return None


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
    if args.origin("timeout") == "flag" and not args.once:
        parser.error("--timeout needs --once")
    if args.db is not None and not args.demo:
        parser.error("--db needs --demo")
    url, token = args.url, args.token
    if token is not None and (why := token_problem(token)):
        parser.error(f"{args.source('token')} {why}, which cannot be sent in an HTTP header")
    tls = _tls(parser, args, url)
    if args.theme and not args.once:
        from textual.theme import BUILTIN_THEMES

        if args.theme not in BUILTIN_THEMES:
            parser.error(
                f"{args.source('theme')}: unknown theme {args.theme!r}; "
                f"choose from {', '.join(sorted(BUILTIN_THEMES))}"
            )
    if not args.once and os.environ.get("TERM") == "dumb":
        # One line that fits 80 columns: a dumb terminal does not wrap for us.
        print(
            "metrics-tui: TERM=dumb cannot draw the monitor; use --once for plain output",
            file=sys.stderr,
        )
        return EXIT_USAGE
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
    # The one import of the server in the monitor: --demo runs one in this process.
    try:
        from metrics_server.app import MetricsServer, ServerConfig
    except ImportError as exc:
        print(
            f"metrics-tui: --demo needs metrics-server, which is not installed ({exc})",
            file=sys.stderr,
        )
        return EXIT_USAGE

    with tempfile.TemporaryDirectory(prefix="metrics-tui-demo-") as tmp:
        db = args.db or os.path.join(tmp, "demo.db")
        where = f"demo data in {db}" if args.db else f"demo data in {db}, removed on exit"
        cfg = ServerConfig(
            host="127.0.0.1",
            port=0,
            db=db,
            interval=DEMO_INTERVAL,
            tz="UTC",
            history=20,
            demo=True,
        )
        if args.once:
            print(f"metrics-tui: {where}", file=sys.stderr)
        async with MetricsServer(cfg) as srv:
            return await _watch(args, srv.url, token, None, notice=where.capitalize())


async def _watch(
    args: argparse.Namespace,
    url: str,
    token: str | None,
    tls: ssl.SSLContext | None,
    notice: str | None = None,
) -> int:
    if args.once:
        within = args.timeout
        return await _once(url, token, tls, as_json=args.json, within=within)
    from metrics_tui.app import MetricsApp

    app = MetricsApp(
        url,
        token=token,
        tls=tls,
        max_retries=args.max_retries,
        theme=args.theme,
        notice=notice,
    )
    await app.run_async()
    return app.return_code or 0


async def _once(
    url: str, token: str | None, tls: ssl.SSLContext | None, *, as_json: bool, within: float
) -> int:
    from metrics_tui.once import print_snapshot
    from metrics_tui.wire import Unauthorized, fetch_once, is_insecure

    if is_insecure(tls):
        print("metrics-tui: warning: TLS certificate not verified (--insecure)", file=sys.stderr)
    where = _without_query(url)  # a ?token= must not end up in logs
    try:
        # One deadline for everything: the WebSocket, then the REST fallback within what is left.
        async with asyncio.timeout(within):
            snapshot = await fetch_once(url, token, wait=within, tls=tls)
    except TimeoutError:
        print(f"metrics-tui: no answer from {where} within {within:g} s", file=sys.stderr)
        return EXIT_CONNECT
    except Unauthorized as exc:
        print(f"metrics-tui: {where}: {_reason(exc, token)}, check --token", file=sys.stderr)
        return EXIT_CONNECT
    except Exception as exc:  # one line, never a traceback: scripts read this
        print(
            f"metrics-tui: cannot get metrics from {where}: {_reason(exc, token)}",
            file=sys.stderr,
        )
        return EXIT_CONNECT
    print_snapshot(snapshot, as_json=as_json)
    return EXIT_OK


def _without_query(url: str) -> str:
    return url.partition("?")[0]


def _reason(exc: BaseException, token: str | None) -> str:
    """The first line of an error, with the token blanked out should a library quote it."""
    text = (str(exc).strip() or exc.__class__.__name__).splitlines()[0]
    return text.replace(token, "***") if token else text

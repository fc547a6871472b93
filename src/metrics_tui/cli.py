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

from metrics_tui.wire import DEFAULT_URL, tls_context, validate_ws_url

EXIT_OK = 0
EXIT_CONNECT = 1
EXIT_USAGE = 2

#: --demo samples every 2 s so the charts visibly move within a minute.
DEMO_INTERVAL = 2.0
#: --once gives up after this many seconds; a server that accepts and never answers used to
#: hold it for 20 s (10 s for the WebSocket handshake, then 10 s more over REST).
ONCE_TIMEOUT = 5.0


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
    trust = p.add_mutually_exclusive_group()
    trust.add_argument(
        "--cafile",
        default=None,
        metavar="FILE",
        help="PEM CA certificate(s) to trust for wss:// (env METRICS_CAFILE), for a private CA",
    )
    trust.add_argument(
        "--insecure",
        action="store_true",
        help="wss:// without verifying the server's certificate (flagged on screen)",
    )
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--json", action="store_true", help="with --once: print the JSON data object")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --once: give up when no answer comes within SECONDS (default {ONCE_TIMEOUT:g})",
    )
    p.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help="with --demo: keep the demo's data in PATH (default: a temporary file, removed "
        "on exit)",
    )
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


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


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
    args = parser.parse_args(argv)
    if args.json and not args.once:
        parser.error("--json needs --once")
    if args.timeout is not None and not args.once:
        parser.error("--timeout needs --once")
    if args.db is not None and not args.demo:
        parser.error("--db needs --demo")
    url = args.url or os.environ.get("METRICS_WS_URL") or DEFAULT_URL
    try:
        validate_ws_url(url)
    except ValueError as exc:  # the message quotes the URL: not its ?token=
        parser.error(str(exc).replace(repr(url), repr(_without_query(url))))
    token = args.token or os.environ.get("METRICS_TOKEN") or None
    if token is not None and (why := token_problem(token)):
        source = "--token" if args.token else "METRICS_TOKEN"
        parser.error(f"{source} {why}, which cannot be sent in an HTTP header")
    tls = _tls(parser, args, url)
    if args.theme and not args.once:
        from textual.theme import BUILTIN_THEMES

        if args.theme not in BUILTIN_THEMES:
            parser.error(
                f"unknown theme {args.theme!r}; choose from {', '.join(sorted(BUILTIN_THEMES))}"
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


def _tls(
    parser: argparse.ArgumentParser, args: argparse.Namespace, url: str
) -> ssl.SSLContext | None:
    """The TLS context for a wss:// URL; a CA file that cannot be loaded is a usage error.

    An explicit --cafile or --insecure with a ws:// URL is refused (most likely wss:// was
    meant); METRICS_CAFILE is ignored there, since it may be set for other servers.
    """
    if (args.cafile or args.insecure) and (args.demo or urlsplit(url).scheme != "wss"):
        parser.error("--cafile and --insecure need a wss:// URL")
    cafile = None if args.insecure else args.cafile or os.environ.get("METRICS_CAFILE") or None
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
        within = args.timeout or ONCE_TIMEOUT
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

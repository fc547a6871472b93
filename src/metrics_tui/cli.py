"""Command line: ``metrics-tui [SERVER] [--url URL] [--token T] [--cafile F | --insecure]
[--once] ...``; SERVER names a ``[servers.NAME]`` table of the configuration file (config.py).
``metrics-tui export --from WHEN --to WHEN --step STEP [-o FILE]`` writes a range (export.py).

Exit codes: 0 ok, 1 could not connect (``--once``), 2 usage error (also a terminal that cannot
draw the monitor: TERM=dumb; or --demo without the server). ``--check`` speaks the
monitoring-plugin convention instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a usage error,
no server, a refused token), and one line on stdout whatever happens. Textual is imported only
for the interactive monitor, so ``--once`` stays quick. No message ever shows the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import ssl
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

from metrics_protocol import settings
from metrics_protocol.configfile import ConfigFileError
from metrics_tui import config as config_file
from metrics_tui.alerts import UNKNOWN, Rule, RuleError, check_report, parse_rules, unknown_line
from metrics_tui.settings import EXPORT_FLAGS, EXPORT_SETTINGS, SETTINGS, ws_url
from metrics_tui.wire import is_insecure, redact, split_urls, tls_context

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
        "commands and themes, 1-6 and / ranges, e export; the configuration file's [keys] can "
        "rebind them. 'metrics-tui export --help': a range of past figures as CSV or JSON.",
    )
    p.add_argument(
        "server",
        nargs="?",
        metavar="SERVER",
        help="a named server of the configuration file ([servers.SERVER]); --list lists them",
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


def _as_plugin(parser: argparse.ArgumentParser) -> None:
    """Under --check a usage error is UNKNOWN (3) on stdout: a plugin's caller reads nothing
    else, and 2 would read as CRITICAL."""

    def error(message: str) -> NoReturn:
        print(unknown_line(f"metrics-tui: {message}"))
        sys.exit(UNKNOWN)

    def exit_(status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:  # --help, --version
            sys.exit(0)
        error((message or "").strip().removeprefix(f"{parser.prog}: error: "))

    parser.error = error  # type: ignore[method-assign]
    parser.exit = exit_  # type: ignore[method-assign]


def _alert_rules(
    parser: argparse.ArgumentParser, monitor: config_file.MonitorConfig
) -> tuple[Rule, ...]:
    """The file's ``[[alerts]]`` as rules; a bad one stops the program with its line."""
    try:
        return tuple(parse_rules(monitor.alerts_raw))
    except RuleError as exc:
        table = monitor.alerts_raw[exc.index] if exc.index < len(monitor.alerts_raw) else {}
        key = exc.key if isinstance(table, dict) and exc.key in table else None
        settings.fail_in_file(parser, f"{monitor.alert_line(exc.index, key)}: {exc}")


def _parse(
    parser: argparse.ArgumentParser, table: Iterable[settings.Setting], argv: Sequence[str]
) -> settings.Config:
    """Flags, then the environment, then the configuration file (whose servers, keys and
    alerts tables are not settings: config.py reads them)."""
    return settings.parse(
        parser, table, argv, default_file=config_file.default_path(), tables=config_file.TABLES
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    parser = build_parser()
    if "--check" in (sys.argv[1:] if argv is None else argv):
        _as_plugin(parser)
    args = _parse(parser, SETTINGS, argv)
    try:
        monitor = config_file.load(args.settings_file)
        if args.list:
            return _list(parser, args, monitor)
        if args.server is not None:
            _use_server(parser, args, monitor)
    except ConfigFileError as exc:
        settings.fail_in_file(parser, str(exc))
    args.alerts = _alert_rules(parser, monitor)
    if args.check:
        if args.json:
            parser.error("--check prints one status line: leave out --json")
        args.once = True
    if args.json and not args.once:
        parser.error("--json needs --once")
    if args.origin("timeout") == "flag" and not args.once:
        parser.error("--timeout needs --once")
    if args.db is not None and not args.demo:
        parser.error("--db needs --demo")
    if args.export_dir is not None and not os.path.isdir(args.export_dir):
        message = f"{args.source('export_dir')}: not a directory: {args.export_dir!r}"
        settings.refuse(parser, args, "export_dir", message)
    url, token = args.url, args.token
    try:  # each --url was checked alone; together they must share a scheme (one TLS context)
        url = ws_url(url)
    except ValueError as exc:
        settings.refuse(parser, args, "url", f"{args.source('url')}: {exc}")
    if token is not None and (why := token_problem(token)):
        message = f"{args.source('token')} {why}, which cannot be sent in an HTTP header"
        settings.refuse(parser, args, "token", message)
    tls = _tls(parser, args, url)
    if args.theme and not args.once:
        from textual.theme import BUILTIN_THEMES

        if args.theme not in BUILTIN_THEMES:
            settings.refuse(
                parser,
                args,
                "theme",
                f"{args.source('theme')}: unknown theme {args.theme!r}; "
                f"choose from {', '.join(sorted(BUILTIN_THEMES))}",
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
        return asyncio.run(_run(args, url, token, tls, monitor.keys))
    except KeyboardInterrupt:
        return 130


def _list(
    parser: argparse.ArgumentParser, args: settings.Config, monitor: config_file.MonitorConfig
) -> int:
    """``--list``: the named servers and where their tokens come from (never a token)."""
    if args.server is not None or args.once or args.demo:
        parser.error("--list takes no SERVER, --once or --demo")
    where = args.config or config_file.default_path()
    if monitor.file is None:
        print(f"metrics-tui: no configuration file ({where}), so no named servers", file=sys.stderr)
    elif not monitor.servers:
        print(f"metrics-tui: no [servers.NAME] tables in {where}", file=sys.stderr)
    else:
        print(config_file.server_list(monitor), end="")
    return EXIT_OK


#: What a named server sets; cafile and insecure go together (a flag for one drops both).
SERVER_SETTINGS = ("url", "token", "cafile", "insecure")


def _use_server(
    parser: argparse.ArgumentParser, args: settings.Config, monitor: config_file.MonitorConfig
) -> None:
    """Apply ``[servers.NAME]``: over the environment and the file's top-level keys, under
    flags; what the entry leaves out is unset, so no token goes to a server it was not meant
    for. An unknown name is a usage error that lists the known ones."""
    name = args.server
    if args.demo or args.origin("url") == "flag":
        parser.error("give SERVER, --url or --demo, not two of them")
    server = monitor.servers.get(name)
    if server is None:
        where = args.config or config_file.default_path()
        if monitor.file is None:
            parser.error(f"unknown server {name!r}: no configuration file ({where})")
        known = ", ".join(monitor.servers) or "none"
        hint = settings.unknown_key(name, monitor.servers).removeprefix(f"unknown key {name!r}")
        parser.error(f"unknown server {name!r}{hint}; {where} names: {known}")
    by_name = {s.name: s for s in SETTINGS}
    trust_flag = args.origin("cafile") == "flag" or args.origin("insecure") == "flag"
    for key in SERVER_SETTINGS:
        if args.origin(key) == "flag" or (key in ("cafile", "insecure") and trust_flag):
            continue
        entry = server.values.get(key)
        value = entry.load() if entry is not None else by_name[key].default
        args.set(by_name[key], value, "server", entry)


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
        message = f"cannot load CA file {cafile!r}: {exc.strerror or exc}"
        settings.refuse(parser, args, "cafile", message)


async def _run(
    args: argparse.Namespace,
    url: str,
    token: str | None,
    tls: ssl.SSLContext | None,
    keymap: dict[str, str] | None = None,
) -> int:
    if not args.demo:
        return await _watch(args, url, token, tls, keymap=keymap)
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
            notice = where.capitalize()
            return await _watch(args, srv.url, token, None, notice=notice, keymap=keymap)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Imports with the cyclic garbage collector off, and what they built frozen after.

    Start-up builds tens of thousands of objects that live as long as the process (classes,
    stylesheets, bindings): collecting as they come, and scanning them again in each full
    collection later, took ~30 ms of the ~0.3 s to the first figures. Frozen objects are still
    freed by reference counting; only the cycle scan skips them."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.freeze()


async def _watch(
    args: argparse.Namespace,
    url: str,
    token: str | None,
    tls: ssl.SSLContext | None,
    notice: str | None = None,
    keymap: dict[str, str] | None = None,
) -> int:
    if args.once:
        within = args.timeout
        url = split_urls(url)[0]  # one snapshot: from the first URL; failover is the monitor's
        if args.check:
            return await _check(url, token, tls, args.alerts, within=within)
        return await _once(url, token, tls, as_json=args.json, within=within)
    with collector_paused():
        from metrics_tui.app import MetricsApp

    app = MetricsApp(
        url,
        token=token,
        tls=tls,
        max_retries=args.max_retries,
        theme=args.theme,
        notice=notice,
        keymap=keymap,
        alerts=args.alerts,
        export_dir=args.export_dir,
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
    where = redact(url)  # a ?token= must not end up in logs
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


def export_main(argv: Sequence[str]) -> int:
    """``metrics-tui export``: exit 0, 1 when the server cannot be reached or refuses the
    token, 2 on bad arguments (ours, or the server's 400)."""
    parser = settings.build_parser(
        EXPORT_FLAGS,
        prog="metrics-tui export",
        description="Past figures over a range, one point per step, as CSV or JSON on "
        "standard output (or -o FILE). Long ranges are fetched in pages, with a progress bar "
        "on a terminal.",
        epilog=f"{settings.ENV_NOTE} Example: metrics-tui export --from 2026-11-01 --to "
        "2026-12-01 --step 1d -o november.csv",
    )
    args = _parse(parser, EXPORT_SETTINGS, argv)
    start, end, step = getattr(args, "from"), args.to, args.step
    missing = [f"--{n}" for n, v in (("from", start), ("to", end), ("step", step)) if v is None]
    if missing:
        parser.error(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
    from metrics_tui.history import parse_endpoint

    a, b = parse_endpoint(start), parse_endpoint(end)
    if (a.tzinfo is None) == (b.tzinfo is None) and b <= a:
        parser.error(f"--from must be before --to ({start} is not before {end})")
    if args.output not in (None, "-") and not os.path.isdir(
        os.path.dirname(os.path.abspath(args.output))
    ):
        parser.error(f"-o: no such directory for {args.output!r}")
    token = args.token
    if token is not None and (why := token_problem(token)):
        message = f"{args.source('token')} {why}, which cannot be sent in an HTTP header"
        settings.refuse(parser, args, "token", message)
    tls = _tls(parser, args, args.url)
    _quiet_logging()
    try:
        return asyncio.run(_export(args, token, tls))
    except KeyboardInterrupt:
        return 130


async def _export(args: settings.Config, token: str | None, tls: ssl.SSLContext | None) -> int:
    from metrics_tui import export

    url, span = args.url, (getattr(args, "from"), args.to, args.step)
    if is_insecure(tls):
        print("metrics-tui: warning: TLS certificate not verified (--insecure)", file=sys.stderr)
    bar = sys.stderr.isatty() and export.pages_needed(*span)
    progress, stop = export.progress_bar(0) if bar else (None, None)
    try:
        answer = await export.fetch(url, token, tls, *span, progress)
    except export.ExportFailed as exc:
        where, reason = redact(url), _reason(exc, token)
        line = f"cannot get the range from {where}: {reason}" if exc.code == 1 else reason
        print(f"metrics-tui export: {line}", file=sys.stderr)
        return exc.code
    finally:
        if stop is not None:
            stop()
    try:
        export.write(export.render(answer, args.format), args.output)
    except OSError as exc:
        print(f"metrics-tui export: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONNECT
    return EXIT_OK


async def _check(
    url: str, token: str | None, tls: ssl.SSLContext | None, rules: Sequence[Rule], within: float
) -> int:
    """``--check``: one line on stdout and a plugin's exit code, nothing on stderr; no server
    or a refused token is UNKNOWN."""
    from metrics_tui.wire import Unauthorized, fetch_once, is_insecure

    where = redact(url)  # a ?token= must not end up in the line
    try:
        async with asyncio.timeout(within):
            snapshot = await fetch_once(url, token, wait=within, tls=tls)
    except TimeoutError:
        print(unknown_line(f"no answer from {where} within {within:g} s"))
        return UNKNOWN
    except Unauthorized as exc:
        print(unknown_line(f"{where}: {_reason(exc, token)}, check --token"))
        return UNKNOWN
    except Exception as exc:
        print(unknown_line(f"cannot get metrics from {where}: {_reason(exc, token)}"))
        return UNKNOWN
    code, line = check_report(snapshot, rules)
    if is_insecure(tls):  # said in the line: a plugin's stderr is not read
        head, _, perf = line.partition(" | ")
        line = f"{head}; TLS certificate not verified | {perf}"
    print(line, flush=True)
    return code


def _reason(exc: BaseException, token: str | None) -> str:
    """The first line of an error, with the token blanked out should a library quote it."""
    text = (str(exc).strip() or exc.__class__.__name__).splitlines()[0]
    return text.replace(token, "***") if token else text

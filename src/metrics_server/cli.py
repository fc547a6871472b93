"""metrics-server command line: flags (each also from an env var), signals, one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace

from metrics_protocol import settings

from . import __version__, logs
from .app import MetricsServer, ServerConfig
from .hub import Limits
from .security import is_loopback, server_ssl_context
from .settings import SETTINGS
from .store import StoreError, parse_store_url
from .store.postgres import redact

log = logging.getLogger("metrics_server")

#: ``--demo`` without ``--db``: a temporary file, made by ``main`` and removed on exit, so that
#: fake revenue never lands in ./metrics.db where a real server would later show it.
DEMO_DB = ""


def build_parser() -> argparse.ArgumentParser:
    parser = settings.build_parser(
        SETTINGS,
        prog="metrics-server",
        description="Take business events, keep them in a store, and broadcast exact live "
        "metrics over ws://HOST:PORT/ws/metrics (REST: /api/v1/analytics/realtime-metrics).",
        epilog=settings.ENV_NOTE,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> ServerConfig:
    return server_config(parse_settings(argv))


def parse_settings(argv: Sequence[str] | None = None) -> settings.Config:
    """Flags > environment > --config file > defaults, checked as a whole (exit 2 if not)."""
    parser = build_parser()
    args = settings.parse(parser, SETTINGS, argv)
    if args.keyfile and not args.certfile:
        settings.refuse(parser, args, "keyfile", f"{args.source('keyfile')} needs --certfile")
    if args.certfile:
        try:  # fail now with a clear line, not at the first connection
            server_ssl_context(args.certfile, args.keyfile)
        except (OSError, ValueError) as exc:
            message = f"cannot load the TLS certificate or key: {exc}"
            settings.refuse(parser, args, "certfile", message)
    if args.origin("store") == args.origin("db") == "flag":
        settings.refuse(parser, args, "store", "--store and --db both name the store: give one")
    return args


#: Where a value came from, weakest first: the store is the --store or --db with the stronger.
_RANK = ("default", "file", "env", "flag")


def _store(args: settings.Config) -> tuple[str | None, str | None]:
    """(SQLite path, or None; PostgreSQL URL, or None). ``--db PATH`` is ``--store
    sqlite:///PATH``: of the two, the one set in the stronger place wins (flag > variable >
    file), --store on a tie."""
    if args.store is None or _RANK.index(args.origin("db")) > _RANK.index(args.origin("store")):
        return args.db, None
    kind, target = parse_store_url(args.store)
    return (target, None) if kind == "sqlite" else (args.db, target)


def print_config(args: settings.Config) -> str:
    """``--print-config``: the settings in effect as a TOML file that ``--config`` loads back
    to the same values; each line says where its value came from, and no token is printed."""
    header = [
        f"metrics-server {__version__}: the settings in effect, each with where it came from",
        "(flag > environment variable > configuration file > default). Tokens are not printed.",
    ]
    instead = {}
    if args.demo and args.origin("db") == "default":  # a path here would keep the demo's data
        instead["db"] = "not set: --demo keeps its data in a temporary file, removed on exit"
    if args.store and redact(args.store) != args.store:
        instead["store"] = f"{redact(args.store)}, its password not printed"
    return settings.as_toml(SETTINGS, args, header=header, instead=instead)


def example_config() -> str:
    """examples/metrics-server.toml: every key a configuration file may hold, at its default
    (a test checks the file against this)."""
    return settings.example_toml(
        SETTINGS,
        header=[
            "metrics-server configuration: every key, commented out at its default.",
            "Use it with: metrics-server --config FILE (or METRICS_CONFIG=FILE).",
            "Keys are the flags' names (--max-clients is max_clients); a flag or an environment",
            "variable wins over this file, which wins over the defaults. Paths are taken from",
            "this file's directory (~ is your home). An unknown key or a wrong type stops the",
            "server at start with the line (exit code 2). metrics-server --print-config shows",
            "the settings in effect in this format. [VARIABLE] is the environment variable that",
            "wins over a key.",
        ],
        samples={
            "store": "postgresql://metrics@db.example:5432/metrics",
            "broker": "redis://redis.example:6379/0",
            "token": "/run/secrets/metrics-read-token",
            "ingest_token": "/run/secrets/metrics-ingest-token",
            "origins": "https://dashboard.example,https://admin.example",
            "certfile": "/etc/metrics-server/fullchain.pem",
            "keyfile": "/etc/metrics-server/privkey.pem",
            "retention": 400.0,
        },
    )


def server_config(args: settings.Config) -> ServerConfig:
    """The ServerConfig for resolved settings. A setting is carried to the field of its name;
    the limits go into `Limits`, the comma-separated origins become a tuple, and --demo without
    a --db of its own gets a temporary database."""
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    values = {s.name: getattr(args, s.name) for s in SETTINGS if s.name in fields}
    if args.origins:
        values["origins"] = tuple(o.strip() for o in args.origins.split(",") if o.strip())
    values["db"], values["store"] = _store(args)
    if args.demo and args.origin("db") == args.origin("store") == "default":
        values["db"] = DEMO_DB
    rate = args.rate_limit
    limits = Limits(
        max_message=args.max_message_size,
        rate=rate,
        burst=2 * rate,
        max_batch=args.max_batch_size,
    )
    return ServerConfig(**values, limits=limits)


async def serve(config: ServerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with MetricsServer(config) as server:
        logs.event(
            logging.INFO,
            "server_start",
            "listening on %s (REST %s%s) %s=%s interval=%gs tz=%s%s",
            server.url,
            server.http_url,
            "/api/v1/analytics/realtime-metrics",
            *(("store", redact(config.store)) if config.store else ("db", config.db)),
            config.interval,
            config.tz,
            " demo traffic on" if config.demo else "",
            url=server.url,
            http_url=server.http_url,
            db=None if config.store else config.db,
            store=redact(config.store) if config.store else None,
            interval=config.interval,
            tz=config.tz,
            demo=config.demo,
            version=__version__,
        )
        if not is_loopback(config.host):
            where = config.host or "all interfaces"
            if not config.token:
                logs.event(
                    logging.WARNING,
                    "exposed_without_token",
                    "listening on %s without --token: anyone who can reach this port can read "
                    "the metrics",
                    where,
                    host=where,
                    token="--token",
                )
            if not config.ingest_token:
                logs.event(
                    logging.WARNING,
                    "exposed_without_token",
                    "listening on %s without --ingest-token: anyone who can reach this port can "
                    "send events",
                    where,
                    host=where,
                    token="--ingest-token",
                )
            if not config.certfile and (config.token or config.ingest_token):
                logs.event(
                    logging.WARNING,
                    "tokens_without_tls",
                    "tokens travel in clear text without --certfile (TLS)",
                )
        await stop.wait()
        logs.event(logging.INFO, "server_stopping", "shutting down")
    logs.event(logging.INFO, "server_stop", "stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_settings(argv)  # exits 2 with one line on a bad flag, variable or file
    if args.print_config:
        print(print_config(args), end="")
        return 0
    config = server_config(args)
    logs.configure(config.log_format, config.log_level)
    demo_dir = None
    if config.db == DEMO_DB:
        demo_dir = tempfile.TemporaryDirectory(prefix="metrics-server-demo-")
        config = replace(config, db=os.path.join(demo_dir.name, "demo.db"))
        logs.event(
            logging.INFO,
            "demo_database",
            "demo data goes to %s, removed on exit (--db keeps it)",
            config.db,
            db=config.db,
        )
    try:
        asyncio.run(serve(config))
    except StoreError as exc:
        return _fatal(config, f"metrics-server: {exc}")
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        return _fatal(
            config, f"metrics-server: cannot listen on {config.host}:{config.port}: {reason or exc}"
        )
    except KeyboardInterrupt:  # a second ^C during shutdown
        return 130
    finally:
        if demo_dir is not None:
            demo_dir.cleanup()
    return 0


def _fatal(config: ServerConfig, line: str) -> int:
    """The one line a failed start ends with: as it reads in text, or as a JSON log line (so
    that a log shipper parses every line). Returns the exit code, 1."""
    if config.log_format == "json":
        logs.event(logging.ERROR, "start_failed", "%s", line.removeprefix("metrics-server: "))
    else:
        print(line, file=sys.stderr)
    return 1

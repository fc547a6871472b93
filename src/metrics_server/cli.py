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

from . import __version__
from .app import MetricsServer, ServerConfig
from .hub import Limits
from .security import is_loopback, server_ssl_context
from .settings import SETTINGS
from .store import StoreError

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
    parser = build_parser()
    args = settings.parse(parser, SETTINGS, argv)
    if args.keyfile and not args.certfile:
        parser.error(f"{args.source('keyfile')} needs --certfile")
    if args.certfile:
        try:  # fail now with a clear line, not at the first connection
            server_ssl_context(args.certfile, args.keyfile)
        except (OSError, ValueError) as exc:
            parser.error(f"cannot load the TLS certificate or key: {exc}")
    return server_config(args)


def server_config(args: settings.Config) -> ServerConfig:
    """The ServerConfig for resolved settings. A setting is carried to the field of its name;
    the limits go into `Limits`, the comma-separated origins become a tuple, and --demo without
    a --db of its own gets a temporary database."""
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    values = {s.name: getattr(args, s.name) for s in SETTINGS if s.name in fields}
    if args.origins:
        values["origins"] = tuple(o.strip() for o in args.origins.split(",") if o.strip())
    if args.demo and args.origin("db") == "default":
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
        log.info(
            "listening on %s (REST %s%s) db=%s interval=%gs tz=%s%s",
            server.url,
            server.http_url,
            "/api/v1/analytics/realtime-metrics",
            config.db,
            config.interval,
            config.tz,
            " demo traffic on" if config.demo else "",
        )
        if not is_loopback(config.host):
            if not config.token:
                log.warning(
                    "listening on %s without --token: anyone who can reach this port can read "
                    "the metrics",
                    config.host or "all interfaces",
                )
            if not config.ingest_token:
                log.warning(
                    "listening on %s without --ingest-token: anyone who can reach this port can "
                    "send events",
                    config.host or "all interfaces",
                )
            if not config.certfile and (config.token or config.ingest_token):
                log.warning("tokens travel in clear text without --certfile (TLS)")
        await stop.wait()
        log.info("shutting down")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)  # argparse exits 2 with one line on a bad flag
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    # One line per connection would drown the log of a busy server.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    demo_dir = None
    if config.db == DEMO_DB:
        demo_dir = tempfile.TemporaryDirectory(prefix="metrics-server-demo-")
        config = replace(config, db=os.path.join(demo_dir.name, "demo.db"))
        log.info("demo data goes to %s, removed on exit (--db keeps it)", config.db)
    try:
        asyncio.run(serve(config))
    except StoreError as exc:
        print(f"metrics-server: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(
            f"metrics-server: cannot listen on {config.host}:{config.port}: {reason or exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:  # a second ^C during shutdown
        return 130
    finally:
        if demo_dir is not None:
            demo_dir.cleanup()
    return 0

"""metrics-server command line: flags (each also from an env var), signals, one-line errors."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metrics_protocol.wire import MAX_BATCH_BYTES

from . import __version__
from .app import MetricsServer, ServerConfig
from .hub import Limits
from .security import is_loopback, server_ssl_context
from .store import StoreError

log = logging.getLogger("metrics_server")

DEFAULT_DB = "metrics.db"
#: ``--demo`` without ``--db``: a temporary file, made by ``main`` and removed on exit, so that
#: fake revenue never lands in ./metrics.db where a real server would later show it.
DEMO_DB = ""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        if float(text) == 0:  # any spelling of zero: 0, 0.00, 0e0
            return 0.0
    except ValueError:
        pass  # _positive_float says why
    return _positive_float(text)


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (no upper bound if None)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"{low}-{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    return convert


_port = _whole(0, 65535)
_history = _whole(1, 10_000)
_count = _whole(1)


def _tz(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {text!r}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="metrics-server",
        description="Take business events, keep them in a store, and broadcast exact live "
        "metrics over ws://HOST:PORT/ws/metrics (REST: /api/v1/analytics/realtime-metrics).",
        epilog="Every flag can also be set from the environment variable shown in brackets.",
    )
    parser.add_argument(
        "--host",
        default=env("METRICS_HOST", "127.0.0.1"),
        help="address to listen on [METRICS_HOST] (default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=env("METRICS_PORT", "3000"),
        help="port, 0 for any free one [METRICS_PORT] (default 3000)",
    )
    parser.add_argument(
        "--db",
        default=env("METRICS_DB") or None,
        help="SQLite database file [METRICS_DB] (default ./metrics.db; with --demo a "
        "temporary file, removed on exit)",
    )
    parser.add_argument(
        "--interval",
        type=_positive_float,
        default=env("METRICS_INTERVAL", "5"),
        help="seconds between metrics snapshots [METRICS_INTERVAL] (default 5)",
    )
    parser.add_argument(
        "--tz",
        type=_tz,
        default=env("METRICS_TZ", "UTC"),
        help="time zone of today/week/month [METRICS_TZ] (default UTC)",
    )
    parser.add_argument(
        "--history",
        type=_history,
        default=env("METRICS_HISTORY", "20"),
        help="snapshots replayed to a new subscriber [METRICS_HISTORY] (default 20)",
    )
    parser.add_argument(
        "--push-interval",
        type=_non_negative_float,
        default=env("METRICS_PUSH_INTERVAL", "0.25"),
        help="least seconds between change-driven pushes, 0 pushes every "
        "change [METRICS_PUSH_INTERVAL] (default 0.25)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        default=env("METRICS_DEMO", "").strip().lower() not in ("", "0", "false", "no", "off"),
        help="generate synthetic traffic [METRICS_DEMO]",
    )
    sec = parser.add_argument_group("access and limits")
    sec.add_argument(
        "--token",
        default=env("METRICS_TOKEN") or None,
        help="required from subscribers and REST clients, as 'Authorization: Bearer "
        "TOKEN' or ?token=TOKEN [METRICS_TOKEN]",
    )
    sec.add_argument(
        "--ingest-token",
        default=env("METRICS_INGEST_TOKEN") or None,
        help="required from producers on /ws/ingest [METRICS_INGEST_TOKEN]",
    )
    sec.add_argument(
        "--origins",
        default=env("METRICS_ORIGINS") or None,
        help="comma-separated Origin values browsers may connect from "
        "[METRICS_ORIGINS] (default: any)",
    )
    sec.add_argument(
        "--certfile",
        default=env("METRICS_CERTFILE") or None,
        help="PEM certificate (chain): serve wss:// and https:// [METRICS_CERTFILE]",
    )
    sec.add_argument(
        "--keyfile",
        default=env("METRICS_KEYFILE") or None,
        help="PEM private key, if not in --certfile [METRICS_KEYFILE]",
    )
    sec.add_argument(
        "--max-clients",
        type=_count,
        default=env("METRICS_MAX_CLIENTS", "10000"),
        help="subscribers at once; more get HTTP 503 [METRICS_MAX_CLIENTS] (default 10000)",
    )
    sec.add_argument(
        "--max-message-size",
        type=_count,
        default=env("METRICS_MAX_MESSAGE_SIZE", str(64 * 1024)),
        help="largest message a subscriber may send, in bytes; larger closes "
        "with 1009 [METRICS_MAX_MESSAGE_SIZE] (default 65536)",
    )
    sec.add_argument(
        "--max-batch-size",
        type=_count,
        default=env("METRICS_MAX_BATCH_SIZE", str(MAX_BATCH_BYTES)),
        help="largest batch a producer may send, in bytes; larger closes with 1009 "
        f"[METRICS_MAX_BATCH_SIZE] (default {MAX_BATCH_BYTES}: 1000 events of the longest "
        "ids fit)",
    )
    sec.add_argument(
        "--rate-limit",
        type=_positive_float,
        default=env("METRICS_RATE_LIMIT", "20"),
        help="messages a second a subscriber may send (bursts of twice that); "
        "beyond it an error, then close 1008 [METRICS_RATE_LIMIT] (default 20)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_config(argv: Sequence[str] | None = None) -> ServerConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.keyfile and not args.certfile:
        parser.error("--keyfile needs --certfile")
    if args.certfile:
        try:  # fail now with a clear line, not at the first connection
            server_ssl_context(args.certfile, args.keyfile)
        except (OSError, ValueError) as exc:
            parser.error(f"cannot load the TLS certificate or key: {exc}")
    origins = (
        tuple(o.strip() for o in args.origins.split(",") if o.strip()) if args.origins else None
    )
    return ServerConfig(
        host=args.host,
        port=args.port,
        db=args.db if args.db is not None else DEMO_DB if args.demo else DEFAULT_DB,
        interval=args.interval,
        tz=args.tz,
        history=args.history,
        push_interval=args.push_interval,
        demo=args.demo,
        token=args.token,
        ingest_token=args.ingest_token,
        origins=origins,
        certfile=args.certfile,
        keyfile=args.keyfile,
        max_clients=args.max_clients,
        limits=Limits(
            max_message=args.max_message_size,
            rate=args.rate_limit,
            burst=2 * args.rate_limit,
            max_batch=args.max_batch_size,
        ),
    )


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

"""Print one line per metrics message from a metrics-server; reconnect when it goes away.

    python examples/subscriber.py
    python examples/subscriber.py --url ws://metrics.example:3000/ws/metrics

Only needs ``websockets``. Money is parsed as Decimal, so the printed figures are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI


def line(data: dict[str, Any]) -> str:
    revenue, users = data["revenue"], data["activeUsers"]
    txns, content = data["transactions"], data["content"]
    clock = data["timestamp"][11:19]  # HH:MM:SS of the UTC timestamp
    return (
        f"{clock}Z  revenue {revenue['total']}  users {users['current']}"
        f"  txns {txns['total']} (pending {txns['pending']}, completed {txns['completed']},"
        f" failed {txns['failed']})  conversion {content['conversionRate']}%"
    )


async def follow(url: str, count: int) -> None:
    printed, delay = 0, 0.5
    while True:
        try:
            async with connect(url, open_timeout=10) as ws:
                delay = 0.5
                print(f"connected to {url}", file=sys.stderr)
                async for raw in ws:
                    msg = json.loads(raw, parse_float=Decimal)
                    if msg.get("type") == "ping":  # the server's keepalive
                        await ws.send('{"type":"pong"}')
                    elif msg.get("type") == "metrics":
                        print(line(msg["data"]), flush=True)
                        printed += 1
                        if printed == count:
                            return
            reason = "server closed the connection"
        except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
        print(f"disconnected ({reason}); retrying in {delay:g}s", file=sys.stderr)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


def main() -> int:
    parser = argparse.ArgumentParser(description="Print live metrics from a metrics-server.")
    parser.add_argument("--url", default="ws://127.0.0.1:3000/ws/metrics", help="metrics endpoint")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages, 0 = never")
    args = parser.parse_args()
    try:
        asyncio.run(follow(args.url, args.count))
    except KeyboardInterrupt:
        return 0
    except InvalidURI as exc:
        print(f"subscriber: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

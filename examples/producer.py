"""Feed random business events to a metrics-server, one acknowledged batch at a time.

    python examples/producer.py                      # 1000 events to ws://127.0.0.1:3000
    python examples/producer.py --rate 50 --count 0  # 50 events/s until Ctrl-C

Only needs ``websockets``. Each batch waits for its ack before the next is sent: the server
acknowledges a batch only once it is committed, so an ack means the events are safe. Purchases
go ``pending`` first and are settled (``completed`` or ``failed``) later, as a payment flow
reports them; the server refuses any other order.

Every batch carries an idempotency key. When the connection drops, or the server answers
``store_unavailable``, ``rate_limited`` or ``shutting_down``, the same batch with the same key
is sent again after a growing pause: the server counts a key once, so a batch that was stored
but whose ack was lost is not counted twice (at-least-once delivery + keys = exactly-once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

PRICES = ("0.99", "4.99", "9.99", "19.00", "49.99")
#: Refusals after which the same batch may be sent again; any other error is final.
RETRYABLE = ("store_unavailable", "rate_limited", "shutting_down")


class Traffic:
    """Random but valid events: every settled transaction was pending before."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.run = f"{self.rng.getrandbits(32):08x}"  # keeps ids unique across runs
        self.open: list[str] = []
        self.seq = 0

    def event(self) -> dict[str, Any]:
        rng = self.rng
        user = f"user-{rng.randrange(1, 200)}"
        roll = rng.random()
        if self.open and roll < 0.1:
            txn = self.open.pop(rng.randrange(len(self.open)))
            status = "failed" if rng.random() < 0.1 else "completed"
            return {"type": "transaction", "id": txn, "status": status}
        if roll < 0.2:
            self.seq += 1
            txn = f"{self.run}-{self.seq}"
            self.open.append(txn)
            return {
                "type": "transaction",
                "id": txn,
                "status": "pending",
                "amount": rng.choice(PRICES),
                "userId": user,
            }
        if roll < 0.7:
            return {"type": "content_view", "contentId": f"c{rng.randrange(1, 50)}", "userId": user}
        return {"type": "user_activity", "userId": user}

    def batch(self, size: int) -> list[dict[str, Any]]:
        return [self.event() for _ in range(size)]


class Link:
    """One connection at a time, opened again when it drops."""

    def __init__(self, url: str, ws: ClientConnection) -> None:
        self.url = url
        self.ws: ClientConnection | None = ws

    async def deliver(self, n: int, message: str, retries: int) -> dict[str, Any]:
        """Send a batch until it gets an ack or a final error; returns that reply.

        Retries resend the very same message, key included, after 0.1 s, 0.2 s, 0.4 s ... (at
        most 5 s, with jitter so that many producers do not come back at once). Raises the
        last connection error when the retries run out.
        """
        delay = 0.1
        for attempt in range(retries + 1):
            try:
                if self.ws is None:
                    self.ws = await connect(self.url, open_timeout=10)
                await self.ws.send(message)
                reply = json.loads(await self.ws.recv())
                code = reply.get("error", {}).get("code")
                if reply.get("type") == "ack" or code not in RETRYABLE or attempt == retries:
                    return reply
                why = str(code)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                if self.ws is not None:
                    await self.ws.close()
                self.ws = None
                if attempt == retries:
                    raise
                why = f"connection lost ({exc or type(exc).__name__})"
            pause = delay * random.uniform(0.5, 1.0)
            print(f"batch {n}: {why}; sending it again in {pause:.2f}s", file=sys.stderr)
            await asyncio.sleep(pause)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def produce(url: str, rate: float, batch: int, count: int, retries: int = 8) -> int:
    traffic = Traffic()
    sent = failed = 0
    link = Link(url, await connect(url, open_timeout=10))  # a wrong URL fails at once
    try:
        n = 0
        started = time.monotonic()
        while count == 0 or sent < count:
            size = batch if count == 0 else min(batch, count - sent)
            n += 1
            # The key names this batch for good: this run, this batch number.
            message = json.dumps(
                {
                    "type": "events",
                    "id": n,
                    "key": f"{traffic.run}-{n}",
                    "events": traffic.batch(size),
                }
            )
            t0 = time.monotonic()
            reply = await link.deliver(n, message, retries)
            ms = (time.monotonic() - t0) * 1000
            sent += size
            if reply.get("type") == "ack":
                again = " (already stored by an earlier try)" if reply.get("duplicate") else ""
                print(
                    f"batch {n}: {reply['accepted']} events acked in {ms:.1f} ms (sent {sent})"
                    + again
                )
            else:
                failed += 1
                error = reply.get("error", {})
                print(f"batch {n}: refused: {error.get('code')}: {error.get('message')}")
            if rate > 0:  # pace to the requested events per second
                await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    finally:
        await link.close()
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Send random events to a metrics-server.")
    parser.add_argument("--url", default="ws://127.0.0.1:3000/ws/ingest", help="ingest endpoint")
    parser.add_argument("--rate", type=float, default=200, help="events per second, 0 = no limit")
    parser.add_argument("--batch", type=int, default=50, help="events per batch (1-1000)")
    parser.add_argument("--count", type=int, default=1000, help="events in all, 0 = forever")
    parser.add_argument(
        "--retries", type=int, default=8, help="tries again per batch (about 16 s in all)"
    )
    args = parser.parse_args()
    if not 1 <= args.batch <= 1000 or args.count < 0 or args.rate < 0 or args.retries < 0:
        parser.error("--batch must be 1-1000; --count, --rate and --retries must be >= 0")
    try:
        return asyncio.run(produce(args.url, args.rate, args.batch, args.count, args.retries))
    except KeyboardInterrupt:
        return 130
    except (OSError, InvalidHandshake, InvalidURI, ConnectionClosed, TimeoutError) as exc:
        print(f"producer: {args.url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

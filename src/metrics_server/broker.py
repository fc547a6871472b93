"""The Redis side of several servers on one store: publications, the snapshot cache, notices.

Keys and channels, under a prefix that names the store (``metrics:<database>.<schema>:``):

* ``latest``: the latest publication (its message with every channel), TTL 10 s;
* ``history``: a list of the last N interval snapshots' ``data``, TTL 10 s;
* ``snapshots``: the channel the leader publishes each snapshot and a heartbeat on;
* ``committed``: the channel every server announces its commits on (the leader wakes up).

The TTL is refreshed every second by the leader's heartbeat: a cache that no leader keeps
expires in 10 s, and readers then compute from the store rather than serve old figures.

The subscription is supervised here rather than trusted to redis-py, whose asyncio PubSub does
not reconnect by itself (redis-py #2089), whose ``health_check_interval`` never raises on a dead
link (#2417), which raises no ConnectionError when Redis 7.2+ restarts (#3979) and whose
``listen()`` fails after ``socket_timeout`` on 8.0 (#4098). So: a client of its own,
``get_message(timeout=...)`` in a loop under a deadline of ours, a PING when the channel has
been quiet for a second (the leader's heartbeat makes that rare) and a watchdog that drops the
link after 3 s without any message, then reconnects with backoff and resubscribes.

redis is imported when a broker is made, so the default install does not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("metrics_server")

#: Seconds the cached snapshot and history live unless the leader refreshes them.
CACHE_TTL = 10
#: A quiet subscription is pinged after this many seconds, and dropped after WATCHDOG.
PING_AFTER = 1.0
WATCHDOG = 3.0
#: One get_message() wait; our own deadline on it is this plus GRACE.
POLL = 0.5
GRACE = 1.0
#: Reconnection delays: 0.1 s doubling to at most 1.6 s, with jitter, so that a Redis back
#: from a restart is used again within 2 s (the recovery budget is 5 s).
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 1.6
#: Seconds a command (publish, cache read or write) may take before Redis counts as down.
COMMAND_TIMEOUT = 2.0


class BrokerError(RuntimeError):
    """Redis cannot be reached or refused a command (one line, no password)."""


def backoff(attempt: int) -> float:
    """The delay before reconnection ``attempt`` (0 first): doubling, capped, jittered by up
    to half, so that servers that lost Redis together do not return in lockstep."""
    delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt)
    return delay * random.uniform(0.5, 1.0)


def redact(url: str) -> str:
    from .store.postgres import redact as redact_url

    return redact_url(url)


class RedisBroker:
    """Publications and the cache through one client; the subscription through another.

    ``on_message(channel, data)`` is awaited for every message on the two channels, in order;
    ``on_link(up)`` when the subscription is (re)established or lost."""

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        cafile: str | None = None,
        history: int = 20,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError:
            raise BrokerError("the broker needs redis: pip install 'metrics-tui[scale]'") from None
        self._aioredis = aioredis
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self.url = url
        self.shown = redact(url)
        self.prefix = prefix
        self.history_len = history
        self.latest_key = prefix + "latest"
        self.history_key = prefix + "history"
        self.snapshots = prefix + "snapshots"
        self.committed = prefix + "committed"
        self._options: dict[str, Any] = {
            "socket_connect_timeout": COMMAND_TIMEOUT,
            "health_check_interval": 0,  # ours: see the module's docstring
            # No retries inside redis-py: a command that fails says so at once, and the
            # caller decides (the publisher rewrites the cache once Redis is back).
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
        }
        if url.lower().startswith("rediss://"):
            # Certificates and host names are checked (redis-py's defaults); --broker-cafile
            # names a private CA. TLS 1.2 at least.
            self._options["ssl_min_version"] = ssl.TLSVersion.TLSv1_2
            if cafile:
                self._options["ssl_ca_certs"] = cafile
        try:
            self._cmd = aioredis.Redis.from_url(
                url, socket_timeout=COMMAND_TIMEOUT, **self._options
            )
        except (ValueError, TypeError) as exc:
            raise BrokerError(f"bad broker URL {self.shown}: {exc}") from None
        self.reconnects = 0  # subscriptions re-established after a loss
        self.link_up = False  # the subscription is live
        self.answering = False  # the last command was answered
        self._task: asyncio.Task[None] | None = None

    # ---- commands

    async def _run(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                result = await call()
        except self._errors as exc:
            self.answering = False
            raise BrokerError(f"broker {self.shown}: {what}: {_one_line(exc)}") from None
        self.answering = True
        return result

    async def check(self) -> None:
        """One PING: BrokerError if Redis cannot be reached or refuses (TLS, a password, an
        option in the URL that redis-py does not know)."""
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._cmd.ping()
        except Exception as exc:
            raise BrokerError(f"broker {self.shown}: {_one_line(exc)}") from None
        self.answering = True

    async def publish(
        self,
        text: str,
        *,
        interval_data: str | None = None,
        history: Sequence[str] | None = None,
    ) -> None:
        """Cache a publication as the latest (with its interval sample appended to the cached
        history, or the whole ``history`` written anew) and publish it, in one transaction."""

        async def call() -> None:
            async with self._cmd.pipeline(transaction=True) as pipe:
                pipe.set(self.latest_key, text, ex=CACHE_TTL)
                if history is not None:
                    pipe.delete(self.history_key)
                    if history:
                        pipe.rpush(self.history_key, *history)
                if interval_data is not None:
                    pipe.rpush(self.history_key, interval_data)
                pipe.ltrim(self.history_key, -self.history_len, -1)
                pipe.expire(self.history_key, CACHE_TTL)
                pipe.publish(self.snapshots, text)
                await pipe.execute()

        await self._run("publish", call)

    async def heartbeat(self, text: str) -> bool:
        """Refresh the cache's TTL and publish a heartbeat; False when the cached latest was
        gone (Redis restarted), so that the caller writes the cache anew."""

        async def call() -> bool:
            async with self._cmd.pipeline(transaction=True) as pipe:
                pipe.expire(self.latest_key, CACHE_TTL)
                pipe.expire(self.history_key, CACHE_TTL)
                pipe.publish(self.snapshots, text)
                kept, _, _ = await pipe.execute()
            return bool(kept)

        return await self._run("heartbeat", call)

    async def load(self) -> tuple[str | None, list[str]]:
        """The cached latest publication (None when cold) and history, read together."""

        async def call() -> tuple[str | None, list[str]]:
            async with self._cmd.pipeline(transaction=True) as pipe:
                pipe.get(self.latest_key)
                pipe.lrange(self.history_key, 0, -1)
                latest, history = await pipe.execute()
            return latest, list(history)

        return await self._run("read the cache", call)

    async def notify_committed(self) -> None:
        await self._run("notice", lambda: self._cmd.publish(self.committed, "1"))

    # ---- the supervised subscription

    def start(
        self,
        on_message: Callable[[str, str], Awaitable[None]],
        on_link: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._task = asyncio.create_task(
            self._subscription(on_message, on_link), name="metrics-broker-subscription"
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._cmd.aclose()

    async def _subscription(
        self,
        on_message: Callable[[str, str], Awaitable[None]],
        on_link: Callable[[bool], Awaitable[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        lost = False  # a link was up and went down: the next one counts as a reconnect
        while True:
            client = self._aioredis.Redis.from_url(self.url, socket_timeout=None, **self._options)
            pubsub = client.pubsub()
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT):
                    await pubsub.subscribe(self.snapshots, self.committed)
                last = loop.time()
                pinged = False
                while True:
                    async with asyncio.timeout(POLL + GRACE):
                        msg = await pubsub.get_message(timeout=POLL)
                    now = loop.time()
                    if msg is None:
                        if now - last > WATCHDOG:
                            raise TimeoutError(f"no message nor pong for {WATCHDOG:g}s")
                        if now - last > PING_AFTER and not pinged:
                            async with asyncio.timeout(COMMAND_TIMEOUT):
                                await pubsub.ping()
                            pinged = True
                        continue
                    last, pinged = now, False
                    kind = msg.get("type")
                    if kind == "subscribe" and msg.get("channel") == self.committed:
                        # Both channels confirmed: the link is up (again).
                        attempt = 0
                        if lost:
                            self.reconnects += 1
                            log.info("broker %s: subscribed again", self.shown)
                        self.link_up, lost = True, False
                        await on_link(True)
                    elif kind == "message":
                        await on_message(str(msg["channel"]), str(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the link: drop it and start over
                if self.link_up:
                    log.warning("broker %s: subscription lost: %s", self.shown, _one_line(exc))
                    self.link_up, lost = False, True
                    await on_link(False)
                elif attempt == 0:
                    log.warning("broker %s unreachable: %s", self.shown, _one_line(exc))
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await pubsub.aclose()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await client.aclose()
            await asyncio.sleep(backoff(attempt))
            attempt += 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__

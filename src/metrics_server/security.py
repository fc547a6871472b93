"""Access control and inbound limits, as plain functions and small classes (no sockets).

Tokens are compared in constant time and never logged; a token may come in an
``Authorization: Bearer`` header (non-browser clients) or a ``?token=`` query parameter (browsers
cannot set headers on a WebSocket). No request target is logged, since one may carry a token
(the CLI keeps the websockets logger at WARNING).
"""

from __future__ import annotations

import hmac
import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl


def presented_token(authorization: str | None, path: str) -> str | None:
    """The token a request carries, from the header first, else the query string."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for key, value in parse_qsl(split_target(path)[1], keep_blank_values=True):
        if key == "token":
            return value
    return None


def token_ok(expected: str | None, presented: str | None) -> bool:
    """True when no token is required, or the presented one matches (in constant time)."""
    if not expected:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target. Not ``urlsplit``: it raises on targets such as
    ``//[x``, and a client must not be able to turn that into a server error."""
    path, _, query = target.partition("?")
    return path, query


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: assume it may be reachable from outside


def server_ssl_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


@dataclass(slots=True)
class RateLimiter:
    """Token bucket: ``rate`` messages a second on average, bursts up to ``burst``.

    ``strikes`` counts refusals in a row, so the caller can answer an error first and close the
    connection only when the flood goes on.
    """

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0
    strikes: int = 0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:  # first use
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.strikes = 0
            return True
        self.strikes += 1
        return False

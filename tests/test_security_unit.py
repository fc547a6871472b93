"""Token extraction and comparison, and the inbound rate limiter."""

from __future__ import annotations

import pytest

from metrics_server.security import (
    RateLimiter,
    is_loopback,
    presented_token,
    token_ok,
)


@pytest.mark.parametrize(
    ("header", "path", "token"),
    [
        ("Bearer s3cret", "/ws/metrics", "s3cret"),
        ("bearer  s3cret ", "/ws/metrics", "s3cret"),
        (None, "/ws/metrics?token=abc&x=1", "abc"),
        ("Basic dXNlcg==", "/ws/metrics?token=q", "q"),
        ("Bearer h", "/ws/metrics?token=q", "h"),
        (None, "/ws/metrics", None),
        ("Bearer ", "/ws/metrics", None),
        (None, "/ws/metrics?token=", ""),
    ],
)
def test_presented_token(header: str | None, path: str, token: str | None) -> None:
    assert presented_token(header, path) == token


def test_token_ok() -> None:
    assert token_ok(None, None) and token_ok("", "anything")
    assert token_ok("abc", "abc")
    assert not token_ok("abc", None)
    assert not token_ok("abc", "abd")
    assert not token_ok("abc", "")
    assert not token_ok("abc", "abcd")
    assert not token_ok("é", "e")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_rate_limiter_allows_bursts_then_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert all(limiter.allow(0.0) for _ in range(5))
    assert not limiter.allow(0.0) and limiter.strikes == 1
    assert not limiter.allow(0.05) and limiter.strikes == 2  # half a token so far
    assert limiter.allow(0.1) and limiter.strikes == 0
    # A long quiet spell refills only up to the burst.
    assert sum(limiter.allow(100.0) for _ in range(10)) == 5

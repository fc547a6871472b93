"""Backoff schedule: exponential ceiling, full jitter, reset, retry limit."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_tui.backoff import Backoff, ceiling


class MaxRandom(random.Random):
    """Always draws the top of the range, exposing the ceiling sequence."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_ceiling_sequence_doubles_from_one_second_and_caps_at_thirty() -> None:
    assert [ceiling(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_delays_follow_ceiling_with_max_draw() -> None:
    b = Backoff(rng=MaxRandom())
    assert [b.next_delay() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert ceiling(10_000) == 30


@given(seed=st.integers(0, 2**32), attempts=st.integers(1, 40))
def test_full_jitter_stays_within_zero_and_ceiling(seed: int, attempts: int) -> None:
    b = Backoff(rng=random.Random(seed))
    for n in range(attempts):
        delay = b.next_delay()
        assert delay is not None
        assert 0 <= delay <= min(30, 2**n)


def test_jitter_is_spread_not_constant() -> None:
    b = Backoff(rng=random.Random(7))
    draws = []
    for _ in range(50):
        b.reset()
        for _ in range(4):
            d = b.next_delay()
        draws.append(d)
    assert len(set(draws)) > 40
    assert all(0 <= d <= 8 for d in draws)  # type: ignore[operator]


def test_reset_starts_over_at_one_second() -> None:
    b = Backoff(rng=MaxRandom())
    for _ in range(5):
        b.next_delay()
    assert b.attempt == 5
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() == 1


def test_seeded_rng_is_reproducible() -> None:
    a = Backoff(rng=random.Random(42))
    b = Backoff(rng=random.Random(42))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


def test_max_retries_gives_up_after_n_attempts() -> None:
    b = Backoff(max_retries=3, rng=MaxRandom())
    assert [b.next_delay() for _ in range(3)] == [1, 2, 4]
    assert b.exhausted
    assert b.next_delay() is None
    b.reset()
    assert not b.exhausted
    assert b.next_delay() == 1


def test_zero_retries_gives_up_at_once() -> None:
    b = Backoff(max_retries=0)
    assert b.next_delay() is None


def test_forever_by_default() -> None:
    b = Backoff(rng=random.Random(1))
    assert all(b.next_delay() is not None for _ in range(1000))


def test_negative_max_retries_rejected() -> None:
    with pytest.raises(ValueError):
        Backoff(max_retries=-1)

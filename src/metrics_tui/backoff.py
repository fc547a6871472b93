"""Reconnect delays: exponential backoff with full jitter.

Pure and synchronous so the schedule can be tested without sockets or clocks. Full jitter
(a uniform draw between 0 and the exponential ceiling) spreads a fleet of monitors out after a
server restart instead of having them all reconnect in lock-step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

BASE = 1.0
FACTOR = 2.0
CAP = 30.0


def ceiling(attempt: int, base: float = BASE, factor: float = FACTOR, cap: float = CAP) -> float:
    """Upper bound of the delay before retry number ``attempt`` (0-based)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # Cap the exponent too, so a monitor left running for weeks never overflows a float.
    return min(cap, base * factor ** min(attempt, 64))


def draw(
    attempt: int,
    rng: random.Random,
    base: float = BASE,
    factor: float = FACTOR,
    cap: float = CAP,
) -> float:
    """The delay before retry number ``attempt``: uniform between 0 and its ceiling."""
    return rng.uniform(0, ceiling(attempt, base, factor, cap))


@dataclass
class Backoff:
    """Delay schedule for one connection.

    ``next_delay`` returns the wait before the next attempt, or None once ``max_retries``
    retries have been used up (None means retry forever). ``reset`` after a successful connect.
    """

    base: float = BASE
    factor: float = FACTOR
    cap: float = CAP
    max_retries: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    @property
    def exhausted(self) -> bool:
        return self.max_retries is not None and self.attempt >= self.max_retries

    def next_delay(self) -> float | None:
        """Draw the delay for the next retry and count it; None when out of retries."""
        if self.exhausted:
            return None
        delay = draw(self.attempt, self.rng, self.base, self.factor, self.cap)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0

"""Retry schedule shared by every client: capped exponential backoff, full jitter.

The policy is a generator of delays (:meth:`RetryPolicy.delays`): a call draws the next wait
from it after each retryable failure and gives up when it is exhausted, so the sync and async
drivers (``fgrm_client._drivers``) consume one schedule and hold no loop arithmetic of their own.

Full jitter (sleep a uniform draw in ``[0, min(cap, base * 2**n)]``) keeps many trainer
processes that lost the same replica from retrying in lock-step (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a client retries the failures that are safe to retry."""

    max_attempts: int = 4
    """Tries in all, the first included; 1 disables retries."""
    initial_backoff: float = 0.2
    """Upper bound of the first sleep, seconds."""
    max_backoff: float = 5.0
    """No single sleep is longer than this (a server's Retry-After is capped by it too)."""
    multiplier: float = 2.0
    """Growth of the upper bound per attempt."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return self.honour(self.rng.uniform(0.0, cap), retry_after)

    def delays(self) -> Iterator[float]:
        """The waits between the tries of one call: ``max_attempts - 1`` of them, then exhausted."""
        for attempt in range(1, self.max_attempts):
            yield self.backoff(attempt)

    def honour(self, delay: float, retry_after: float | None) -> float:
        """A server's ``Retry-After`` lengthens a wait, never past ``max_backoff``."""
        return delay if retry_after is None else max(delay, min(retry_after, self.max_backoff))


NO_RETRY = RetryPolicy(max_attempts=1)

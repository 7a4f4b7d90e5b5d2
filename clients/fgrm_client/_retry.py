"""Retry schedule shared by the HTTP and gRPC clients: capped exponential backoff, full jitter.

Full jitter (sleep a uniform draw in ``[0, min(cap, base * 2**n)]``) keeps many trainer
processes that lost the same replica from retrying in lock-step (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


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
        delay = self.rng.uniform(0.0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay


NO_RETRY = RetryPolicy(max_attempts=1)

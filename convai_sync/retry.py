"""Retry timing and run-wide adaptive concurrency for API calls."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and total time."""

    max_attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 5.0
    max_total: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_total)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))


class AdaptiveLimit:
    """A concurrency limit shared by every request of a run (AIMD): a 429 halves
    it and pauses everyone for Retry-After; each success grows it back slowly."""

    def __init__(self, maximum: int):
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self._inflight = 0
        self._resume_at = 0.0
        self._last_cut = 0.0
        self._cond = threading.Condition()
        self.throttled = 0

    def acquire(self) -> None:
        with self._cond:
            while self._inflight >= int(self.limit):
                self._cond.wait()
            self._inflight += 1
            wait = self._resume_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def release(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify()

    def success(self) -> None:
        with self._cond:
            if self.limit < self.maximum:
                self.limit = min(self.maximum, self.limit + 1 / self.limit)
                self._cond.notify_all()

    def throttle(self, retry_after: float | None) -> None:
        now = time.monotonic()
        with self._cond:
            self.throttled += 1
            if now - self._last_cut > 0.05:  # one cut per burst of 429s, not one per request
                self.limit = max(1.0, self.limit / 2)
                self._last_cut = now
            if retry_after:
                self._resume_at = max(self._resume_at, now + retry_after)

"""Retry timing and run-wide adaptive concurrency for API calls."""
from __future__ import annotations

import math
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
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_total)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))


class AdaptiveLimit:
    """A concurrency limit shared by every request of a run (AIMD): a 429 halves
    it and pauses everyone for Retry-After; each success grows it back slowly.

    One cut per burst: a 429 cuts the limit only if its request was sent after
    the last cut; the others were already in flight when the limit was cut and
    say nothing new (a time window cannot tell them apart when Retry-After is
    short). Each cut also halves how fast the limit grows back (down to 1/64),
    so against a hard cap the run settles at the cap and probes above it ever
    more rarely, instead of once every few requests."""

    MAX_PATIENCE = 6  # growth slows to at most 1/2**6 of TCP-like additive increase

    def __init__(self, maximum: int):
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self._inflight = 0
        self._resume_at = 0.0
        self._cuts = 0
        self._sent = threading.local()  # the cut count when this thread's request was sent
        self._cond = threading.Condition()
        self.throttled = 0

    @property
    def cuts(self) -> int:
        return self._cuts

    def acquire(self, deadline: float = math.inf) -> bool:
        """Take a slot, after the run-wide pause. False (holding no slot) when the
        pause or the wait for a slot would outlast `deadline`."""
        with self._cond:
            while self._inflight >= int(self.limit):
                if not self._cond.wait(timeout=max(0.0, min(deadline - time.monotonic(), 3600))):
                    if time.monotonic() >= deadline:
                        return False
            if self._resume_at > deadline:
                return False
            self._inflight += 1
            self._sent.cuts = self._cuts
            wait = self._resume_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return True

    def release(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify()

    def success(self) -> None:
        with self._cond:
            if self.limit < self.maximum:
                patience = 2 ** min(self._cuts, self.MAX_PATIENCE)
                self.limit = min(self.maximum, self.limit + 1 / (self.limit * patience))
                self._cond.notify_all()

    def throttle(self, retry_after: float | None) -> None:
        """A 429 for the request this thread sent last (after acquire())."""
        now = time.monotonic()
        with self._cond:
            self.throttled += 1
            if getattr(self._sent, "cuts", self._cuts) == self._cuts:
                self.limit = max(1.0, self.limit / 2)
                self._cuts += 1
            if retry_after and math.isfinite(retry_after):  # one request's deadline caps each wait
                self._resume_at = max(self._resume_at, now + min(retry_after, 3600.0))

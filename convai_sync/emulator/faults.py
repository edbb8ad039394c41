"""Fault injection settings and the draws that decide each request's fate."""
from __future__ import annotations

import random
from dataclasses import dataclass

# What an injected failure looks like. "drop" closes the connection without a reply.
BEFORE_KINDS = ("429", "500", "502", "503", "drop")
AFTER_KINDS = ("500", "502", "drop")

FAULT_MESSAGES = {
    429: "API rate limit exceeded. Please try again later.",
    500: "Internal server error (emulator fault injection)",
    502: "Bad gateway (emulator fault injection)",
    503: "Service temporarily unavailable (emulator fault injection)",
}


@dataclass
class Faults:
    rate: float = 0.0  # P(a request fails before doing anything)
    after_commit: float = 0.0  # P(a committed write's reply fails)
    seed: int | None = None  # seeds random.Random for repeatable runs
    latency_ms: float = 0.0  # sleep before answering every request, outside the lock
    retry_after: float = 0.0  # Retry-After (seconds) on injected and rate-limit 429s
    max_inflight: int | None = None  # more concurrent requests than this get 429

    def __post_init__(self) -> None:
        for name in ("rate", "after_commit"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be within 0..1, got {value!r}")
        if self.latency_ms < 0 or self.retry_after < 0:
            raise ValueError("Faults.latency_ms and Faults.retry_after must not be negative")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise ValueError(f"Faults.max_inflight must be at least 1, got {self.max_inflight!r}")


def draw_before(faults: Faults, rng: random.Random) -> str | None:
    """The kind of failure injected before a request is handled, if any."""
    if faults.rate > 0 and rng.random() < faults.rate:
        return rng.choice(BEFORE_KINDS)
    return None


def draw_after(faults: Faults, rng: random.Random) -> str | None:
    """The kind of failure replacing a committed write's reply, if any."""
    if faults.after_commit > 0 and rng.random() < faults.after_commit:
        return rng.choice(AFTER_KINDS)
    return None


def retry_after_header(seconds: float) -> str:
    """Whole seconds as an integer ("2"), fractions as written ("0.05")."""
    seconds = float(seconds)
    return str(int(seconds)) if seconds.is_integer() else repr(seconds)

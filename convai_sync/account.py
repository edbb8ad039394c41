"""Opening the account a command works on: the real API, or an in-process
emulator seeded with demo state (`--emulator`)."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterator

from .providers.convai import DEFAULT_URL, ConvaiClient
from .retry import RetryPolicy

EMULATOR_SECRET = "emulator-placeholder"


@dataclass(frozen=True)
class Target:
    """Where to connect, from flags and the environment."""

    api_url: str | None = None
    emulator: bool = False
    emulator_dialect: str = "llm-models"
    parallelism: int = 8
    retry: RetryPolicy = RetryPolicy()


@contextlib.contextmanager
def open_account(target: Target) -> Iterator[ConvaiClient]:
    if not target.emulator:
        url = target.api_url or os.environ.get("CONVAI_API_URL") or DEFAULT_URL
        key = os.environ.get("CONVAI_API_KEY", "")
        with ConvaiClient(url, key, parallelism=target.parallelism, retry=target.retry) as client:
            yield client
        return
    from .emulator import Emulator, demo_seed

    with Emulator(dialect=target.emulator_dialect, seed=demo_seed()) as emu:
        print(f"Using the built-in emulator at {emu.url} ({target.emulator_dialect} dialect, "
              "seeded with demo state); nothing leaves this machine.", file=sys.stderr)
        with ConvaiClient(emu.url, "emulator-key", parallelism=target.parallelism,
                          retry=target.retry) as client:
            yield client

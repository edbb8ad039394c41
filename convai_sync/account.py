"""Opening the account a command works on: the real API of the manifest's
platform, or an in-process emulator of it seeded with demo state (`--emulator`)."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from .providers.base import Client, Platform
from .retry import RetryPolicy

EMULATOR_SECRET = "emulator-placeholder"


@dataclass(frozen=True)
class Target:
    """Where to connect, from flags and the environment."""

    api_url: str | None = None
    emulator: bool = False
    emulator_dialect: str = "auto"
    parallelism: int = 8
    retry: RetryPolicy = RetryPolicy()


@contextlib.contextmanager
def open_account(target: Target, platform: Platform | None = None) -> Iterator[Client]:
    if platform is None:
        from .providers.registry import platform as lookup
        platform = lookup("convai")
    if not target.emulator:
        url = target.api_url or os.environ.get(platform.env_url) or platform.default_url
        key = os.environ.get(platform.env_key, "")
        with contextlib.closing(platform.open_client(url, key, parallelism=target.parallelism,
                                                     retry=target.retry)) as client:
            yield client
        return
    with platform.emulator(target.emulator_dialect, None) as emu:
        variant = getattr(emu, "dialect", platform.name)
        print(f"Using the built-in emulator of {platform.title} at {emu.url} ({variant}, seeded "
              "with demo state); nothing leaves this machine.", file=sys.stderr)
        with contextlib.closing(platform.open_client(emu.url, platform.emulator_key,
                                                     parallelism=target.parallelism,
                                                     retry=target.retry)) as client:
            yield client


@contextlib.contextmanager
def endpoint_route(emulator: bool) -> Iterator[Callable[[str], str]]:
    """Where endpoint checks send each model URL's requests: to the URL itself,
    or, with --emulator, to a loopback OpenAI-compatible stub that serves every
    URL under its own path (so the demo's example URLs answer, and nothing
    leaves this machine)."""
    if not emulator:
        yield str
        return
    from .emulator.openai_stub import OpenAIStub
    with OpenAIStub() as stub:
        print(f"Using the built-in OpenAI-compatible stub at {stub.url} for model endpoints "
              "(a mode word in a URL or model name - slow, down, wrong-key, unknown-model - "
              "picks how it answers).", file=sys.stderr)
        yield stub.route

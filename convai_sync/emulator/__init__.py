"""Real HTTP emulators of each platform's API, with fault injection and
invariant recording. The shared parts live here (base, server, faults,
records); each platform's routes live in its adapter package.

    with Emulator(seed=demo_seed()) as emu:   # Convai's, re-exported here
        ...  # point a client at emu.url with CONVAI-API-KEY: emulator-key
        assert emu.orphan_events == []
"""
from typing import Any

from convai_sync.emulator.faults import Faults
from convai_sync.emulator.records import OrphanEvent, RecordedRequest

_CONVAI = ("DIALECTS", "Emulator", "Quirks", "demo_seed", "load_seed_file")


def __getattr__(name: str) -> Any:
    # Lazy: the Convai emulator itself imports this package's base module.
    if name in _CONVAI:
        from convai_sync.providers.convai import emulator as convai
        return getattr(convai, name)
    raise AttributeError(name)


__all__ = ["DIALECTS", "Emulator", "Faults", "OrphanEvent", "Quirks", "RecordedRequest", "demo_seed",
           "load_seed_file"]

"""A real HTTP emulator of the Convai API, with fault injection and invariant recording.

    with Emulator(seed=demo_seed()) as emu:
        ...  # point a client at emu.url with CONVAI-API-KEY: emulator-key
        assert emu.orphan_events == []
"""
from convai_sync.emulator.emulator import Emulator
from convai_sync.emulator.faults import Faults
from convai_sync.emulator.records import OrphanEvent, RecordedRequest
from convai_sync.emulator.seed import DIALECTS, demo_seed, load_seed_file

__all__ = ["DIALECTS", "Emulator", "Faults", "OrphanEvent", "RecordedRequest", "demo_seed",
           "load_seed_file"]

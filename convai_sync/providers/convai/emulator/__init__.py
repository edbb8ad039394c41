"""The Convai API emulator: account state, the Convai routes and seeds, on the
shared emulator base (convai_sync/emulator)."""
from convai_sync.providers.convai.emulator.emulator import Emulator
from convai_sync.providers.convai.emulator.quirks import Quirks
from convai_sync.providers.convai.emulator.seed import DIALECTS, demo_seed, load_seed_file

__all__ = ["DIALECTS", "Emulator", "Quirks", "demo_seed", "load_seed_file"]

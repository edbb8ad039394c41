"""`python -m convai_sync.emulator`: the emulator command without the main CLI."""
from convai_sync.emulator.cli import emulator_command

emulator_command(prog_name="convai-sync emulator")

"""apply's confirmation and colour, on a real pseudo-terminal."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from typing import Callable

from conftest import CANARIES, EXAMPLE, cli_env
from convai_sync.emulator import Emulator


def run_on_tty(args: list[str], answer: str | None, extra_env: dict[str, str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "convai_sync", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=cli_env(**extra_env), close_fds=True)
    os.close(slave)
    output, sent, deadline = b"", False, time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if answer is not None and not sent and b"Only 'yes' will be accepted" in output:
            os.write(master, answer.encode() + b"\n")
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(timeout=10), output.decode(errors="replace")


def test_apply_asks_and_applies_on_yes(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    code, out = run_on_tty(["apply", "-f", str(EXAMPLE), "--api-url", emu.url], "yes", {})
    assert code == 0, out
    assert "Do you want to perform these actions?" in out
    assert "\x1b[" in out  # colour on a terminal
    assert "The account now matches the manifest." in out
    assert len(emu.writes()) > 0
    assert all(v not in out for v in CANARIES.values())


def test_apply_cancels_on_anything_but_yes(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    code, out = run_on_tty(["apply", "-f", str(EXAMPLE), "--api-url", emu.url], "y",
                           {"NO_COLOR": "1"})
    assert code == 1
    assert "apply cancelled; nothing was written." in out
    assert "\x1b[" not in out  # NO_COLOR is respected
    assert emu.writes() == []


def test_no_color_flag_turns_colour_off_on_a_terminal(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    code, out = run_on_tty(["plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--no-color"], None, {})
    assert code == 0, out
    assert "convai-sync will perform these actions" in out and "\x1b[" not in out

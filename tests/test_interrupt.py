"""Ctrl-C (or SIGTERM) during apply, in a real process: the writes in flight finish, nothing else
starts, the report says what was done, and a re-run converges."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, Result, assert_no_secret, cli_env
from convai_sync.emulator import Emulator, Faults


def start_apply(url: str, report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "convai_sync", "apply", "-f", str(EXAMPLE), "--api-url", url,
         "--auto-approve", "--parallelism", "1", "--report-file", str(report),
         "--state-file", str(report.with_name("state.json"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(NO_COLOR="1"))


def interrupt_during(proc: subprocess.Popen[str], line_start: str,
                     signum: int, emu: Emulator) -> tuple[str, str]:
    """Send `signum` once stderr shows a line starting with `line_start`. From then on
    each request takes 1.5 s, so the signal lands inside the phase even when a loaded
    machine is slow to deliver it."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(line_start):
            emu.faults = Faults(latency_ms=1500)
            proc.send_signal(signum)
            break
        assert time.monotonic() < deadline, "".join(seen)
    stdout, rest = proc.communicate(timeout=30)
    return stdout, "".join(seen) + rest


@pytest.mark.long
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_finishes_the_writes_in_flight_starts_nothing_more_and_reports(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path,
        signum: int) -> None:
    emu = make_emulator(faults=Faults(latency_ms=150))
    report_path = tmp_path / "report.json"
    stdout, stderr = interrupt_during(start_apply(emu.url, report_path), "Phase 3/6", signum, emu)

    assert "Apply interrupted:" in stdout, stdout + stderr
    assert "nothing else was started" in stdout
    assert "Traceback" not in stderr
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True and report["ok"] is False
    by_phase: dict[str, set[str]] = {}
    for change in report["changes"]:
        by_phase.setdefault(change["phase"], set()).add(change["status"])
    assert by_phase["register"] == by_phase["update"] == {"done"}
    assert by_phase["deregister"] == {"not attempted"}  # no later phase ran
    assert "not attempted" in by_phase["rebind"]  # stopped inside the phase
    # what the report calls done is exactly what the emulator committed
    done = sum(1 for c in report["changes"] if c["status"] == "done")
    assert len(emu.writes()) == done
    assert emu.orphan_events == []

    emu.faults = Faults()
    again = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve",
                "--state-file", str(tmp_path / "state.json"))
    assert again.code == 0, again.output
    assert "The account now matches the manifest." in again.stdout
    assert emu.orphan_events == []
    assert_no_secret(stdout, stderr, report_path.read_text(), again.output)

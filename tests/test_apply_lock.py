"""Finding 4 of issue 11: one apply at a time per account. Two real applies at once:
the second is refused naming the holder, no character is ever orphaned; a stale lock
is broken (automatically when its process is gone here, by --force-unlock otherwise)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, Result, cli_env
from convai_sync.emulator import Emulator, Faults
from convai_sync.lock import lock_paths


def apply_process(url: str, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "convai_sync", "apply", "-f", str(EXAMPLE), "--api-url", url,
         "--auto-approve", "--parallelism", "1", "--state-file", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(NO_COLOR="1"))


@pytest.mark.long
def test_a_second_apply_at_once_is_refused_naming_the_first(
        make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    emu = make_emulator(faults=Faults(latency_ms=250))  # the first apply takes some 3 s
    first = apply_process(emu.url, tmp_path / "ci.state.json")
    deadline = time.monotonic() + 20
    while not emu.writes() and time.monotonic() < deadline:
        time.sleep(0.005)
    second = apply_process(emu.url, tmp_path / "laptop.state.json")  # another checkout
    out2, _ = second.communicate(timeout=30)
    out1, _ = first.communicate(timeout=30)
    assert first.returncode == 0, out1
    assert second.returncode == 1, out2
    assert f"another apply is running against this account: pid {first.pid} on host " \
           f"{socket.gethostname()} since " in out2 and "--force-unlock" in out2
    assert emu.orphan_events == []
    assert not any(p.exists() for p in lock_paths(emu.url, tmp_path / "ci.state.json"))


def write_lock(path: Path, host: str, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host, "since": "2026-01-01T00:00:00Z", "token": "x"}))


def test_a_lock_left_by_a_killed_apply_on_this_host_is_broken(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    state = tmp_path / "s.json"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    write_lock(lock_paths(emu.url, state)[1], socket.gethostname(), int(gone))
    out = run("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve", "--state-file", str(state))
    assert out.code == 0, out.output
    assert f"breaking the apply lock" in out.stderr and "that process is gone" in out.stderr


def test_a_lock_held_on_another_host_needs_force_unlock(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    state = tmp_path / "s.json"
    write_lock(lock_paths(emu.url, state)[0], "ci-runner-7", 4242)
    args = ("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve", "--state-file", str(state))
    refused = run(*args)
    assert refused.code == 1 and emu.writes() == []
    assert "pid 4242 on host ci-runner-7 since 2026-01-01T00:00:00Z" in refused.stderr
    forced = run(*args, "--force-unlock")
    assert forced.code == 0, forced.output
    assert "--force-unlock" in forced.stderr and emu.writes()
    assert not lock_paths(emu.url, state)[0].exists()


def test_apply_of_a_saved_plan_takes_the_same_lock(
        make_emulator: Callable[..., Emulator], run: Callable[..., Result], tmp_path: Path) -> None:
    emu = make_emulator()
    plan = tmp_path / "plan.json"
    assert run("plan", "-f", str(EXAMPLE), "--api-url", emu.url, "--out", str(plan)).code == 0
    write_lock(lock_paths(emu.url, None)[0], "laptop-3", 77)
    refused = run("apply", str(plan), "--api-url", emu.url, "--auto-approve",
                  "--state-file", str(tmp_path / "s.json"))
    assert refused.code == 1 and "pid 77 on host laptop-3" in refused.stderr
    assert emu.writes() == []

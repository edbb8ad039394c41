"""Findings 5 and 6 of issue 11: hostile or broken API replies. Each is served by the
emulator's override hook; each must end in a clear error naming the call, in bounded
time, with nothing written."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Callable

import pytest

from conftest import EXAMPLE, Result, cli_env
from convai_sync.emulator import Emulator
from convai_sync.providers import transport


def cli_process(*args: str, limit: float = 40) -> tuple[int, str, float]:
    """Run convai-sync in its own process (a hang must not hang the test run)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "convai_sync", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=cli_env(NO_COLOR="1"))
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"still running after {limit}s: {out[-2000:]}")
    return proc.returncode, out, time.monotonic() - started


@pytest.mark.parametrize("retry_after", ["100000", "nan", "-5"])
def test_an_absurd_retry_after_cannot_outlast_the_deadline(
        make_emulator: Callable[..., Emulator], retry_after: str) -> None:
    emu = make_emulator()
    emu.override("/character/update", {"status": "error", "message": "slow down"}, status=429,
                 headers={"Retry-After": retry_after})
    code, out, took = cli_process("apply", "-f", str(EXAMPLE), "--api-url", emu.url, "--auto-approve",
                                  "--retry-max-time", "2", "--parallelism", "4")
    assert code == 1 and took < 25, out
    assert "POST /character/update" in out and "gave up" in out, out
    assert "internal error" not in out and "Traceback" not in out


def test_a_dripping_reply_cannot_outlast_the_deadline(make_emulator: Callable[..., Emulator]) -> None:
    emu = make_emulator()
    emu.override("/llm-models/list", {"models": [], "pad": "x" * 40}, drip=0.5)  # 30 s in all
    code, out, took = cli_process("plan", "-f", str(EXAMPLE), "--api-url", emu.url,
                                  "--retry-max-time", "2")
    assert code == 1 and took < 12, (took, out)
    assert "POST /llm-models/list" in out and "ReadTimeout" in out, out


def test_a_huge_reply_is_refused_not_held(run: Callable[..., Result], make_emulator: Callable[..., Emulator],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_REPLY_BYTES", 1024 * 1024)
    emu = make_emulator()
    emu.override("/character/list", raw=b"[" + b" " * 65535, repeat=32)  # 2 MiB
    result = run("plan", "-f", str(EXAMPLE), "--api-url", emu.url)
    assert result.code == 1, result.output
    assert "POST /character/list" in result.stderr and "larger than 1 MiB" in result.stderr
    assert emu.writes() == []
